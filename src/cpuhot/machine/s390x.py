"""s390x (s390-ccw-virtio) CPU policy: one slot per core, ``core-id`` = slot = cpu-index, no unplug.

Observed on QEMU 5.2, 7.2 and 10.0 under TCG with no guest (``tests/conformance/transcripts/qemu-*/s390x-*``):

* one possible CPU per core, ``props {"core-id": N}``; 10.0 adds ``socket-id``, ``book-id`` and
  ``drawer-id``, derived from the core-id by the ``-smp`` drawers/books/sockets/cores layout
  (``s390_possible_cpu_arch_ids``); ``vcpus-count`` 1, type = the ``-cpu`` model's type;
* boot CPUs at ``/machine/unattached/device[k]``; ``query-cpus-fast`` entries carry ``cpu-state``:
  ``operating`` for the IPL CPU (CPU 0), ``stopped`` for every other one, whatever the run state,
  because no guest code ever starts them (5.2 also has the deprecated ``"arch": "s390"``);
* ``device_add`` (``s390_cpu_realize``): the CPU model is checked first (features TCG lacks; 5.2:
  mixed models, generations newer than its TCG maximum), then the core-id (``maximum core-id``,
  then ``it already exists``); only ``core-id`` (uint32) is a topology property before 10.0;
* ``device_del`` of any CPU: ``CPU hot unplug not supported on this machine``;
* ``-smp threads>1`` refused (7.2, 10.0: ``S390 does not support more than 1 threads.``), NUMA refused;
* ``cont`` with no guest code: the CPU loads a disabled-wait PSW, so QEMU reports
  ``GUEST_PANICKED`` (``disabled-wait``) and then pauses (``-no-shutdown``) or powers off.

10.0's CPU topology (``entitlement``/``dedicated``, ``set-cpu-topology``,
``query-s390x-cpu-polarization``, ``CPU_POLARIZATION_CHANGE``) only exists with KVM's
topology facility; under TCG 10.0 accepts the properties and ignores them (observed).  What cpuhot does
when it simulates KVM (``--force-kvm``) follows QEMU's documentation (docs/devel/s390-cpu-topology.rst,
docs/system/s390x/cpu-topology.rst) and is marked *documented* below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .cpu_models import cpu_definitions
from .devices import GenericDevice
from .errors import ConfigError, GenericError
from .numa import NumaBuilder, NumaState
from .qdev import parse_bool_property, parse_int_property, qdict_order
from .release import Release
from .slots import CpuDevice, CpuSlot, VCpu
from .topology import CpuTopology

if TYPE_CHECKING:
    from .vm import VirtualMachine

#: the PSW QEMU reports for the disabled wait of a CPU with no guest code (observed, all releases)
DISABLED_WAIT_INFO = {"core": 0, "psw-addr": 0, "reason": "disabled-wait", "psw-mask": 562956395872256,
                      "type": "s390"}
#: seconds from ``cont`` to the disabled-wait panic (QEMU: a few milliseconds)
PANIC_DELAY = 0.002

#: ``S390CpuEntitlement`` (qapi/machine-s390x.json of 10.0)
ENTITLEMENTS = ("auto", "low", "medium", "high")
#: s390x CPU warnings at realize per release and model (observed: 5.2's ``-cpu max``)
REALIZE_WARNINGS = {
    ("5.2", "max"): ("warning: 'msa5-base' requires 'kimd-sha-512'.",
                     "warning: 'msa5-base' requires 'klmd-sha-512'."),
}
#: models 5.2's TCG refuses as too new (its maximum is z13.2; inferred from the refusal of z14-s390x-cpu)
TOO_NEW_FOR_5_2 = ("z14", "z15", "z16", "gen15", "gen16", "gen17")


class S390Policy:
    """One slot per core; arch id = core-id = cpu-index."""

    arch = "s390x"
    target = "s390x"
    legacy_arch = "s390"
    abstract_types = ("s390x-cpu", "cpu", "device")
    #: QMP device_add of 10.0 reads s390x's CPU ids with the string visitor ("expects uint64"),
    #: not as typed integers (see property_types and VirtualMachine.device_add)
    numa_supported = False
    cpu_add_in_order = False

    def __init__(self, topology: CpuTopology, cpu_type: str, accel: str, release: Release, model_name: str):
        self.topology = topology
        self.cpu_type = cpu_type
        self.accel = accel
        self.release = release
        self.model_name = model_name
        self._unavailable = {d["typename"]: d.get("unavailable-features", [])
                             for d in cpu_definitions("s390x", release.name)}
        #: 10.0 topology: the polarization (``horizontal``/``vertical``), set by the guest (documented)
        self.polarization = "horizontal"
        #: 10.0 with (simulated) KVM: the topology facility is on, CPUs get and keep checked
        #: socket/book/drawer ids and an entitlement (documented, docs/devel/s390-cpu-topology.rst)
        self.kvm_topology = release.s390x_topology and accel == "kvm"

    # -- start-up ------------------------------------------------------------
    def check_config(self) -> None:
        if self.topology.threads > 1 and self.release.s390x_threads_refused:
            raise ConfigError("S390 does not support more than 1 threads.")
        try:
            self._check_model(self.cpu_type)
        except GenericError as e:
            hint = self.release.s390x_features_hint
            raise ConfigError(e.desc, hints=(hint,) if hint else ()) from None

    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None:
        """No NUMA unless -numa says so."""

    def check_numa_memory(self, numa_state: NumaState) -> None:
        pass

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    def reset_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    def realize_warnings(self) -> list[str]:
        return list(REALIZE_WARNINGS.get((self.release.name, self.model_name), ()))

    def on_reset(self, vm: VirtualMachine) -> None:
        """Nothing to complete: s390x never unplugs."""

    def on_run(self, vm: VirtualMachine) -> None:
        """No guest code: the IPL CPU enters a disabled wait and QEMU declares a guest panic."""
        if not vm.guest.present:
            vm.timers.call_later(PANIC_DELAY, lambda: _disabled_wait(vm))

    def build_slots(self) -> list[CpuSlot]:
        t = self.topology
        slots = []
        for i in range(t.max_cpus):
            props = {"core-id": i}
            if self.release.s390x_topology:
                props.update(self.topology_ids(i))
            slots.append(CpuSlot(index=i, props=props, arch_id=i, vcpus_count=1, type=self.cpu_type,
                                 first_cpu_index=i))
        return slots

    def topology_ids(self, core_id: int) -> dict[str, int]:
        """10.0's ``s390_std_socket/book/drawer``: the ids a core-id has in the -smp layout
        (observed: ``props`` order core-id, socket-id, drawer-id, book-id)."""
        t = self.topology
        per_socket = t.cores * t.threads
        books = getattr(t, "books", 1)
        drawers = getattr(t, "drawers", 1)
        return {"socket-id": core_id // per_socket % t.sockets,
                "drawer-id": core_id // (per_socket * t.sockets * books) % drawers,
                "book-id": core_id // (per_socket * t.sockets) % books}

    def default_node(self, slot: CpuSlot, num_nodes: int) -> int:
        return 0

    def describe_slot(self, slot: CpuSlot) -> str:
        return f"core-id: {slot.props['core-id']}"

    # -- QOM naming ----------------------------------------------------------
    def boot_qom_path(self, k: int) -> str:
        return f"/machine/unattached/device[{k}]"

    def board_unattached_count(self, boot_cpus: int) -> int:
        """The boot CPUs, then the board's own devices (inferred: QEMU 5.1's cpu-add is not
        observable; a CPU it added took the next free ``device[N]``)."""
        return boot_cpus

    def unattached_kind(self, n: int, boot_cpus: int) -> str | None:
        return None

    def vcpu_paths(self, device_path: str, slot: CpuSlot) -> list[tuple[int, str]]:
        return [(slot.first_cpu_index, device_path)]

    def generic_unplug_request(self, vm: VirtualMachine, device: GenericDevice) -> None:
        """ACPI PCI hotplug hands the request to the guest; with no guest nothing happens."""
        device.unplug_requested = True

    def child_names(self, device: CpuDevice) -> set[str]:
        return set()

    def thread_children(self) -> tuple[str, ...]:
        return ()

    def plug_types(self, release: str) -> frozenset[str]:
        return frozenset(t for t in self._unavailable if t)

    def unpluggable_models(self, release: str) -> frozenset[str]:
        return frozenset()

    # -- queries ----------------------------------------------------------------
    def cpu_state(self, vm: VirtualMachine, vcpu: VCpu) -> str:
        """``operating`` for the IPL CPU; the others stay ``stopped`` until a guest starts them
        (SIGP): a simulated guest starts each vCPU it has online (inferred)."""
        if vcpu.cpu_index == 0 and not vcpu.device.hotplugged:
            return "operating"
        if vm.guest.present and vm.guest.booted and vcpu.online:
            return "operating"
        return "stopped"

    def fast_entry(self, vm: VirtualMachine, vcpu: VCpu, entry: dict[str, Any]) -> dict[str, Any]:
        """``query-cpus-fast``: ``cpu-state`` after ``props``."""
        out: dict[str, Any] = {}
        for k, v in entry.items():
            out[k] = v
            if k == "props":
                out["cpu-state"] = self.cpu_state(vm, vcpu)
        return out

    #: legacy query-cpus: ``cpu-state`` follows ``props``
    query_cpus_extra_after = "props"

    def query_cpus_extra(self, vm: VirtualMachine, vcpu: VCpu) -> dict[str, Any]:
        """Legacy ``query-cpus`` (5.2): ``"arch": "s390"`` and ``cpu-state``."""
        state = self.cpu_state(vm, vcpu)
        return {"cpu-state": state, "halted": state != "operating"}

    def device_props(self, slot: CpuSlot, common: dict[str, Any],
                     device: CpuDevice | None = None) -> dict[str, Any]:
        props = {**common, "core-id": slot.arch_id}
        props.pop("node-id", None)
        if self.release.s390x_topology:
            props.update(getattr(device, "topology_props", None) or {
                "socket-id": -1, "book-id": -1, "drawer-id": -1, "entitlement": "auto", "dedicated": False})
        return props

    # -- device_add ----------------------------------------------------------
    def property_types(self) -> dict[str, str]:
        types = {"core-id": "uint32_t"}
        if self.release.s390x_topology:
            types.update({"socket-id": "int32_t", "book-id": "int32_t", "drawer-id": "int32_t"})
        return types

    def json_property_kinds(self) -> dict[str, str]:
        """What QMP device_add's typed JSON (10.0) expects of each property (see X86Policy's);
        ``core-id`` is a ``uint32`` read as a number (10.0: "expects uint64" for a non-integer,
        "expects uint32_t" out of range)."""
        kinds = dict.fromkeys(self.property_types(), "integer")
        kinds["core-id"] = "uint32"
        if self.release.s390x_topology:
            kinds.update({"dedicated": "boolean", "entitlement": "string"})
        kinds.update({"hotplugged": "readonly", "hotpluggable": "readonly"})
        return kinds

    def parse_properties(self, driver: str, opts: dict[str, str]) -> dict[str, int | bool | str]:
        types = self.property_types()
        values: dict[str, int | bool | str] = {}
        for key in qdict_order(opts):
            text = opts[key]
            if key in ("hotplugged", "hotpluggable"):
                raise GenericError(self.release.readonly_property_text.format(driver=driver, key=key))
            if key in types:
                values[key] = self.release.parse_int(key, text, types[key], parse_int_property)
            elif key == "dedicated" and self.release.s390x_topology:
                values[key] = parse_bool_property(key, text)
            elif key == "entitlement" and self.release.s390x_topology:
                if text not in ENTITLEMENTS:
                    raise GenericError(f"Parameter 'entitlement' does not accept value '{text}'")
                values[key] = text
            else:
                raise GenericError(f"Property '{driver}.{key}' not found")
        return values

    def _check_model(self, driver: str) -> None:
        """``s390_realize_cpu_model``: what TCG cannot give this model."""
        missing = self._unavailable.get(driver, [])
        name = driver.removesuffix("-s390x-cpu")
        if missing and self.release.s390x_too_new_text and name.startswith(TOO_NEW_FOR_5_2):
            raise GenericError(self.release.s390x_too_new_text)
        if missing:
            # QEMU prints each feature followed by a space, then one more (observed)
            raise GenericError(f"{self.release.s390x_features_text}: {''.join(f + ' ' for f in missing)} ")
        if not self._same_model(driver, self.cpu_type):
            raise GenericError("Mixed CPU models are not supported on s390x.")

    def _same_model(self, a: str, b: str) -> bool:
        if a == b:
            return True
        names = {a.removesuffix("-s390x-cpu"), b.removesuffix("-s390x-cpu")}
        return any(names <= set(group) for group in self.release.s390x_same_models)

    def pre_plug(self, vm: VirtualMachine, driver: str, values: Mapping[str, Any], hotplugged: bool) -> CpuSlot:
        """``s390_cpu_realize``: the model, then the core-id (default 0)."""
        self._check_model(driver)
        core_id = values.get("core-id", 0)
        if self.kvm_topology:
            self._kvm_topology_values(values)      # refused before anything is created
        if core_id >= self.topology.max_cpus:
            raise GenericError(f"Unable to add CPU with core-id: {core_id}, maximum core-id: "
                               f"{self.topology.max_cpus - 1}")
        slot = vm.slot_by_arch_id(core_id)
        if slot is None or slot.cpu is not None:
            raise GenericError(f"Unable to add CPU with core-id: {core_id}, it already exists")
        return slot

    # -- 10.0 topology with KVM (documented: hw/s390x/cpu-topology.c) ------------------------------
    def _check_topology(self, socket_id: int, book_id: int, drawer_id: int, entitlement: str,
                        dedicated: bool) -> None:
        """``s390_topology_check``."""
        t = self.topology
        for name, value, count in (("socket-id", socket_id, t.sockets), ("book-id", book_id, t.books),
                                   ("drawer-id", drawer_id, t.drawers)):
            if value >= count:
                raise GenericError(f"{name} {value} too big")
        if dedicated and entitlement not in ("high", "auto"):
            raise GenericError("A dedicated CPU implies a vertical high entitlement")

    def _kvm_topology_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``s390_topology_setup_cpu``: all or none of the geometry, defaults from the core-id."""
        given = [values.get(k, -1) for k in ("socket-id", "book-id", "drawer-id")]
        if any(v < 0 for v in given) and any(v >= 0 for v in given):
            raise GenericError("Please define all or none of the topology geometry attributes")
        ids = self.topology_ids(values.get("core-id", 0))
        out = {"socket-id": ids["socket-id"], "book-id": ids["book-id"], "drawer-id": ids["drawer-id"]} \
            if given[0] < 0 else dict(zip(("socket-id", "book-id", "drawer-id"), given))
        dedicated = bool(values.get("dedicated", False))
        entitlement = values.get("entitlement", "auto")
        self._check_topology(out["socket-id"], out["book-id"], out["drawer-id"], entitlement, dedicated)
        if entitlement == "auto":
            # documented: "auto" becomes high for a dedicated CPU, medium otherwise
            entitlement = "high" if dedicated else "medium"
        return {**out, "entitlement": entitlement, "dedicated": dedicated}

    def set_cpu_topology(self, vm: VirtualMachine, core_id: int, **changes: Any) -> None:
        """``s390_change_topology``: move a CPU or change its modifiers; nothing else changes."""
        slot = vm.slot_by_arch_id(core_id)
        if slot is None or slot.cpu is None:
            raise GenericError(f"Core-id {core_id} does not exist!")
        cur = dict(getattr(slot.cpu, "topology_props", None) or self._kvm_topology_values({"core-id": core_id}))
        new = {k: (changes[k.replace("-", "_")] if changes.get(k.replace("-", "_")) is not None else cur[k])
               for k in ("socket-id", "book-id", "drawer-id", "entitlement", "dedicated")}
        self._check_topology(new["socket-id"], new["book-id"], new["drawer-id"], new["entitlement"],
                             new["dedicated"])
        if new["entitlement"] == "auto":
            new["entitlement"] = "high" if new["dedicated"] else "medium"
        slot.cpu.topology_props = new

    def configure_device(self, device: CpuDevice, values: Mapping[str, Any]) -> None:
        """10.0: the CPU keeps the topology properties as given (-1 / auto / false when not): under
        TCG nothing checks or completes them (observed: qom-get socket-id is -1, a socket-id of 9 is
        taken).  With KVM, ``s390_topology_setup_cpu`` would default and check them (documented)."""
        if self.kvm_topology:
            device.topology_props = self._kvm_topology_values({**values, "core-id": device.slot.arch_id})
            return
        device.topology_props = {"socket-id": values.get("socket-id", -1), "book-id": values.get("book-id", -1),
                                 "drawer-id": values.get("drawer-id", -1),
                                 "entitlement": values.get("entitlement", "auto"),
                                 "dedicated": bool(values.get("dedicated", False))}

    # -- device_del ----------------------------------------------------------
    def unplug_request(self, vm: VirtualMachine, device: CpuDevice) -> None:
        raise GenericError("CPU hot unplug not supported on this machine")

    def deleted_events(self, device: CpuDevice) -> list[dict[str, Any]]:
        core = {"device": device.id, "path": device.qom_path} if device.id else {"path": device.qom_path}
        return [core]

    def guest_eject(self, vm: VirtualMachine, device: CpuDevice) -> None:
        raise GenericError("CPU hot unplug not supported on this machine")

    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]:
        return []

    # -- legacy cpu-add (QEMU <= 5.1) -----------------------------------------
    def cpu_add_slot(self, vm: VirtualMachine, cpu_id: int) -> CpuSlot:
        """``s390_hot_add_cpu`` of QEMU <= 5.1 (inferred from QEMU's history, not observable here):
        ``s390x_new_cpu(boot CPU's type, id)`` sets ``core-id`` (a uint32_t, so the int64 id is
        truncated) and realizes the CPU with the same checks as device_add; the CPU is an
        unattached device without an id."""
        return self.pre_plug(vm, self.cpu_type, {"core-id": cpu_id & 0xFFFFFFFF}, True)


def _disabled_wait(vm: VirtualMachine) -> None:
    if vm.runstate != "running":
        return
    if vm.no_shutdown:
        vm.emit("GUEST_PANICKED", {"action": "pause", "info": dict(DISABLED_WAIT_INFO)})
        vm.runstate = "guest-panicked"
        vm.emit("STOP")
    else:
        # 7.2, 10.0: GUEST_PANICKED (poweroff), SHUTDOWN; 5.2 first pauses (observed)
        for name in vm.release_info.panic_poweroff_events:
            if name == "STOP":
                vm.emit("STOP")
            elif name == "SHUTDOWN":
                vm.emit("SHUTDOWN", {"guest": True, "reason": "guest-panic"})
            else:
                vm.emit("GUEST_PANICKED", {"action": name.split(":")[1], "info": dict(DISABLED_WAIT_INFO)})
        vm.runstate = "shutdown"
        vm.exit_requested = True
        vm.powered_off = True          # the server ends the process, as QEMU's main loop does
