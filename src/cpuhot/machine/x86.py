"""x86 (pc / q35) CPU policy: one slot per thread, APIC IDs, ACPI CPU hotplug.

Everything here follows QEMU 7.2's ``x86_cpu_pre_plug`` / ``x86_cpu_unplug_request_cb``
and the facts recorded from a real 7.2 (see ``tests/conformance``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .cpu_models import known_plug_types, tcg_feature_warnings
from .devices import GenericDevice
from .errors import ConfigError, GenericError
from .numa import NumaBuilder, NumaState
from .qdev import qdict_order, parse_bool_property, parse_int_property
from .release import Release, get_release
from .slots import CpuDevice, CpuSlot, VCpu
from .topology import CpuTopology, TopoIds

if TYPE_CHECKING:
    from .vm import PropertyValues, VirtualMachine

UNASSIGNED_APIC_ID = 0xFFFFFFFF

#: properties of an x86 CPU device that device_add may set, with their C types
X86_CPU_PROPERTIES = {
    "socket-id": "int32_t", "die-id": "int32_t", "core-id": "int32_t", "thread-id": "int32_t",
    "node-id": "int32_t", "apic-id": "uint32_t",
}
#: boolean properties accepted and ignored (they do not change the hotplug surface)
X86_CPU_FLAGS = ("start-powered-off", "pmu", "check", "enforce", "migratable", "x2apic", "hypervisor")

#: unattached QOM devices a pc/q35 board creates besides its CPUs (qom-list on 7.2)
BOARD_UNATTACHED = {"pc": 26, "q35": 24}


class X86Policy:
    """One slot per thread; slot index = cpu-index; arch id = APIC ID."""

    arch = "x86_64"
    target = "x86_64"
    legacy_arch = "x86"
    abstract_types = ("x86_64-cpu", "device", "cpu")
    numa_supported = True
    cpu_add_in_order = False

    def __init__(self, family: str, topology: CpuTopology, cpu_type: str, accel: str, cpu_max: int,
                 cpu_text: str = "qemu64", release: Release | None = None):
        self.cpu_text = cpu_text
        self.release = release or get_release(None)
        self.family = family
        self.topology = topology
        self.cpu_type = cpu_type
        self.accel = accel
        self.cpu_max = cpu_max

    @property
    def _module(self) -> str:
        """The module level in CPU names (QEMU 9.1+; cpuhot models modules=1 only)."""
        return "module: 0, " if self.release.x86_modules else ""

    # -- start-up ------------------------------------------------------------
    def check_config(self) -> None:
        """The x86 refusals that come after -smp parsing."""
        if self.accel == "tcg" and self.topology.max_apic_id >= 255 and not self.release.tcg_x2apic:
            if self.release.apic_id_limit_check == "pc_machine_done":
                # QEMU 5.2: a boot CPU with APIC ID 255+ fails to realize under TCG; otherwise the
                # limit is checked when the machine is done, and asks for an interrupt-remapping IOMMU
                for index in range(self.topology.cpus):
                    apic_id = self.topology.apic_id_from_index(index)
                    if apic_id >= 255:
                        raise ConfigError(f"apic initialization failed. APIC ID {apic_id} is invalid")
                raise ConfigError("current -smp configuration requires Extended Interrupt Mode enabled. "
                                  "You can add an IOMMU using: -device intel-iommu,intremap=on,eim=on")
            raise ConfigError("current -smp configuration requires kernel irqchip and X2APIC API support.")

    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None:
        """No NUMA unless -numa says so."""

    def check_numa_memory(self, numa_state: NumaState) -> None:
        pass

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        if cpu_model_name == "qemu64" and self.topology.threads > 1:
            lines = [f"warning: This family of AMD CPU doesn't support hyperthreading({self.topology.threads})",
                     "Please configure -smp options properly or try enabling topoext feature."]
            return [". ".join(lines)] if self.release.amd_ht_warning_one_line else lines
        return []

    def reset_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    def on_reset(self, vm: VirtualMachine) -> None:
        """ACPI CPU hotplug keeps its state over a reset; nothing to do."""

    def on_run(self, vm: VirtualMachine) -> None:
        """Firmware runs (or idles) without a guest: nothing happens."""

    def realize_warnings(self) -> list[str]:
        """TCG's complaints about CPUID features it cannot provide, printed per CPU realised."""
        if self.accel != "tcg":
            return []
        return [f"warning: {t}" for t in tcg_feature_warnings(self.cpu_text, self.release.name)]

    def build_slots(self) -> list[CpuSlot]:
        t = self.topology
        slots = []
        for i in range(t.max_cpus):
            ids = t.ids_from_index(i)
            props = {"core-id": ids.core, "thread-id": ids.thread}
            if t.dies > 1:
                props["die-id"] = ids.die
            props["socket-id"] = ids.socket
            slots.append(CpuSlot(index=i, props=props, arch_id=t.apic_id(ids), vcpus_count=1,
                                 type=self.cpu_type, first_cpu_index=i))
        return slots

    def default_node(self, slot: CpuSlot, num_nodes: int) -> int:
        return slot.props["socket-id"] % num_nodes

    def describe_slot(self, slot: CpuSlot) -> str:
        p = slot.props
        die = f", die-id: {p['die-id']}" if "die-id" in p else ""
        return f"socket-id: {p['socket-id']}{die}, core-id: {p['core-id']}, thread-id: {p['thread-id']}"

    # -- QOM naming ----------------------------------------------------------
    def boot_qom_path(self, k: int) -> str:
        """Boot CPU k: device[0] for CPU 0, then device[k+1] (device[1] is kvmvapic)."""
        return f"/machine/unattached/device[{0 if k == 0 else k + 1}]"

    def board_unattached_count(self, boot_cpus: int) -> int:
        return BOARD_UNATTACHED[self.family] + boot_cpus

    def unattached_kind(self, n: int, boot_cpus: int) -> str | None:
        """What ``/machine/unattached/device[n]`` is, apart from CPUs: ``sysbus`` or None."""
        if n == 1:
            return "sysbus"   # kvmvapic
        if n < self.board_unattached_count(boot_cpus):
            return "sysbus"
        return None

    def vcpu_paths(self, device_path: str, slot: CpuSlot) -> list[tuple[int, str]]:
        return [(slot.first_cpu_index, device_path)]

    def child_names(self, device: CpuDevice | GenericDevice) -> set[str]:
        """Children of a CPU device that device_del could name: its local APIC."""
        return {"lapic"}

    def thread_children(self) -> tuple[str, ...]:
        return ()

    def plug_types(self, release: str) -> frozenset[str]:
        return known_plug_types(self.arch, release)

    def unpluggable_models(self, release: str) -> frozenset[str]:
        return frozenset()

    # -- queries ----------------------------------------------------------------
    #: legacy query-cpus: ``pc`` follows ``qom_path``
    query_cpus_extra_after = "qom_path"

    def query_cpus_extra(self, vm: VirtualMachine, vcpu: VCpu) -> dict[str, Any]:
        """Legacy ``query-cpus``: the reset vector as ``pc``."""
        return {"pc": 0xFFFFFFF0}

    def device_props(self, slot: CpuSlot, common: dict[str, Any],
                     device: CpuDevice | None = None) -> dict[str, Any]:
        p = slot.props
        return {**common, "apic-id": slot.arch_id, "socket-id": p["socket-id"], "die-id": p.get("die-id", 0),
                "core-id": p["core-id"], "thread-id": p["thread-id"]}

    # -- device_add ----------------------------------------------------------
    def property_types(self) -> dict[str, str]:
        return X86_CPU_PROPERTIES

    def parse_properties(self, driver: str, opts: dict[str, str]) -> dict[str, int]:
        values: dict[str, int] = {}
        for key in qdict_order(opts):
            text = opts[key]
            if key in ("hotplugged", "hotpluggable"):
                raise GenericError(f"Property '{driver}.{key}' is not writable")
            if key in X86_CPU_PROPERTIES:
                values[key] = parse_int_property(key, text, X86_CPU_PROPERTIES[key])
            elif key in X86_CPU_FLAGS:
                parse_bool_property(key, text)
            else:
                raise GenericError(f"Property '{driver}.{key}' not found")
        return values

    def pre_plug(self, vm: VirtualMachine, driver: str, values: PropertyValues, hotplugged: bool) -> CpuSlot:
        """``x86_cpu_pre_plug``: type, topology ids, slot, occupancy, id/APIC agreement, node."""
        values = cast(Mapping[str, int], values)       # parse_properties gives an x86 CPU integers only
        t = self.topology
        if driver != self.cpu_type:
            raise GenericError(f"Invalid CPU type, expected cpu type: '{self.cpu_type}'")
        socket_id = values.get("socket-id", -1)
        die_id = values.get("die-id", -1)
        core_id = values.get("core-id", -1)
        thread_id = values.get("thread-id", -1)
        apic_id = values.get("apic-id", UNASSIGNED_APIC_ID)
        if t.dies == 1 and die_id < 0:
            die_id = 0
        if apic_id == UNASSIGNED_APIC_ID:
            for name, value, count in (("socket-id", socket_id, t.sockets), ("die-id", die_id, t.dies),
                                       ("core-id", core_id, t.cores), ("thread-id", thread_id, t.threads)):
                if value < 0:
                    raise GenericError(f"CPU {name} is not set")
                if value > count - 1:
                    raise GenericError(f"Invalid CPU {name}: {value} must be in range 0:{count - 1}")
            apic_id = t.apic_id(TopoIds(socket_id, die_id, core_id, thread_id))
        slot = vm.slot_by_arch_id(apic_id)
        if slot is None:
            ids = t.ids_from_apic_id(apic_id)
            raise GenericError(
                f"Invalid CPU [socket: {ids.socket}, die: {ids.die}, {self._module}core: {ids.core}, thread: {ids.thread}] "
                f"with APIC ID {apic_id}, valid index range 0:{len(vm.slots) - 1}")
        if slot.cpu is not None:
            raise GenericError(f"CPU[{slot.index}] with APIC ID {apic_id} exists")
        ids = t.ids_from_apic_id(apic_id)
        for name, given, actual in (("socket-id", socket_id, ids.socket), ("die-id", die_id, ids.die),
                                    ("core-id", core_id, ids.core), ("thread-id", thread_id, ids.thread)):
            if given != -1 and given != actual:
                raise GenericError(f"property {name}: {given & 0xFFFFFFFF} doesn't match set apic-id: "
                                   f"0x{apic_id:x} ({name}: {actual})")
        vm.check_node_id(slot, values.get("node-id", -1))
        return slot

    # -- device_del ----------------------------------------------------------
    def unplug_request(self, vm: VirtualMachine, device: CpuDevice) -> None:
        """``x86_cpu_unplug_request_cb``: boot CPU refused; the rest goes to ACPI (guest model)."""
        if device.slot.index == 0:
            raise GenericError("Boot CPU is unpluggable")
        vm.guest.x86_unplug_request(vm, device)

    def guest_eject(self, vm: VirtualMachine, device: CpuDevice) -> None:
        """The guest ejects the CPU and reports success through ACPI _OST."""
        slot = str(device.slot.index)
        vm.guest.eject(vm, device)
        vm.emit("ACPI_DEVICE_OST", {"info": {"source": 0x103, "status": 0, "slot": slot, "slot-type": "CPU"}})

    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]:
        """The local APIC's vmstate, instance = APIC ID."""
        return [("apic", device.slot.arch_id, {})]

    def deleted_events(self, device: CpuDevice) -> list[dict[str, Any]]:
        """DEVICE_DELETED data when the guest has ejected an x86 CPU: its local APIC, then the CPU."""
        core = {"device": device.id, "path": device.qom_path} if device.id else {"path": device.qom_path}
        return [{"path": f"{device.qom_path}/lapic"}, core]

    # -- legacy cpu-add (QEMU <= 5.1) -----------------------------------------
    def cpu_add_slot(self, vm: VirtualMachine, cpu_id: int) -> CpuSlot:
        """``pc_hot_add_cpu`` of QEMU 5.1: the APIC ID comes from the index, then the usual slot checks."""
        if cpu_id < 0:
            raise GenericError(f"Invalid CPU id: {cpu_id}")
        t = self.topology
        ids = t.ids_from_index(cpu_id)
        apic = t.apic_id(ids)
        if apic >= 256:                       # ACPI_CPU_HOTPLUG_ID_LIMIT
            raise GenericError(f"Unable to add CPU: {cpu_id}, resulting APIC ID ({apic}) is too large")
        slot = vm.slot_by_arch_id(apic)
        if slot is None:
            raise GenericError(
                f"Invalid CPU [socket: {ids.socket}, die: {ids.die}, {self._module}core: {ids.core}, thread: {ids.thread}] "
                f"with APIC ID {apic}, valid index range 0:{t.max_cpus - 1}")
        if slot.cpu is not None:
            raise GenericError(f"CPU[{slot.index}] with APIC ID {slot.arch_id} exists")
        return slot
