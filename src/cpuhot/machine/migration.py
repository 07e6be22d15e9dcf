"""Migration between two cpuhot processes: cpuhot's stream format and QEMU's checks.

The I/O layer moves bytes; this module builds the stream from a source VM and
checks and applies it on a target VM.  It is not QEMU's binary format but it
carries what QEMU's does for CPUs, keyed the way QEMU keys its vmstate
sections, so the same mismatches fail the same way:

* ``cpu_common`` and ``cpu``, instance = the vCPU's ``cpu_index`` (both arches);
* ``apic``, instance = the APIC ID (x86).

Sections go out in registration order (the order CPUs were created, each CPU's
``cpu_common``, ``cpu``, then ``apic``).  The target looks up each section by
(name, instance); the first one it does not have fails the load with QEMU's
message, ``Unknown savevm section or instance 'cpu_common' 2. Make sure that
your current VM setup matches your saved VM setup, including any hotplugged
devices``.  Sections the target has but the stream lacks are fine (QEMU
completes such a migration).

Stream (format version 1): JSON, one object per line, UTF-8.

1. header: ``{"magic": "cpuhot-migration", "version": 1, "arch", "machine", "family",
   "runstate", "smp": {...}, "cpu-model", "ram-size"}``
2. one line per section: ``{"section": NAME, "instance": N, "state": {...}}``
3. ``{"end": true}``

With the ``return-path`` capability the target answers one line,
``{"result": "ok"}`` or ``{"result": "failed", "error": TEXT}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from .cpu_models import CpuModel
from .guest import Guest, GuestHost
from .machines import MachineType
from .migration_params import MigrationParameters
from .slots import CpuDevice
from .topology import CpuTopology

MAGIC = "cpuhot-migration"
VERSION = 1

#: the first board section of each machine family (what a different board fails on)
BOARD_SECTION = {"pc": "i440FX", "q35": "mch", "pseries": "spapr", "s390-ccw-virtio": "s390-skeys"}

MIGRATION_CAPABILITIES = (
    "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events", "postcopy-ram",
    "x-colo", "release-ram", "block", "return-path", "pause-before-switchover", "multifd",
    "dirty-bitmaps", "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
    "background-snapshot", "zero-copy-send", "postcopy-preempt",
)


class _MigrationPolicy(Protocol):
    @property
    def arch(self) -> str: ...

    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]: ...


class MigrationHost(GuestHost, Protocol):
    """What migration needs of a VM (:class:`cpuhot.machine.vm.VirtualMachine`, which imports this
    module for :class:`MigrationState`)."""

    runstate: str

    @property
    def policy(self) -> _MigrationPolicy: ...
    @property
    def topology(self) -> CpuTopology: ...
    @property
    def machine(self) -> MachineType: ...
    @property
    def cpu_model(self) -> CpuModel: ...
    @property
    def ram_size(self) -> int: ...
    @property
    def guest(self) -> Guest: ...

    def cont(self) -> None: ...


@dataclass
class MigrationState:
    """What ``query-migrate`` reports and which capabilities are on."""

    caps: dict[str, bool] = None  # type: ignore[assignment]  # __post_init__ fills it
    status: str | None = None          # None: no migration yet
    error: str | None = None
    total_time: int = 0
    #: ``query-migrate``'s ``ram`` of the completed outgoing migration (None: none, or the target)
    ram: dict[str, Any] | None = None
    #: "-incoming" as given (None, "defer" or a URI)
    incoming: str | None = None
    #: ``migrate-set-parameters``' values, made on first use (``commands_migration.parameters``)
    parameters: MigrationParameters | None = field(default=None, repr=False, compare=False)
    #: the addresses a target listens on (QEMU's socket_address_list), until its load completed
    listening: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.caps is None:
            self.caps = {c: False for c in MIGRATION_CAPABILITIES}

    def query(self, incoming_setup: bool = False) -> dict[str, Any]:
        """``query-migrate``: a completed outgoing migration reports its ``ram`` (computed by
        :mod:`cpuhot.machine.migration_ram` when it completed); a target lists the address it
        listens on (``socket-address``) until its load completed, and, on releases whose
        ``incoming_setup`` is set (10.0), is in ``setup`` while it waits."""
        status = self.status
        if status is None and self.listening is not None and incoming_setup:
            status = "setup"
        if status is None:
            return {"socket-address": [dict(a) for a in self.listening]} if self.listening is not None else {}
        if status == "completed" and self.ram is not None:
            return {"status": "completed", "setup-time": 0, "downtime": 0, "total-time": self.total_time,
                    "ram": dict(self.ram)}
        out: dict[str, Any] = {"status": status}
        if status == "failed" and self.error:
            out["error-desc"] = self.error
        if self.listening is not None:
            out["socket-address"] = [dict(a) for a in self.listening]
        return out


class MigrationError(Exception):
    """The target refuses the stream; ``lines`` are what QEMU prints on stderr."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


def sections(vm: MigrationHost) -> list[tuple[str, int, dict[str, Any]]]:
    """The per-CPU sections ``vm`` sends, in QEMU's registration order."""
    out: list[tuple[str, int, dict[str, Any]]] = []
    for device in sorted({v.device for v in vm.vcpus}, key=lambda d: d.created):
        for v in device.vcpus:
            state: dict[str, Any] = {"qom-path": v.qom_path, "id": device.id, "online": v.online}
            out.append(("cpu_common", v.cpu_index, state))
            out.append(("cpu", v.cpu_index, {"halted": vm.runstate != "running"}))
        out.extend(vm.policy.migration_sections(device))
    return out


def encode_stream(vm: MigrationHost, runstate: str | None = None) -> bytes:
    """The stream for ``vm``; ``runstate`` is the state recorded when migration began
    (QEMU's global_state_store, taken before the source stops)."""
    t = vm.topology
    header = {"magic": MAGIC, "version": VERSION, "arch": vm.policy.arch, "machine": vm.machine.name,
              "family": vm.machine.family, "runstate": runstate or vm.runstate,
              "smp": {"cpus": t.cpus, "sockets": t.sockets, "dies": t.dies, "cores": t.cores,
                      "threads": t.threads, "maxcpus": t.max_cpus},
              "cpu-model": vm.cpu_model.name, "ram-size": vm.ram_size}
    lines = [json.dumps(header)]
    lines += [json.dumps({"section": n, "instance": i, "state": s}) for n, i, s in sections(vm)]
    lines.append(json.dumps({"end": True}))
    return ("\n".join(lines) + "\n").encode()


@dataclass
class IncomingResult:
    source_runstate: str
    cpu_states: dict[int, dict[str, Any]]


def _unknown(name: str, instance: int) -> MigrationError:
    return MigrationError([
        f"Unknown savevm section or instance '{name}' {instance}. Make sure that your current VM setup "
        "matches your saved VM setup, including any hotplugged devices",
        "load of migration failed: Invalid argument",
    ])


#: QEMU 7.2's RunState values (qapi/run-state.json): what a stream's run state may be
RUNSTATES = ("debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate", "prelaunch",
             "finish-migrate", "restore-vm", "running", "save-vm", "shutdown", "suspended", "watchdog",
             "guest-panicked", "colo")

#: the longest stream line the target reads (a section of cpuhot's is well under 1 KiB)
MAX_LINE = 64 << 10

_NOT_A_STREAM = ["Not a migration stream", "load of migration failed: Invalid argument"]


def _parse_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def check_header(vm: MigrationHost, line: bytes) -> dict[str, Any]:
    """The first line, checked before anything else is read (QEMU reads its magic and version first)."""
    header = _parse_line(line)
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise MigrationError(list(_NOT_A_STREAM))
    if header.get("version") != VERSION:
        version = header.get("version")
        raise MigrationError([f"Unsupported migration stream version {version if type(version) is int else '?'}",
                              "load of migration failed: Invalid argument"])
    if header.get("arch") != vm.policy.arch or header.get("family") != vm.machine.family:
        family = header.get("family")
        raise _unknown(BOARD_SECTION.get(family, "machine") if isinstance(family, str) else "machine", 0)
    runstate = header.get("runstate", "paused")
    if runstate not in RUNSTATES or runstate in ("inmigrate",):
        # inferred from global_state_post_load: qapi_enum_parse refuses it, the section fails
        raise MigrationError([f"invalid parameter value: {runstate if isinstance(runstate, str) else '?'}",
                              "error while loading state for instance 0x0 of device 'globalstate'",
                              "load of migration failed: Invalid argument"])
    return header


class IncomingCheck:
    """Checks a stream line by line as it arrives (sans-IO): ``feed`` each line; the first
    bad one raises :class:`MigrationError`; ``feed`` returns the result after ``{"end": true}``."""

    def __init__(self, vm: MigrationHost) -> None:
        self.vm = vm
        self.header: dict[str, Any] | None = None
        self.known = {(n, i) for n, i, _ in sections(vm)}
        self.seen: set[tuple[str, int]] = set()
        self.cpu_states: dict[int, dict[str, Any]] = {}

    def feed(self, line: bytes) -> IncomingResult | None:
        if len(line) > MAX_LINE:
            raise MigrationError(["load of migration failed: Invalid argument"])
        if not line.strip():
            return None
        if self.header is None:
            self.header = check_header(self.vm, line)
            return None
        entry = _parse_line(line)
        if entry == {"end": True}:
            return IncomingResult(source_runstate=self.header.get("runstate", "paused"),
                                  cpu_states=self.cpu_states)
        if not isinstance(entry, dict) or not isinstance(entry.get("section"), str) \
                or type(entry.get("instance")) is not int:
            raise MigrationError(["load of migration failed: Invalid argument"])
        key = (entry["section"], entry["instance"])
        if key not in self.known or key in self.seen:
            raise _unknown(*key)
        self.seen.add(key)
        state = entry.get("state", {})
        if not isinstance(state, dict) or ("online" in state and type(state["online"]) is not bool):
            raise MigrationError([f"error while loading state for instance 0x{key[1]:x} of device '{key[0]}'",
                                  "load of migration failed: Invalid argument"])
        if key[0] == "cpu_common":
            self.cpu_states[key[1]] = state
        return None

    def eof(self) -> None:
        """The stream ended before ``{"end": true}``."""
        if self.header is None:
            raise MigrationError(list(_NOT_A_STREAM))
        raise MigrationError(["load of migration failed: Input/output error"])


def check_stream(vm: MigrationHost, data: bytes) -> IncomingResult:
    """Validate a complete stream against the target ``vm``; raise :class:`MigrationError`."""
    check = IncomingCheck(vm)
    for line in data.split(b"\n"):
        result = check.feed(line)
        if result is not None:
            return result
    check.eof()
    raise AssertionError("unreachable")


def apply_incoming(vm: MigrationHost, result: IncomingResult, *, autostart: bool) -> None:
    """What a successful load leaves behind: the guest's view of each vCPU and the run state
    (``process_incoming_migration_bh``: a running source resumes here unless -S; any other
    state is taken over as it was)."""
    by_index = {v.cpu_index: v for v in vm.vcpus}
    for index, state in result.cpu_states.items():
        if index in by_index and "online" in state:
            by_index[index].online = bool(state["online"])
    if result.source_runstate == "running":
        if autostart:
            vm.runstate = "paused"
            vm.cont()
        else:
            vm.runstate = "paused"
    else:
        vm.runstate = result.source_runstate
        if vm.runstate == "running":
            vm.guest.on_run(vm)
