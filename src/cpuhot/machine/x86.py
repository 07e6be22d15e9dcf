"""x86 (pc / q35) CPU policy: one slot per thread, APIC IDs, ACPI CPU hotplug.

Everything here follows QEMU 7.2's ``x86_cpu_pre_plug`` / ``x86_cpu_unplug_request_cb``
and the facts recorded from a real 7.2 (see ``tests/conformance``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .cpu_models import ht_warning_models, known_plug_types, tcg_feature_warnings, x2apic_models
from .devices import GenericDevice
from .errors import AbortError, ConfigError, GenericError
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
#: the module level's property (QEMU 9.1+, ``Release.x86_modules``)
X86_MODULE_PROPERTY = {"module-id": "int32_t"}
#: boolean properties accepted and ignored (they do not change the hotplug surface)
X86_CPU_FLAGS = ("start-powered-off", "pmu", "check", "enforce", "migratable", "x2apic", "hypervisor")
#: the local APIC refuses ids from this one on unless the CPU has x2apic (QEMU 9.0+ apic_common_set_id)
X2APIC_ID_MIN = 255


def cpu_has_x2apic(cpu_text: str, model_has_it: bool, accel: str, device_value: bool | None = None) -> bool:
    """Whether a CPU of ``-cpu cpu_text`` has the x2apic feature once realized.

    QEMU's x86_cpu_parse_featurestr: ``x2apic=on|off`` are global properties set when the CPU is
    created (the last one wins), then device_add's own ``x2apic`` (``device_value``);
    ``+x2apic`` and ``-x2apic`` are applied afterwards by
    x86_cpu_expand_features, ``-`` after ``+``.  KVM turns x2apic on for every model
    (kvm_default_props); under TCG the model decides (data/<release>/x2apic-x86_64.json)."""
    value = model_has_it or accel == "kvm"
    plus = minus = False
    for feature in cpu_text.split(",")[1:]:
        if feature == "+x2apic":
            plus = True
        elif feature == "-x2apic":
            minus = True
        elif feature.startswith("x2apic="):
            value = feature.split("=", 1)[1] in ("on", "yes", "true", "y")
    if device_value is not None:
        value = device_value
    if plus:
        value = True
    if minus:
        value = False
    return value

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

    def _module(self, ids: TopoIds) -> str:
        """The module level in CPU names (QEMU 9.1+)."""
        return f"module: {ids.module}, " if self.release.x86_modules else ""

    def has_x2apic(self, device_value: bool | None = None) -> bool:
        """A CPU's x2apic feature (``-cpu``, the model's table, the accelerator, device_add's flag)."""
        return cpu_has_x2apic(self.cpu_text, self.cpu_text.split(",", 1)[0] in x2apic_models(self.release.name),
                              self.accel, device_value)

    def _x2apic_refusal(self, apic_id: int, device_value: bool | None = None) -> str | None:
        """``apic_common_set_id`` (QEMU 9.0+): the refusal of ``apic_id`` for this CPU, if any."""
        if self.release.x2apic_abort_location is None or apic_id < X2APIC_ID_MIN or self.has_x2apic(device_value):
            return None
        return f"APIC ID {apic_id} requires x2APIC feature in CPU"

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
        # QEMU 9.0+: each boot CPU's local APIC takes its id with &error_abort: the first one
        # with an id >= 255 and no x2apic aborts QEMU (exit by SIGABRT)
        if self.release.x2apic_abort_location is not None and self.topology.max_apic_id >= X2APIC_ID_MIN:
            for index in range(self.topology.cpus):
                refusal = self._x2apic_refusal(self.topology.apic_id_from_index(index))
                if refusal is not None:
                    # every CPU realized so far, this one included, printed its TCG warnings, and
                    # the first one the AMD hyperthreading warning after them (recorded:
                    # smp-refuse-x2apic-q35-256-phenom-threads2)
                    tcg = self.realize_warnings()
                    first = tcg + self.first_cpu_warnings(self.cpu_text.split(",", 1)[0])
                    raise AbortError(refusal, where=self.release.x2apic_abort_location,
                                     hints=("Try x2apic=on in -cpu.",),
                                     printed=tuple(first + tcg * index))

    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None:
        """No NUMA unless -numa says so."""

    def check_numa_memory(self, numa_state: NumaState) -> None:
        pass

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    def first_cpu_warnings(self, cpu_model_name: str) -> list[str]:
        """What the first CPU realized prints after its TCG warnings (x86_cpu_realizefn, once per
        process): an AMD model without topoext (once realized) with threads > 1."""
        if cpu_model_name in ht_warning_models(self.release.name) and self.topology.threads > 1:
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
            if t.modules > 1:
                props["module-id"] = ids.module
            slots.append(CpuSlot(index=i, props=props, arch_id=t.apic_id(ids), vcpus_count=1,
                                 type=self.cpu_type, first_cpu_index=i))
        return slots

    def default_node(self, slot: CpuSlot, num_nodes: int) -> int:
        return slot.props["socket-id"] % num_nodes

    def describe_slot(self, slot: CpuSlot) -> str:
        p = slot.props
        die = f", die-id: {p['die-id']}" if "die-id" in p else ""
        module = f", module-id: {p['module-id']}" if "module-id" in p else ""
        return f"socket-id: {p['socket-id']}{die}{module}, core-id: {p['core-id']}, thread-id: {p['thread-id']}"

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

    def generic_unplug_request(self, vm: VirtualMachine, device: GenericDevice) -> None:
        """ACPI PCI hotplug hands the request to the guest; with no guest nothing happens."""
        device.unplug_requested = True

    def child_names(self, device: CpuDevice) -> set[str]:
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
        props = {**common, "apic-id": slot.arch_id, "socket-id": p["socket-id"], "die-id": p.get("die-id", 0)}
        if self.release.x86_modules:
            props["module-id"] = p.get("module-id", 0)
        return {**props, "core-id": p["core-id"], "thread-id": p["thread-id"]}

    # -- device_add ----------------------------------------------------------
    def property_types(self) -> dict[str, str]:
        if self.release.x86_modules:
            return {**X86_CPU_PROPERTIES, **X86_MODULE_PROPERTY}
        return X86_CPU_PROPERTIES

    def json_property_kinds(self) -> dict[str, str]:
        """What QMP device_add's typed JSON (10.0) expects of each property: integer, boolean, or
        read-only (anything else is not a property)."""
        kinds = dict.fromkeys(self.property_types(), "integer")
        kinds.update(dict.fromkeys(X86_CPU_FLAGS, "boolean"))
        kinds.update({"hotplugged": "readonly", "hotpluggable": "readonly"})
        return kinds

    def parse_properties(self, driver: str, opts: dict[str, str]) -> dict[str, int | bool]:
        values: dict[str, int | bool] = {}
        types = self.property_types()
        for key in qdict_order(opts):
            text = opts[key]
            if key in ("hotplugged", "hotpluggable"):
                raise GenericError(f"Property '{driver}.{key}' is not writable")
            if key in types:
                values[key] = parse_int_property(key, text, types[key])
            elif key == "x2apic":
                values[key] = parse_bool_property(key, text)      # the local APIC's id check reads it
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
        module_id = values.get("module-id", -1)
        apic_id = values.get("apic-id", UNASSIGNED_APIC_ID)
        if t.dies == 1 and die_id < 0:
            die_id = 0
        if t.modules == 1 and module_id < 0:      # module-id is optional with one module per die
            module_id = 0
        levels = [("socket-id", socket_id, t.sockets), ("die-id", die_id, t.dies)]
        if self.release.x86_modules:
            levels.append(("module-id", module_id, t.modules))
        levels += [("core-id", core_id, t.cores), ("thread-id", thread_id, t.threads)]
        if apic_id == UNASSIGNED_APIC_ID:
            for name, value, count in levels:
                if value < 0:
                    raise GenericError(f"CPU {name} is not set")
                if value > count - 1:
                    raise GenericError(f"Invalid CPU {name}: {value} must be in range 0:{count - 1}")
            apic_id = t.apic_id(TopoIds(socket_id, die_id, core_id, thread_id, module_id))
        slot = vm.slot_by_arch_id(apic_id)
        if slot is None:
            ids = t.ids_from_apic_id(apic_id)
            raise GenericError(
                f"Invalid CPU [socket: {ids.socket}, die: {ids.die}, {self._module(ids)}core: {ids.core}, "
                f"thread: {ids.thread}] with APIC ID {apic_id}, valid index range 0:{len(vm.slots) - 1}")
        if slot.cpu is not None:
            raise GenericError(f"CPU[{slot.index}] with APIC ID {apic_id} exists")
        ids = t.ids_from_apic_id(apic_id)
        actual_ids = {"socket-id": ids.socket, "die-id": ids.die, "module-id": ids.module, "core-id": ids.core,
                      "thread-id": ids.thread}
        for name, given, actual in ((name, value, actual_ids[name]) for name, value, _ in levels):
            if given != -1 and given != actual:
                raise GenericError(f"property {name}: {given & 0xFFFFFFFF} doesn't match set apic-id: "
                                   f"0x{apic_id:x} ({name}: {actual})")
        vm.check_node_id(slot, values.get("node-id", -1))
        x2apic = values.get("x2apic")
        refusal = self._x2apic_refusal(apic_id, x2apic if isinstance(x2apic, bool) else None)
        if refusal is not None:
            # QEMU 10.0 aborts here (the id goes to the local APIC with &error_abort): a QEMU
            # defect cpuhot does not copy; it refuses the device_add with the error's text
            raise GenericError(refusal)
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
                f"Invalid CPU [socket: {ids.socket}, die: {ids.die}, {self._module(ids)}core: {ids.core}, "
                f"thread: {ids.thread}] with APIC ID {apic}, valid index range 0:{t.max_cpus - 1}")
        if slot.cpu is not None:
            raise GenericError(f"CPU[{slot.index}] with APIC ID {slot.arch_id} exists")
        return slot
