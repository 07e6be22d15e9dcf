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

from .config import LaunchOptions, build_machine
from .slots import CpuDevice

FORMAT = "cpuhot-state"
VERSION = 1


def snapshot(vm, options: LaunchOptions) -> dict:
    devices = []
    for device in sorted({v.device for v in vm.vcpus} | {s.cpu for s in vm.slots if s.cpu}, key=lambda d: d.created):
        devices.append({
            "slot": device.slot.index, "id": device.id, "qom-path": device.qom_path,
            "hotplugged": device.hotplugged, "legacy": device.legacy,
            "cpu-indexes": [v.cpu_index for v in device.vcpus],
            "thread-ids": [v.thread_id for v in device.vcpus],
            "online": [v.online for v in device.vcpus],
            "guest-configured": device.guest_configured, "unplug-requested": device.unplug_requested,
        })
        if getattr(device, "topology_props", None) is not None:
            devices[-1]["topology-props"] = dict(device.topology_props)     # s390x (10.0)
    return {"format": FORMAT, "version": VERSION, "options": dataclasses.asdict(options),
            "runstate": vm.runstate, "anon-counter": vm.anon_counter,
            "unattached-counter": vm.unattached_counter, "guest-booted": vm.guest.booted,
            "devices": devices}


def write_atomically(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cpuhot-state-", dir=directory)
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


def load(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path} is not a cpuhot state file (format {VERSION})")
    return data


def restore(data: dict, **build_kw):
    """Rebuild the VM a snapshot describes; returns (LaunchOptions, BuiltMachine)."""
    options = LaunchOptions(**data["options"])
    built = build_machine(options, **build_kw)
    vm = built.vm
    # take every CPU out, then put back exactly what the snapshot lists, in creation order
    for slot in vm.slots:
        if slot.cpu is not None:
            vm.remove_cpu_device(slot.cpu, events=False)
    vm.peripheral = {k: d for k, d in vm.peripheral.items() if not isinstance(d, CpuDevice)}
    vm.peripheral_anon = {}
    for entry in data["devices"]:
        slot = vm.slots[entry["slot"]]
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
    vm.timers = type(vm.timers)(vm.clock)       # pending guest actions are not persisted
    vm.anon_counter = data["anon-counter"]
    vm.unattached_counter = data["unattached-counter"]
    vm.runstate = data["runstate"]
    vm.guest.booted = data["guest-booted"]
    vm._next_tid = max([vm._next_tid] + [t + 1 for e in data["devices"] for t in e["thread-ids"]])
    vm.drain_events()
    vm.stderr.clear()
    return options, built
