"""The virtual machine: possible CPUs, plugged CPU devices, QOM names, run state, events.

:class:`VirtualMachine` is sans-IO: every method takes a request, changes the
state atomically or not at all, and returns a result or raises a
:class:`~cpuhot.machine.errors.QMPError`.  Events it causes are appended to
``outbox`` for the server to send before the reply.

>>> from cpuhot.machine.config import LaunchOptions, build_machine
>>> vm = build_machine(LaunchOptions(smp="1,maxcpus=2")).vm
>>> vm.device_add({"driver": "qemu64-x86_64-cpu", "id": "cpu1", "socket-id": 0, "core-id": 1, "thread-id": 0})
>>> [c["qom-path"] for c in vm.query_cpus_fast()]
['/machine/unattached/device[0]', '/machine/peripheral/cpu1']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from .errors import DeviceNotFound, GenericError
from .events import Event
from .devices import PCI_DEVICES, GenericDevice, check_generic_bus, check_pci_slot_free, parse_generic_properties
from .clock import Clock, RealClock, Timers, VirtualClock
from .cpu_models import CpuModel
from .guest import Guest
from .machines import MachineType
from .migration import MigrationState
from .numa import NumaBuilder, NumaState
from .qdev import opts_from_qmp
from .release import Release, get_release
from .slots import CpuDevice, CpuSlot, VCpu
from .topology import CpuTopology

if TYPE_CHECKING:
    from .agent import GuestAgent
    from .vcpu_threads import VcpuThreads

#: a CPU device's properties as ``parse_properties`` gives them (integers, s390x's booleans and strings)
PropertyValues = Mapping[str, int | bool | str]


class CpuPolicy(Protocol):
    """What the VM asks of the architecture's CPU policy (:mod:`.x86`, :mod:`.spapr`, :mod:`.s390x`,
    :mod:`.none`).  Some policies have more, which the VM looks up with ``getattr``:
    ``fast_entry``, ``configure_device`` (and the QMP layer ``json_int_properties``)."""

    @property
    def arch(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def legacy_arch(self) -> str: ...
    @property
    def abstract_types(self) -> tuple[str, ...]: ...
    @property
    def numa_supported(self) -> bool: ...
    @property
    def cpu_add_in_order(self) -> bool: ...
    @property
    def query_cpus_extra_after(self) -> str: ...

    # start-up
    def check_config(self) -> None: ...
    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None: ...
    def check_numa_memory(self, numa_state: NumaState) -> None: ...
    def startup_warnings(self, cpu_model_name: str) -> list[str]: ...
    def reset_warnings(self, cpu_model_name: str) -> list[str]: ...
    def realize_warnings(self) -> list[str]: ...
    def on_reset(self, vm: VirtualMachine) -> None: ...
    def on_run(self, vm: VirtualMachine) -> None: ...
    def build_slots(self) -> list[CpuSlot]: ...
    def default_node(self, slot: CpuSlot, num_nodes: int) -> int: ...
    def describe_slot(self, slot: CpuSlot) -> str: ...

    # QOM naming
    def boot_qom_path(self, k: int) -> str: ...
    def board_unattached_count(self, boot_cpus: int) -> int: ...
    def unattached_kind(self, n: int, boot_cpus: int) -> str | None: ...
    def vcpu_paths(self, device_path: str, slot: CpuSlot) -> list[tuple[int, str]]: ...
    def child_names(self, device: CpuDevice) -> set[str]: ...
    def generic_unplug_request(self, vm: VirtualMachine, device: GenericDevice) -> None: ...
    def thread_children(self) -> tuple[str, ...]: ...
    def plug_types(self, release: str) -> frozenset[str]: ...
    def unpluggable_models(self, release: str) -> frozenset[str]: ...

    # queries
    def query_cpus_extra(self, vm: VirtualMachine, vcpu: VCpu) -> dict[str, Any]: ...
    def device_props(self, slot: CpuSlot, common: dict[str, Any],
                     device: CpuDevice | None = None) -> dict[str, Any]: ...

    # device_add, device_del, cpu-add
    def property_types(self) -> dict[str, str]: ...
    def parse_properties(self, driver: str, opts: dict[str, str]) -> PropertyValues: ...
    def pre_plug(self, vm: VirtualMachine, driver: str, values: PropertyValues, hotplugged: bool) -> CpuSlot: ...
    def unplug_request(self, vm: VirtualMachine, device: CpuDevice) -> None: ...
    def guest_eject(self, vm: VirtualMachine, device: CpuDevice) -> None: ...
    def deleted_events(self, device: CpuDevice) -> list[dict[str, Any]]: ...
    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]: ...
    def cpu_add_slot(self, vm: VirtualMachine, cpu_id: int) -> CpuSlot: ...


@dataclass
class CpuIndexRule:
    """How a new vCPU's cpu-index is chosen.

    ``slot`` (QEMU 2.8+): the slot's index in the possible-CPUs list.
    ``count`` (QEMU <= 2.7): the number of vCPUs that exist when it is created.
    """

    kind: str = "slot"


class VirtualMachine:
    #: the QEMU release modelled (:mod:`cpuhot.machine.release`); set by ``build_machine``
    release: str = "7.2"

    def __init__(self, *, policy: CpuPolicy, machine: MachineType, topology: CpuTopology, cpu_model: CpuModel,
                 numa_state: NumaState | None, ram_size: int,
                 accel: str, name: str | None = None, uuid: str | None = None,
                 start_paused: bool = False, clock: Clock | Callable[[], float] | None = None,
                 thread_id_base: int = 1000, cpu_index_rule: CpuIndexRule | None = None,
                 in_order_plug: bool = False, guest: Guest | None = None):
        self.policy = policy
        self.machine = machine
        self.topology = topology
        self.cpu_model = cpu_model
        self.numa_state = numa_state
        self.ram_size = ram_size
        self.accel = accel
        self.name = name
        self.uuid = uuid
        if clock is None:
            clock = RealClock()
        elif callable(clock) and not hasattr(clock, "now"):
            clock = _FunctionClock(clock)
        self.clock: Clock = cast(Clock, clock)     # a callable without .now was wrapped just above
        self.timers = Timers(clock)
        self.cpu_index_rule = cpu_index_rule or CpuIndexRule()
        self.in_order_plug = in_order_plug
        self.guest = guest if guest is not None else Guest("auto")
        self.runstate = "prelaunch" if start_paused else "running"
        self.outbox: list[Event] = []
        self.after_reply: list[Event] = []
        self.migration = MigrationState()
        #: what QEMU would print on stderr: (prefixed with the program name?, text)
        self.stderr: list[tuple[bool, str]] = []
        self.slots: list[CpuSlot] = []
        self._slot_by_arch: dict[int, CpuSlot] = {}
        #: QEMU's CPU list: vCPUs in creation order
        self.vcpus: list[VCpu] = []
        #: every device in /machine/peripheral by id (CPUs and others)
        self.peripheral: dict[str, CpuDevice | GenericDevice] = {}
        #: /machine/peripheral-anon/device[N] -> device
        self.peripheral_anon: dict[int, CpuDevice | GenericDevice] = {}
        self.anon_counter = 0
        self.unattached_counter = 0
        self.unattached: dict[int, CpuDevice] = {}
        self._created = 0
        self._next_tid = thread_id_base
        self.boot_cpus = 0
        self.machine_ready = False
        #: real OS threads for vCPUs (``--vcpu-threads``), or None for made-up thread ids
        self.vcpu_threads: VcpuThreads | None = None
        #: ``-no-shutdown``: a guest shutdown stops the VM instead of ending the process
        self.no_shutdown = False
        #: set when the process should exit (guest shut down without -no-shutdown)
        self.exit_requested = False
        #: the machine powered itself off (s390x's disabled-wait panic): the server ends the process
        self.powered_off = False
        #: the guest agent on an org.qemu.guest_agent.0 port (:mod:`cpuhot.machine.agent`), or None
        self.agent: GuestAgent | None = None

    # -- construction ------------------------------------------------------
    def set_slots(self, slots: list[CpuSlot]) -> None:
        self.slots = slots
        self._slot_by_arch = {s.arch_id: s for s in slots}

    def slot_by_arch_id(self, arch_id: int) -> CpuSlot | None:
        return self._slot_by_arch.get(arch_id)

    @property
    def release_info(self) -> Release:
        """The :class:`~cpuhot.machine.release.Release` of :attr:`release`."""
        return get_release(self.release)

    @property
    def numa_enabled(self) -> bool:
        return self.numa_state is not None and self.numa_state.num_nodes > 0

    @property
    def props_show_node(self) -> bool:
        return self.numa_enabled

    def create_boot_cpus(self) -> None:
        if not self.slots:
            return
        """Create the ``-smp cpus`` boot CPU devices (x86 threads / sPAPR cores) in slot order."""
        per = self.slots[0].vcpus_count if self.slots else 1
        n = self.topology.cpus // per
        for k in range(n):
            self._attach(self.slots[k], self.policy.boot_qom_path(k), None, hotplugged=False)
        self.boot_cpus = n
        self.unattached_counter = self.policy.board_unattached_count(n)

    def finish_startup(self) -> None:
        self.machine_ready = True
        if self.runstate == "running":
            self.guest.on_run(self)
            self.policy.on_run(self)

    # -- time ------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the model next has something to do by itself (guest actions), on its clock."""
        return self.timers.next_deadline() if self.runstate == "running" else None

    def advance(self) -> int:
        """Run the guest's due actions; a paused guest does nothing."""
        return self.timers.run_due(allowed=lambda: self.runstate == "running")

    def clock_step(self, seconds: float) -> None:
        """Advance a virtual clock and run what became due (``x-cpuhot-clock-step``)."""
        if not getattr(self.clock, "virtual", False):
            raise GenericError("the clock is real; start with --clock virtual to step it")
        clock = cast(VirtualClock, self.clock)      # a virtual clock: one that advances
        if not (0 <= seconds < 1e15):       # NaN, inf, negative or absurd: the clock stays usable
            raise GenericError("Parameter 'seconds' expects a finite non-negative number")
        target = self.clock.now() + seconds
        while True:
            deadline = self.timers.next_deadline()
            if deadline is None or deadline > target or self.runstate != "running":
                break
            clock.advance(max(0.0, deadline - self.clock.now()))
            self.advance()
        clock.advance(max(0.0, target - self.clock.now()))

    # -- events ----------------------------------------------------------------
    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        self.outbox.append(Event(name, data, self.clock.now()))

    def emit_after_reply(self, name: str, data: dict[str, Any] | None = None) -> None:
        """An event QEMU sends once the current command has replied (e.g. a device it finalizes
        later); outside a command it goes out with the next events."""
        self.after_reply.append(Event(name, data, self.clock.now()))

    def drain_events(self) -> list[Event]:
        out, self.outbox = self.outbox, []
        return out

    def drain_after_reply(self) -> list[Event]:
        out, self.after_reply = self.after_reply, []
        return out

    # -- queries -----------------------------------------------------------------
    def query_hotpluggable_cpus(self) -> list[dict[str, Any]]:
        if not self.machine.hotpluggable_cpus:
            raise GenericError(self.release_info.no_hotplug_text)
        # Each slot's entry is kept (on the slot) and handed out again while the slot is unchanged:
        # entries are read-only for callers, and the QMP server caches their encoding by identity.
        show_node = self.props_show_node
        out: list[dict[str, Any]] = []
        append = out.append
        for slot in reversed(self.slots):
            cpu = slot.cpu
            path = cpu.qom_path if cpu is not None else None
            node = slot.node_id
            cached = slot.__dict__.get("_qhc_entry")
            if (cached is not None and cached[0] is cpu and cached[1] == path and cached[2] == node
                    and cached[3] == show_node):
                append(cached[4])
                continue
            entry: dict[str, Any] = {"props": slot.qmp_props(show_node), "vcpus-count": slot.vcpus_count}
            if cpu is not None:
                entry["qom-path"] = path
            entry["type"] = slot.type
            slot.__dict__["_qhc_entry"] = (cpu, path, node, show_node, entry)   # kept outside its fields
            append(entry)
        return out

    def query_cpus_fast(self) -> list[dict[str, Any]]:
        # As for query_hotpluggable_cpus: each vCPU's entry is kept (on the vCPU) while it is unchanged.
        show_node = self.props_show_node
        target = self.policy.target
        arch = self.policy.legacy_arch if self.release_info.cpus_fast_arch else None
        out: list[dict[str, Any]] = []
        append = out.append
        for v in self.vcpus:
            slot = v.device.slot
            key: tuple[object, ...] | None = (v.thread_id, v.cpu_index, v.qom_path, slot.node_id, show_node, target, slot, arch)
            cached = v.__dict__.get("_qcf_entry")
            if cached is not None and cached[0] is not None and cached[0] == key:
                append(cached[1])
                continue
            entry: dict[str, Any] = {"thread-id": v.thread_id, "props": slot.qmp_props(show_node),
                     "qom-path": v.qom_path, "cpu-index": v.cpu_index, "target": target}
            if arch is not None:
                entry = {"arch": arch, **entry}
            fast_entry = getattr(self.policy, "fast_entry", None)
            if fast_entry is not None:
                entry = fast_entry(self, v, entry)
                key = None        # cpu-state follows the run state: not cached
            v.__dict__["_qcf_entry"] = (key, entry)    # kept outside its fields
            append(entry)
        return out

    def query_cpus(self) -> list[dict[str, Any]]:
        """Legacy ``query-cpus`` (QEMU <= 5.2), as the real 5.2 answers it: vCPUs in creation order
        (``CPU_FOREACH``), ``current`` for the first; every vCPU but the first is ``halted`` until a
        guest starts it (x86 APs wait for INIT/SIPI, sPAPR threads for RTAS start-cpu)."""
        show_node = self.props_show_node
        running = self.runstate == "running"
        arch = self.policy.legacy_arch
        out = []
        for i, v in enumerate(self.vcpus):
            base = {"arch": arch, "current": i == 0, "props": v.device.slot.qmp_props(show_node),
                    "CPU": v.cpu_index, "qom_path": v.qom_path,
                    "halted": i != 0 and not (running and v.online), "thread_id": v.thread_id}
            # the target's own members (x86 pc, ppc nip, s390x cpu-state) where QEMU 5.2 puts them
            extra = self.policy.query_cpus_extra(self, v)
            entry: dict[str, Any] = {}
            for k, val in base.items():
                entry[k] = extra.pop(k, val)
                if k == self.policy.query_cpus_extra_after:
                    entry.update(extra)
            out.append(entry)
        return out

    def query_status(self) -> dict[str, Any]:
        status = {"status": self.runstate, "singlestep": False, "running": self.runstate == "running"}
        if not self.release_info.status_singlestep:
            del status["singlestep"]
        return status

    # -- device_add ----------------------------------------------------------
    def device_add(self, arguments: dict[str, Any], *, typed: bool = False) -> None:
        """QEMU 7.2's ``qmp_device_add`` for CPU devices, check for check.

        ``typed``: the arguments are QMP's JSON values (not -device/HMP strings); a release that
        reads them with their types (10.0) refuses a string or a fraction for an integer property."""
        ident, opts = opts_from_qmp(arguments, check_id=self.release_info.device_id_checked)
        if typed and self.release_info.device_add_typed_json:
            types = self.policy.property_types() if hasattr(self.policy, "property_types") else {}
            for key, value in arguments.items():
                if key in types and key in opts and (isinstance(value, (str, bool, float))):
                    opts[key] = "\x00"         # no number: refused with the release's wording
        driver = opts.pop("driver", None)
        if driver is None:
            raise GenericError("Parameter 'driver' is missing")
        bus = opts.pop("bus", None)
        if driver in PCI_DEVICES:
            check_generic_bus(self.machine.family, driver, bus, self._BUSES.get(self.machine.family, {}))
            self._plug_generic(driver, ident, opts)
            return
        self._check_driver(driver)
        if bus is not None:
            self._check_bus(driver, bus)
        if not self.slots:
            raise GenericError(f"Device '{driver}' can not be hotplugged on this machine")
        self._plug_cpu(driver, ident, opts, hotplugged=self.machine_ready)

    def _assign_id(self, ident: str | None) -> tuple[str, int | None]:
        """qdev_set_id: ids are shared by every device; an anonymous add that gets this far
        consumes a peripheral-anon number even if it fails later."""
        if ident is not None:
            if ident in self.peripheral:
                raise GenericError(self.release_info.duplicate_id_text.format(id=ident))
            return f"/machine/peripheral/{ident}", None
        anon = self.anon_counter
        self.anon_counter += 1
        return f"/machine/peripheral-anon/device[{anon}]", anon

    def _register(self, device: CpuDevice | GenericDevice, ident: str | None, anon: int | None) -> None:
        if ident is not None:
            self.peripheral[ident] = device
        else:
            assert anon is not None         # _assign_id numbers every device without an id
            self.peripheral_anon[anon] = device

    def _plug_generic(self, driver: str, ident: str | None, opts: dict[str, str]) -> None:
        path, anon = self._assign_id(ident)
        props = parse_generic_properties(driver, opts)
        check_pci_slot_free(self.machine.family, driver, self.generic_devices())
        self._register(GenericDevice(driver, ident, path, props, hotplugged=self.machine_ready), ident, anon)

    def remove_generic_device(self, device: GenericDevice) -> None:
        """A non-CPU device is unplugged: it leaves its container; DEVICE_DELETED follows the
        command's reply (QEMU finalizes the device afterwards)."""
        self.emit_after_reply("DEVICE_DELETED", {"device": device.id, "path": device.qom_path}
                              if device.id is not None else {"path": device.qom_path})
        self._unregister(device)

    def _unregister(self, device: CpuDevice | GenericDevice) -> None:
        """``device`` leaves the container that holds it (peripheral, peripheral-anon, unattached)."""
        if device.id is not None:
            self.peripheral.pop(device.id, None)
            return
        for container in (self.peripheral_anon, self.unattached):
            for k, d in list(container.items()):
                if d is device:
                    del container[k]

    def generic_devices(self) -> list[GenericDevice]:
        """The non-CPU devices present, in the order they were plugged."""
        found = [d for d in (*self.peripheral.values(), *self.peripheral_anon.values())
                 if isinstance(d, GenericDevice)]
        return sorted(found, key=lambda d: d.created)

    def _check_driver(self, driver: str) -> None:
        if driver in self.policy.plug_types(self.release):
            return
        if driver in self.policy.abstract_types:
            raise GenericError(self.release_info.abstract_driver_text)
        if driver in self.policy.unpluggable_models(self.release):
            raise GenericError("Parameter 'driver' expects a pluggable device type")
        raise GenericError(f"'{driver}' is not a valid device model name")

    _BUSES = {
        "pc": {"pci.0": "PCI", "isa.0": "ISA", "main-system-bus": "System", "ide.0": "IDE", "ide.1": "IDE"},
        "q35": {"pcie.0": "PCIE", "isa.0": "ISA", "main-system-bus": "System", "ide.0": "IDE", "ide.1": "IDE",
                "ide.2": "IDE", "ide.3": "IDE", "ide.4": "IDE", "ide.5": "IDE"},
        "pseries": {"pci.0": "PCI", "spapr-vio": "spapr-vio-bus", "main-system-bus": "System"},
        "s390-ccw-virtio": {"virtual-css": "virtual-css-bus", "main-system-bus": "System"},
    }

    def _check_bus(self, driver: str, bus: str) -> None:
        buses = self._BUSES.get(self.machine.family, {})
        name = bus.strip("/").split("/")[-1] if bus else bus
        if name not in buses:
            raise GenericError(f"Bus '{bus}' not found")
        raise GenericError(f"Device '{driver}' can't go on {buses[name]} bus")

    def _plug_cpu(self, driver: str, ident: str | None, opts: dict[str, str], *, hotplugged: bool,
                  legacy: bool = False) -> CpuDevice:
        path, anon = self._assign_id(ident)
        values = self.policy.parse_properties(driver, opts)
        slot = self.policy.pre_plug(self, driver, values, hotplugged)
        self.check_plug_order(slot)
        device = self._attach(slot, path, ident, hotplugged=hotplugged)
        configure = getattr(self.policy, "configure_device", None)
        if configure is not None:
            configure(device, values)
        self._register(device, ident, anon)
        return device

    def check_node_id(self, slot: CpuSlot, node_id: int) -> None:
        """``numa_cpu_pre_plug``: a given node-id must be the slot's."""
        slot_node = slot.node_id if slot.node_id is not None else 0
        if node_id != -1 and node_id != slot_node:
            raise GenericError(f"invalid node-id, must be {slot_node}")

    def check_plug_order(self, slot: CpuSlot) -> None:
        """QEMU 2.7's rule (only in the ``qemu-2.7`` profile): CPUs are plugged in slot order."""
        if not self.in_order_plug:
            return
        for s in self.slots[: slot.index]:
            if s.cpu is None:
                raise GenericError(
                    f"CPU slot {slot.index} cannot be plugged before slot {s.index}: "
                    "this machine plugs CPUs in order (QEMU 2.7 rule)")

    def _next_cpu_index(self, slot: CpuSlot, i: int) -> int:
        if self.cpu_index_rule.kind == "count":
            return len(self.vcpus)
        return slot.first_cpu_index + i

    def _attach(self, slot: CpuSlot, path: str, ident: str | None, *, hotplugged: bool,
                legacy: bool = False) -> CpuDevice:
        self._created += 1
        device = CpuDevice(slot=slot, qom_path=path, id=ident, hotplugged=hotplugged, legacy=legacy,
                           guest_configured=not hotplugged, created=self._created)
        online = self.guest.booted and not hotplugged
        for i, (_, vpath) in enumerate(self.policy.vcpu_paths(path, slot)):
            cpu_index = self._next_cpu_index(slot, i)
            if self.vcpu_threads is not None:
                tid = self.vcpu_threads.start(cpu_index)
            else:
                tid, self._next_tid = self._next_tid, self._next_tid + 1
            vcpu = VCpu(cpu_index=cpu_index, qom_path=vpath, thread_id=tid, device=device, online=online)
            device.vcpus.append(vcpu)
            self.vcpus.append(vcpu)
        slot.cpu = device
        # a CPU realised on behalf of a monitor command is reported without the program name
        self.stderr.extend((not self.machine_ready, w) for w in self.policy.realize_warnings())
        if hotplugged:
            self.guest.on_plugged(self, device)
        return device

    def remove_cpu_device(self, device: CpuDevice, *, events: bool = True) -> None:
        """Finish an unplug: the device leaves every list and its slot is free again."""
        if events:
            for data in self.policy.deleted_events(device):
                self.emit("DEVICE_DELETED", data)
        gone = set(map(id, device.vcpus))
        if self.vcpu_threads is not None:
            for v in device.vcpus:
                self.vcpu_threads.stop(v.thread_id)
        self.vcpus = [v for v in self.vcpus if id(v) not in gone]
        device.slot.cpu = None
        self._unregister(device)

    # -- legacy cpu-add --------------------------------------------------------
    def cpu_add(self, cpu_id: int) -> None:
        """Legacy ``cpu-add`` (QEMU <= 5.1; the 2016 RFC on sPAPR): an unattached CPU, no id."""
        slot = self.policy.cpu_add_slot(self, cpu_id)
        if self.policy.cpu_add_in_order:
            self.check_plug_order(slot)
        path = f"/machine/unattached/device[{self.unattached_counter}]"
        self.unattached_counter += 1
        self._attach(slot, path, None, hotplugged=True, legacy=True)

    # -- device_del ------------------------------------------------------------
    def device_del(self, ident: str) -> None:
        try:
            device = self.find_device(ident)
        except _Ignored:
            return
        if isinstance(device, GenericDevice):
            self.policy.generic_unplug_request(self, device)
            return
        self.check_unplug_order(device)
        self.policy.unplug_request(self, device)

    def check_unplug_order(self, device: CpuDevice) -> None:
        """QEMU 2.7's rule (``qemu-2.7`` profile): only the highest present CPU may be unplugged."""
        if not self.in_order_plug:
            return
        for s in reversed(self.slots):
            if s is device.slot:
                return
            if s.cpu is not None:
                raise GenericError(
                    f"CPU slot {device.slot.index} cannot be unplugged before slot {s.index}: "
                    "this machine unplugs CPUs in reverse order (QEMU 2.7 rule)")

    def find_device(self, ident: str) -> CpuDevice | GenericDevice:
        """``find_device_state``: an id (relative to /machine/peripheral) or an absolute path."""
        if ident.startswith("/"):
            parts = [p for p in ident.split("/") if p]
            return self._resolve_absolute(ident, parts)
        parts = [p for p in ident.split("/") if p]
        if not parts:
            if ident == "" and self.release_info.empty_device_id_not_found:
                raise DeviceNotFound("Device '' not found")
            raise GenericError(self.release_info.not_a_device_text.format(ident))
        dev = self.peripheral.get(parts[0])
        if dev is None:
            raise DeviceNotFound(f"Device '{ident}' not found")
        return self._resolve_child(ident, dev, parts[1:])

    def _resolve_absolute(self, ident: str, parts: list[str]) -> CpuDevice | GenericDevice:
        containers = {(), ("machine",), ("machine", "peripheral"), ("machine", "peripheral-anon"),
                      ("machine", "unattached")}
        if tuple(parts) in containers:
            raise GenericError(self.release_info.not_a_device_text.format(ident))
        if len(parts) >= 3 and parts[0] == "machine":
            where, name, rest = parts[1], parts[2], parts[3:]
            if where == "peripheral" and name in self.peripheral:
                return self._resolve_child(ident, self.peripheral[name], rest)
            n = _device_number(name)
            if where == "peripheral-anon" and n in self.peripheral_anon:
                return self._resolve_child(ident, self.peripheral_anon[n], rest)
            if where == "unattached" and n is not None:
                for device in self._unattached_cpus():
                    if device.qom_path == f"/machine/unattached/{name}":
                        return self._resolve_child(ident, device, rest)
                kind = self.policy.unattached_kind(n, self.boot_cpus)
                if kind is not None and not rest:
                    if kind == "ignored":
                        raise _Ignored()
                    raise GenericError("Bus 'main-system-bus' does not support hotplugging")
        raise DeviceNotFound(f"Device '{ident}' not found")

    def _unattached_cpus(self) -> Iterator[CpuDevice]:
        for slot in self.slots:
            if slot.cpu is not None and slot.cpu.qom_path.startswith("/machine/unattached/"):
                yield slot.cpu

    def _resolve_child(self, ident: str, device: CpuDevice | GenericDevice,
                       rest: list[str]) -> CpuDevice | GenericDevice:
        if not rest:
            return device
        # A child of a CPU (its lapic, a core's thread, a thread's interrupt presenter):
        # QEMU 7.2 aborts on an assertion here; a simulator answers instead.
        # only CPUs have such children: under any other device the path names nothing (recorded)
        children = self.policy.child_names(device) if isinstance(device, CpuDevice) else set()
        if rest[0] in children and (len(rest) == 1 or (
                len(rest) == 2 and rest[1] in self.policy.thread_children())):
            raise GenericError(f"Device '{ident}' is part of CPU '{device.qom_path}' and cannot be "
                               "unplugged on its own (QEMU 7.2 aborts here)")
        raise DeviceNotFound(f"Device '{ident}' not found")

    # -- guest-initiated actions (x-cpuhot-*) --------------------------------------
    def guest_set_online(self, cpu_index: int, online: bool) -> None:
        if not self.guest.present:
            raise GenericError("no guest is running")
        for v in self.vcpus:
            if v.cpu_index == cpu_index:
                v.online = online
                return
        raise GenericError(f"no vCPU with cpu-index {cpu_index}")

    def guest_eject(self, ident: str) -> None:
        if not self.guest.present:
            raise GenericError("no guest is running")
        device = self.find_device(ident)
        if not isinstance(device, CpuDevice):
            raise GenericError(f"{ident} is not a CPU")
        if device.slot.index == 0:
            raise GenericError("Boot CPU is unpluggable")
        self.policy.guest_eject(self, device)

    # -- QOM properties ------------------------------------------------------------
    def qom_get(self, path: str, prop: str) -> object:
        """``qom-get`` on a CPU device (or a sPAPR core's thread): the properties QEMU has."""
        obj, props = self._qom_object(path)
        if prop not in props:
            raise GenericError(f"Property '{props['type']}.{prop}' not found")
        return props[prop]

    def qom_list(self, path: str) -> list[dict[str, str]]:
        """``qom-list`` of the containers a client cares about (the order is QEMU's hash order,
        i.e. meaningless; cpuhot lists in creation order)."""
        parts = [p for p in path.split("/") if p]
        if parts == ["machine"]:
            return _machine_children(self.machine.family, self.release)
        if parts == ["machine", "peripheral"]:
            children = [(k, d) for k, d in self.peripheral.items()]
        elif parts == ["machine", "peripheral-anon"]:
            children = [(f"device[{n}]", d) for n, d in self.peripheral_anon.items()]
        elif parts == ["machine", "unattached"]:
            # only the CPUs: the board's other devices are not modelled
            children = [(dev.qom_path.rsplit("/", 1)[1], dev) for dev in self._unattached_cpus()]
        else:
            generic = self._generic_at(path)
            if generic is not None:
                return [{"name": "type", "type": "string"}]
            obj, props = self._qom_object(path)
            return [{"name": k, "type": _qom_type_name(v)} for k, v in props.items()]
        out = [{"name": "type", "type": "string"}]
        for name, dev in children:
            typename = dev.driver if isinstance(dev, GenericDevice) else dev.type
            out.append({"name": name, "type": f"child<{typename}>"})
        return out

    def _generic_at(self, path: str) -> GenericDevice | None:
        for d in list(self.peripheral.values()) + list(self.peripheral_anon.values()):
            if isinstance(d, GenericDevice) and d.qom_path == path:
                return d
        return None

    def _qom_object(self, path: str) -> tuple[CpuDevice | VCpu, dict[str, Any]]:
        for slot in self.slots:
            dev = slot.cpu
            if dev is None:
                continue
            if dev.qom_path == path:
                return dev, self._device_props(dev)
            for i, v in enumerate(dev.vcpus):
                if v.qom_path == path and v.qom_path != dev.qom_path:
                    return v, {"type": self.cpu_model.cpu_type, "realized": True, "hotpluggable": False,
                               "hotplugged": dev.hotplugged}
        raise DeviceNotFound(f"Device '{path}' not found")

    def _device_props(self, dev: CpuDevice) -> dict[str, Any]:
        slot = dev.slot
        common = {"type": slot.type, "realized": True, "hotpluggable": True, "hotplugged": dev.hotplugged,
                  "node-id": slot.node_id if slot.node_id is not None else -1}
        return self.policy.device_props(slot, common, dev)

    # -- run state ---------------------------------------------------------------
    def cont(self) -> None:
        if self.runstate in ("running",):
            return
        if self.runstate == "inmigrate":
            return
        if self.runstate in ("shutdown", "guest-panicked", "internal-error"):
            raise GenericError("Resetting the Virtual Machine is required")
        self.emit("RESUME")
        self.runstate = "running"
        self.guest.on_run(self)
        self.policy.on_run(self)

    def stop(self) -> None:
        if self.runstate == "running":
            self.runstate = "paused"
            self.emit("STOP")

    def system_reset(self) -> None:
        self.emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
        self.stderr.extend((True, w) for w in self.policy.reset_warnings(self.cpu_model.name))
        self.policy.on_reset(self)
        # QEMU's main loop: a reset VM that is not running goes back to prelaunch
        if self.runstate not in ("running", "inmigrate", "finish-migrate"):
            self.runstate = "prelaunch"
        self.guest.on_reset(self) if hasattr(self.guest, "on_reset") else None

    def system_powerdown(self) -> None:
        """ACPI power button: a running guest shuts down after its delay (SHUTDOWN guest-shutdown);
        with ``-no-shutdown`` the VM stops in ``shutdown``, otherwise the simulator exits."""
        self.emit("POWERDOWN")
        if self.guest.present and self.guest.effective != "unresponsive" and self.runstate == "running":
            self.timers.call_later(self.guest.mode.delay, self._guest_shutdown)

    def guest_shutdown_request(self, *, reboot: bool = False) -> None:
        """The guest shuts itself down (or reboots), e.g. on the agent's ``guest-shutdown``."""
        if reboot:
            self.timers.call_later(self.guest.mode.delay, self._guest_reboot)
        else:
            self.timers.call_later(self.guest.mode.delay, self._guest_shutdown)

    def _guest_reboot(self) -> None:
        if self.runstate != "running":
            return
        if self.agent is not None:
            self.agent.guest_stopped()
        self.emit("RESET", {"guest": True, "reason": "guest-reset"})
        if self.agent is not None:
            self.agent.guest_booted()

    def _guest_shutdown(self) -> None:
        if self.runstate != "running":
            return
        if self.agent is not None:
            self.agent.guest_stopped()        # qemu-ga stops before the guest powers off
        self.emit("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        if self.no_shutdown:
            self.runstate = "shutdown"
            self.emit("STOP")
        else:
            self.runstate = "shutdown"
            self.exit_requested = True

    def quit(self) -> None:
        self.emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        self.runstate = "shutdown"


class _FunctionClock:
    """Adapts a plain ``() -> float`` function (tests) to the clock interface."""

    virtual = False

    def __init__(self, fn: Callable[[], float]):
        self.now = fn


class _Ignored(Exception):
    """device_del of an object QEMU accepts and ignores (spapr-xive)."""


def _qom_type_name(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "string"


def _device_number(name: str) -> int | None:
    if name.startswith("device[") and name.endswith("]") and name[7:-1].isdigit():
        return int(name[7:-1])
    return None


#: what cpuhot models of /machine: the machine's type and its three device containers
_MODELLED_MACHINE_CHILDREN = ("type", "unattached", "peripheral-anon", "peripheral")


def _machine_children(family: str, release: str) -> list[dict[str, str]]:
    """``qom-list /machine``: the properties cpuhot models, in the order QEMU 7.2 lists them for the
    machine family (recorded: ``data/qom-list-machine.json``; QEMU's order is its hash order)."""
    import json

    from .release import data_text
    recorded = json.loads(data_text(release, "qom-list-machine.json"))
    listing = recorded.get(family, recorded["pc"])
    return [dict(p) for p in listing if p["name"] in _MODELLED_MACHINE_CHILDREN]
