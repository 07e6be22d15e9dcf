"""sPAPR (pseries) CPU policy: one slot per core of ``threads`` vCPUs.

Follows QEMU 7.2's ``spapr_core_pre_plug`` / ``spapr_core_unplug_request``;
SMT (threads > 1) is KVM-only in QEMU and simulated here with the layout of
qemu-facts section 9 (core-id = slot x threads, cpu-index = core-id + thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .cpu_models import cpu_definitions, known_plug_types
from .devices import GenericDevice
from .errors import ConfigError, GenericError
from .numa import NumaBuilder, NumaState, parse_numa_option
from .qdev import qdict_order, parse_int_property
from .release import Release, get_release
from .slots import CpuDevice, CpuSlot, VCpu
from .topology import CpuTopology

if TYPE_CHECKING:
    from .vm import PropertyValues, VirtualMachine

SPAPR_MEMORY_BLOCK_SIZE = 256 << 20

CORE_PROPERTIES = {"core-id": "int64_t", "nr-threads": "int64_t", "node-id": "int32_t"}


class SpaprPolicy:
    """One slot per core; arch id = core-id; vCPU qom-paths ``<core>/thread[i]``."""

    arch = "ppc64"
    target = "ppc64"
    legacy_arch = "ppc"
    abstract_types = ("spapr-cpu-core", "cpu-core", "device", "cpu", "powerpc64-cpu")
    numa_supported = True
    #: the 2016 RFC's cpu-add follows the plug-order rule like device_add
    cpu_add_in_order = True

    def __init__(self, topology: CpuTopology, core_type: str, accel: str, machine_version: tuple[int, ...],
                 cpu_family: str, hotpluggable: bool, release: Release | None = None):
        self.release = release or get_release(None)
        self.topology = topology
        self.core_type = core_type
        self.accel = accel
        self.hotpluggable = hotpluggable
        self.machine_version = machine_version
        power9_or_later = cpu_family.startswith(("power9", "power10", "power11"))
        #: XIVE exists (spapr-xive is unattached/device[0]) on 4.2+ machines with a POWER9+ CPU
        self.xive = power9_or_later and machine_version >= (4, 2)
        #: XICS presenters (icp) exist in every mode QEMU 7.2 picks for these machines
        self.xics = True

    @property
    def threads(self) -> int:
        return self.topology.threads

    # -- start-up ------------------------------------------------------------
    def check_config(self) -> None:
        t = self.topology
        if not self.hotpluggable and t.max_cpus != t.cpus:
            raise ConfigError("This machine version does not support CPU hotplug")
        if self.accel == "tcg" and t.threads > 1 and not self.release.spapr_tcg_smt:
            raise ConfigError("TCG cannot support more than 1 thread/core on a pseries machine")
        if t.threads & (t.threads - 1):
            raise ConfigError(f"Cannot support {t.threads} threads/core on a pseries machine "
                              "because it must be a power of 2")
        if t.threads > 8:
            raise ConfigError(f"Cannot support VSMT mode {t.threads} (KVM on POWER allows at most 8 threads/core)")

    # -- NUMA ------------------------------------------------------------------
    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None:
        """pseries enables NUMA by itself: without -numa there is one node with all the RAM."""
        if not numa.state.nodes:
            numa.apply(parse_numa_option("node"))
            numa.state.nodes[0].mem = ram_size
            numa.state.nodes[0].has_mem = True

    def check_numa_memory(self, numa_state: NumaState) -> None:
        """User-given nodes: each node's memory is a multiple of the 256 MiB LMB size."""
        for nodeid in sorted(numa_state.nodes):
            mem = numa_state.nodes[nodeid].mem
            if mem % SPAPR_MEMORY_BLOCK_SIZE:
                raise ConfigError(f"Node {nodeid} memory size 0x{mem:x} is not aligned to 256 MiB")

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        """What TCG says about the machine's default capabilities, at start-up and every reset."""
        if self.accel != "tcg":
            return []
        caps = []
        if self.machine_version >= (4, 0):
            caps += ["cap-cfpc=workaround", "cap-sbbc=workaround", "cap-ibs=workaround"]
            if not self.release.spapr_tcg_warns_sbbc:
                caps.remove("cap-sbbc=workaround")
        if self.machine_version >= (5, 0):
            caps += ["cap-ccf-assist=on"]
        return [f"warning: TCG doesn't support requested feature, {c}" for c in caps]

    reset_warnings = startup_warnings

    def realize_warnings(self) -> list[str]:
        return []

    def on_run(self, vm: VirtualMachine) -> None:
        """SLOF idles without a guest: nothing happens."""

    def on_reset(self, vm: VirtualMachine) -> None:
        """``spapr_drc_reset``: a pending unplug completes; every other core is configured."""
        for slot in vm.slots:
            device = slot.cpu
            if device is None:
                continue
            if device.unplug_requested:
                vm.remove_cpu_device(device)
            else:
                device.guest_configured = True

    def build_slots(self) -> list[CpuSlot]:
        t = self.topology
        n = t.max_cpus // t.threads
        return [CpuSlot(index=i, props={"core-id": i * t.threads}, arch_id=i * t.threads,
                        vcpus_count=t.threads, type=self.core_type, first_cpu_index=i * t.threads)
                for i in range(n)]

    def default_node(self, slot: CpuSlot, num_nodes: int) -> int:
        t = self.topology
        return slot.props["core-id"] // (t.cores * t.threads) % num_nodes

    def describe_slot(self, slot: CpuSlot) -> str:
        return f"core-id: {slot.props['core-id']}"

    # -- QOM naming ----------------------------------------------------------
    def boot_qom_path(self, k: int) -> str:
        return f"/machine/unattached/device[{k + 1 if self.xive else k}]"

    def board_unattached_count(self, boot_cores: int) -> int:
        """spapr-xive (when XIVE is on), the boot cores, then spapr-vio-bridge, spapr-nvram, the PHB."""
        return boot_cores + (1 if self.xive else 0) + 3

    def unattached_kind(self, n: int, boot_cores: int) -> str | None:
        """Board devices that are not cores: QEMU 7.2 accepts device_del of them and does nothing."""
        if n < self.board_unattached_count(boot_cores):
            return "ignored"
        return None

    def vcpu_paths(self, device_path: str, slot: CpuSlot) -> list[tuple[int, str]]:
        return [(slot.first_cpu_index + i, f"{device_path}/thread[{i}]") for i in range(slot.vcpus_count)]

    def generic_unplug_request(self, vm: VirtualMachine, device: GenericDevice) -> None:
        """``spapr_pci_unplug_request``: a second request is refused; a device hot-plugged before
        the machine first ran was never configured (its DRC is released at once, recorded:
        ppc-pseries-del-nic-states); any other waits for the guest (after ``cont`` SLOF's
        handling makes QEMU's outcome timing-dependent, so that case stays pending here)."""
        if device.unplug_requested and self.release.spapr_pci_unplug_once:
            raise GenericError(f"PCI device unplug already in progress for device {device.id}")
        device.unplug_requested = True
        if device.hotplugged and not vm.guest.booted:
            vm.remove_generic_device(device)

    def child_names(self, device: CpuDevice) -> set[str]:
        """Children of a core that device_del could name: its threads."""
        return {f"thread[{i}]" for i in range(len(device.vcpus))}

    def plug_types(self, release: str) -> frozenset[str]:
        return known_plug_types(self.arch, release)

    def unpluggable_models(self, release: str) -> frozenset[str]:
        """The thread types: real CPU types, but not what pseries plugs.

        ppc's query-cpu-definitions lists each CPU type by model name with an empty ``typename``
        (``ppc_cpu_defs_entry`` leaves it unset) and each alias with the type it stands for, so
        the types are both: ``power9_v2.0-powerpc64-cpu`` on 10.0, whose ``power9`` alias names
        ``power9_v2.2``."""
        defs = cpu_definitions(self.arch, release)
        return frozenset({d["typename"] for d in defs if d["typename"]}
                         | {f"{d['name']}-powerpc64-cpu" for d in defs if not d["typename"]})

    #: legacy query-cpus: ``nip`` follows ``CPU``
    query_cpus_extra_after = "CPU"

    def query_cpus_extra(self, vm: VirtualMachine, vcpu: VCpu) -> dict[str, Any]:
        return {"nip": 0x100}

    def device_props(self, slot: CpuSlot, common: dict[str, Any],
                     device: CpuDevice | None = None) -> dict[str, Any]:
        return {**common, "core-id": slot.arch_id, "nr-threads": slot.vcpus_count}

    def guest_eject(self, vm: VirtualMachine, device: CpuDevice) -> None:
        vm.guest.eject(vm, device)

    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]:
        return []

    def thread_children(self) -> tuple[str, ...]:
        """Per-thread interrupt presenters, in the order QEMU deletes them."""
        return (("icp",) if self.xics else ()) + (("xive-tctx",) if self.xive else ())

    # -- device_add ----------------------------------------------------------
    def property_types(self) -> dict[str, str]:
        return CORE_PROPERTIES

    def json_property_kinds(self) -> dict[str, str]:
        """What QMP device_add's typed JSON (10.0) expects of each property (see X86Policy's)."""
        return {**dict.fromkeys(CORE_PROPERTIES, "integer"), "hotplugged": "readonly", "hotpluggable": "readonly"}

    def parse_properties(self, driver: str, opts: dict[str, str]) -> dict[str, int | bool]:
        values: dict[str, int | bool] = {}
        for key in qdict_order(opts):
            text = opts[key]
            if key in ("hotplugged", "hotpluggable"):
                raise GenericError(f"Property '{driver}.{key}' is not writable")
            if key not in CORE_PROPERTIES:
                raise GenericError(f"Property '{driver}.{key}' not found")
            value = parse_int_property(key, text, CORE_PROPERTIES[key])
            if key == "core-id":
                if value < 0:
                    raise GenericError(f"Invalid core id {value}")
                value = _to_int32(value)
            if key == "nr-threads":
                value = _to_int32(value)
            values[key] = value
        return values

    def pre_plug(self, vm: VirtualMachine, driver: str, values: PropertyValues, hotplugged: bool) -> CpuSlot:
        """``spapr_core_pre_plug``."""
        values = cast(Mapping[str, int], values)       # parse_properties gives a core integers only
        if hotplugged and not self.hotpluggable:
            raise GenericError("CPU hotplug not supported for this machine")
        if driver != self.core_type:
            raise GenericError(f"CPU core type should be {self.core_type}")
        core_id = values.get("core-id", 0)
        if core_id < 0:
            # QEMU 7.2 dereferences a negative slot index here and crashes; answer instead
            raise GenericError(f"core id {core_id} out of range")
        if core_id % self.threads:
            raise GenericError(f"invalid core id {core_id}")
        nr_threads = values.get("nr-threads", self.threads)
        if self.hotpluggable and nr_threads != self.threads:
            raise GenericError(f"invalid nr-threads {nr_threads}, must be {self.threads}")
        slot = vm.slot_by_arch_id(core_id)
        if slot is None:
            raise GenericError(f"core id {core_id} out of range")
        if slot.cpu is not None:
            raise GenericError(f"core {core_id} already populated")
        vm.check_node_id(slot, values.get("node-id", -1))
        return slot

    # -- device_del ----------------------------------------------------------
    def unplug_request(self, vm: VirtualMachine, device: CpuDevice) -> None:
        """``spapr_core_unplug_request``: boot core refused; a core the guest never
        configured goes at once, any other waits for the guest."""
        if device.slot.index == 0:
            raise GenericError("Boot CPU core may not be unplugged")
        vm.guest.spapr_unplug_request(vm, device)

    def deleted_events(self, device: CpuDevice) -> list[dict[str, Any]]:
        """DEVICE_DELETED data, in QEMU's order, for removing a whole core."""
        events: list[dict[str, Any]] = []
        for vcpu in device.vcpus:
            for child in self.thread_children():
                events.append({"path": f"{vcpu.qom_path}/{child}"})
        for vcpu in device.vcpus:
            events.append({"path": vcpu.qom_path})
        core = {"device": device.id, "path": device.qom_path} if device.id else {"path": device.qom_path}
        events.append(core)
        return events

    # -- legacy cpu-add (the 2016 RFC's semantics) ----------------------------
    def cpu_add_slot(self, vm: VirtualMachine, cpu_id: int) -> CpuSlot:
        if cpu_id < 0:
            raise GenericError(f"Invalid CPU id: {cpu_id}")
        if cpu_id % self.threads:
            raise GenericError(
                f"Invalid CPU id: {cpu_id}, on this machine cpu-add takes the first vCPU of a core "
                f"(a multiple of {self.threads})")
        slot = vm.slot_by_arch_id(cpu_id)
        if slot is None:
            raise GenericError(f"core id {cpu_id} out of range")
        if slot.cpu is not None:
            raise GenericError(f"core {cpu_id} already populated")
        return slot


def _to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
