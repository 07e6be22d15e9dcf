"""Crash-safe persistence of a VM (``--state FILE``).

After every change the server writes a snapshot — the launch options and every
present CPU device with its slot, id, qom-path and cpu-indexes, the QOM counters,
the run state — atomically (temporary file, fsync, rename, fsync of the
directory), so a simulator killed at any instant leaves either the previous or
the new state on disk, never a torn one.  Starting again with the same file
rebuilds the VM from the stored options and puts back exactly those CPUs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

from .config import BuiltMachine, LaunchOptions, build_machine
from .devices import PCI_DEVICES, GenericDevice
from .slots import CpuDevice
from .vm import VirtualMachine

FORMAT = "cpuhot-state"
VERSION = 1


def snapshot(vm: VirtualMachine, options: LaunchOptions) -> dict[str, Any]:
    devices: list[dict[str, Any]] = []
    for device in sorted({v.device for v in vm.vcpus} | {s.cpu for s in vm.slots if s.cpu}, key=lambda d: d.created):
        devices.append({
            "slot": device.slot.index, "id": device.id, "qom-path": device.qom_path,
            "hotplugged": device.hotplugged, "legacy": device.legacy,
            "cpu-indexes": [v.cpu_index for v in device.vcpus],
            "thread-ids": [v.thread_id for v in device.vcpus],
            "online": [v.online for v in device.vcpus],
            "guest-configured": device.guest_configured, "unplug-requested": device.unplug_requested,
        })
        if device.topology_props is not None:
            devices[-1]["topology-props"] = dict(device.topology_props)     # s390x (10.0)
    return {"format": FORMAT, "version": VERSION, "options": dataclasses.asdict(options),
            "runstate": vm.runstate, "anon-counter": vm.anon_counter,
            "unattached-counter": vm.unattached_counter, "guest-booted": vm.guest.booted,
            "devices": devices,
            "generic-devices": [{"driver": d.driver, "id": d.id, "qom-path": d.qom_path, "props": d.props,
                                 "unplug-requested": d.unplug_requested, "hotplugged": d.hotplugged}
                                for d in vm.generic_devices()],
            "peripheral-order": list(vm.peripheral)}


def write_atomically(path: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _temp_prefix(path: str) -> str:
    return f".cpuhot-state-{os.path.basename(path)}-"


def remove_stale_temp_files(path: str) -> list[str]:
    """Remove the temporary files a killed writer of ``path`` left behind (one writer per file)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


_RUNSTATES = ("running", "paused", "prelaunch", "postmigrate", "shutdown", "suspended", "inmigrate",
              "guest-panicked", "internal-error", "io-error", "watchdog", "debug", "finish-migrate")


class StateFileError(ValueError):
    """A --state file that cpuhot will not use (the message says why)."""


def _check(ok: bool, path: str, what: str) -> None:
    if not ok:
        raise StateFileError(f"{path}: invalid cpuhot state file: {what}")


def validate(data: Any, path: str = "state file") -> dict[str, Any]:
    """Check every field of a snapshot (types, ranges, uniqueness); StateFileError otherwise."""
    _check(isinstance(data, dict) and data.get("format") == FORMAT and data.get("version") == VERSION,
           path, f"not a cpuhot state file (format {VERSION})")
    _check(isinstance(data.get("options"), dict), path, "'options' must be an object")
    _check(data.get("runstate") in _RUNSTATES, path, f"unknown run state {data.get('runstate')!r}")
    for key in ("anon-counter", "unattached-counter"):
        _check(type(data.get(key)) is int and data[key] >= 0, path, f"'{key}' must be a non-negative integer")
    _check(type(data.get("guest-booted")) is bool, path, "'guest-booted' must be a boolean")
    devices = data.get("devices")
    _check(isinstance(devices, list), path, "'devices' must be a list")
    slots: set[int] = set()
    indexes: set[int] = set()
    ids: set[str | None] = set()
    paths: set[str] = set()
    for n, e in enumerate(devices):
        where = f"devices[{n}]"
        _check(isinstance(e, dict), path, f"{where} must be an object")
        _check(type(e.get("slot")) is int and e["slot"] >= 0, path, f"{where}: bad slot {e.get('slot')!r}")
        _check(e["slot"] not in slots, path, f"{where}: slot {e['slot']} is listed twice")
        slots.add(e["slot"])
        _check(e.get("id") is None or isinstance(e.get("id"), str), path, f"{where}: bad id")
        _check(e.get("id") is None or e["id"] not in ids, path, f"{where}: id {e.get('id')!r} is listed twice")
        ids.add(e.get("id"))
        _check(isinstance(e.get("qom-path"), str) and e["qom-path"] not in paths, path, f"{where}: bad qom-path")
        paths.add(e["qom-path"])
        for key in ("hotplugged", "legacy", "guest-configured", "unplug-requested"):
            _check(type(e.get(key)) is bool, path, f"{where}: '{key}' must be a boolean")
        lists = [e.get(k) for k in ("cpu-indexes", "thread-ids", "online")]
        _check(all(isinstance(x, list) for x in lists) and len({len(x) for x in lists}) == 1, path,
               f"{where}: 'cpu-indexes', 'thread-ids' and 'online' must be lists of one length")
        for i in e["cpu-indexes"]:
            _check(type(i) is int and i >= 0 and i not in indexes, path, f"{where}: bad or duplicate cpu-index {i!r}")
            indexes.add(i)
        _check(all(type(t) is int for t in e["thread-ids"]), path, f"{where}: bad thread-ids")
        _check(all(type(o) is bool for o in e["online"]), path, f"{where}: bad online flags")
    generic = data.get("generic-devices", [])
    _check(isinstance(generic, list), path, "'generic-devices' must be a list")
    for n, e in enumerate(generic):
        where = f"generic-devices[{n}]"
        _check(isinstance(e, dict) and e.get("driver") in PCI_DEVICES, path, f"{where}: unknown device")
        _check(e.get("id") is None or (isinstance(e["id"], str) and e["id"] not in ids), path,
               f"{where}: bad or duplicate id")
        ids.add(e.get("id"))
        qom = e.get("qom-path")
        _check(isinstance(qom, str) and qom not in paths and (e.get("id") is not None or (
            qom.startswith("/machine/peripheral-anon/device[") and qom[32:-1].isdigit() and qom.endswith("]"))),
            path, f"{where}: bad qom-path")
        paths.add(qom)
        _check(isinstance(e.get("props"), dict) and all(isinstance(v, str) for v in e["props"].values()),
               path, f"{where}: bad props")
        _check(type(e.get("unplug-requested")) is bool, path, f"{where}: 'unplug-requested' must be a boolean")
        _check(type(e.get("hotplugged", False)) is bool, path, f"{where}: 'hotplugged' must be a boolean")
    snapshot: dict[str, Any] = data        # checked above: an object
    return snapshot


def load(path: str) -> dict[str, Any]:
    remove_stale_temp_files(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise StateFileError(f"{path}: invalid cpuhot state file: not JSON ({e})") from None
    return validate(data, path)


def check_matches(path: str, options: LaunchOptions, vm: VirtualMachine) -> None:
    """Refuse a state file of another VM than the command line describes (machine type, arch)."""
    wanted = options.machine.split(",", 1)[0] if options.machine else None
    machine = vm.machine
    if wanted and wanted not in (machine.name, getattr(machine, "alias", None)):
        raise StateFileError(f"{path} holds a VM of machine type '{machine.name}', but the command line "
                             f"asks for '{wanted}': use the same command line, or another --state file")
    if options.arch != vm.policy.arch and options.machine:
        raise StateFileError(f"{path} holds a {vm.policy.arch} VM, but the command line asks for {options.arch}")


def _restore_generic(vm: VirtualMachine, entries: list[dict[str, Any]]) -> None:
    """Put back the acknowledged non-CPU devices (e1000, ...), in plug order."""
    for entry in entries:
        device = GenericDevice(entry["driver"], entry["id"], entry["qom-path"], dict(entry["props"]),
                               unplug_requested=entry["unplug-requested"],
                               hotplugged=entry.get("hotplugged", False))   # absent in older files
        if entry["id"] is not None:
            vm.peripheral[entry["id"]] = device
        else:
            vm.peripheral_anon[int(entry["qom-path"].rsplit("[", 1)[1].rstrip("]"))] = device


def restore(data: dict[str, Any], **build_kw: Any) -> tuple[LaunchOptions, BuiltMachine]:
    """Rebuild the VM a snapshot describes; returns (LaunchOptions, BuiltMachine)."""
    options = LaunchOptions(**data["options"])
    built = build_machine(options, **build_kw)
    vm = built.vm
    # take every CPU out, then put back exactly what the snapshot lists, in creation order
    for slot in vm.slots:
        if slot.cpu is not None:
            vm.remove_cpu_device(slot.cpu, events=False)
    vm.peripheral = {k: d for k, d in vm.peripheral.items() if not isinstance(d, (CpuDevice, GenericDevice))}
    vm.peripheral_anon = {}
    for entry in data["devices"]:
        if entry["slot"] >= len(vm.slots):
            raise StateFileError(f"invalid cpuhot state file: slot {entry['slot']} does not exist "
                                 f"(the machine has {len(vm.slots)})")
        slot = vm.slots[entry["slot"]]
        if len(entry["cpu-indexes"]) != slot.vcpus_count:
            raise StateFileError(f"invalid cpuhot state file: slot {entry['slot']} holds "
                                 f"{slot.vcpus_count} vCPUs, not {len(entry['cpu-indexes'])}")
        device = vm._attach(slot, entry["qom-path"], entry["id"], hotplugged=entry["hotplugged"],
                            legacy=entry["legacy"])
        for v, index, tid, online in zip(device.vcpus, entry["cpu-indexes"], entry["thread-ids"], entry["online"]):
            v.cpu_index, v.online = index, online
            if vm.vcpu_threads is None:
                v.thread_id = tid          # real threads got fresh TIDs
        if "topology-props" in entry:
            device.topology_props = dict(entry["topology-props"])
        device.guest_configured = entry["guest-configured"]
        device.unplug_requested = entry["unplug-requested"]
        if entry["id"] is not None:
            vm.peripheral[entry["id"]] = device
        elif entry["qom-path"].startswith("/machine/peripheral-anon/device["):
            vm.peripheral_anon[int(entry["qom-path"].rsplit("[", 1)[1].rstrip("]"))] = device
    _restore_generic(vm, data.get("generic-devices", []))
    order = data.get("peripheral-order")
    if isinstance(order, list) and set(order) == set(vm.peripheral):      # ids in the order they were plugged
        vm.peripheral = {k: vm.peripheral[k] for k in order}
    vm.timers = type(vm.timers)(vm.clock)       # pending guest actions are not persisted
    vm.anon_counter = data["anon-counter"]
    vm.unattached_counter = data["unattached-counter"]
    vm.runstate = data["runstate"]
    vm.guest.booted = data["guest-booted"]
    vm._next_tid = max([vm._next_tid] + [t + 1 for e in data["devices"] for t in e["thread-ids"]])
    vm.drain_events()
    vm.stderr.clear()
    return options, built
