"""``-machine none``: a board with no CPUs, which is what libvirt probes a binary with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from .devices import GenericDevice
from .errors import GenericError
from .numa import NumaBuilder, NumaState
from .slots import CpuDevice, CpuSlot, VCpu

if TYPE_CHECKING:
    from .vm import PropertyValues, VirtualMachine

TARGETS = {"x86_64": ("x86_64", "x86"), "ppc64": ("ppc64", "ppc"), "s390x": ("s390x", "s390")}
ABSTRACT = {"x86_64": ("x86_64-cpu", "device", "cpu"),
            "ppc64": ("spapr-cpu-core", "cpu-core", "device", "cpu", "powerpc64-cpu"),
            "s390x": ("s390x-cpu", "cpu", "device")}


class NonePolicy:
    """No slots, no CPUs; CPU device_add is refused as QEMU 7.2 refuses it."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self.target, self.legacy_arch = TARGETS[arch]
        self.topology = None
        self.abstract_types = ABSTRACT[arch]

    numa_supported = True
    cpu_add_in_order = False

    def on_run(self, vm: VirtualMachine) -> None:
        pass

    def plug_types(self, release: str) -> frozenset[str]:
        from .cpu_models import known_plug_types
        return known_plug_types(self.arch, release)

    def unpluggable_models(self, release: str) -> frozenset[str]:
        return frozenset()

    def generic_unplug_request(self, vm: VirtualMachine, device: GenericDevice) -> None:
        """ACPI PCI hotplug hands the request to the guest; with no guest nothing happens."""
        device.unplug_requested = True

    def child_names(self, device: CpuDevice) -> set[str]:
        return set()

    query_cpus_extra_after = "thread_id"

    def query_cpus_extra(self, vm: VirtualMachine, vcpu: VCpu) -> dict[str, Any]:
        return {}

    def check_config(self) -> None:
        pass

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    reset_warnings = startup_warnings

    def realize_warnings(self) -> list[str]:
        return []

    def on_reset(self, vm: VirtualMachine) -> None:
        pass

    def build_slots(self) -> list[CpuSlot]:
        return []

    def default_node(self, slot: CpuSlot, num_nodes: int) -> int:
        return 0

    def describe_slot(self, slot: CpuSlot) -> str:
        return ""

    def boot_qom_path(self, k: int) -> str:
        raise AssertionError("machine none has no boot CPUs")

    def board_unattached_count(self, boot_cpus: int) -> int:
        return 0

    def unattached_kind(self, n: int, boot_cpus: int) -> str | None:
        return None

    def parse_properties(self, driver: str, opts: dict[str, str]) -> PropertyValues:
        raise GenericError(f"Device '{driver}' can not be hotplugged on this machine")

    def pre_plug(self, vm: VirtualMachine, driver: str, values: PropertyValues, hotplugged: bool) -> NoReturn:
        raise GenericError(f"Device '{driver}' can not be hotplugged on this machine")

    def cpu_add_slot(self, vm: VirtualMachine, cpu_id: int) -> NoReturn:
        raise GenericError("Not supported")

    def deleted_events(self, device: CpuDevice) -> list[dict[str, Any]]:
        return []

    def thread_children(self) -> tuple[str, ...]:
        return ()

    # what the VM asks only of a machine with CPUs (cpuhot.machine.vm.CpuPolicy): never reached here
    def complete_numa(self, numa: NumaBuilder, ram_size: int) -> None:
        raise AssertionError("machine none is built without NUMA")

    def check_numa_memory(self, numa_state: NumaState) -> None:
        raise AssertionError("machine none is built without NUMA")

    def property_types(self) -> dict[str, str]:
        """No CPU properties (what ``VirtualMachine.device_add`` assumed without this method)."""
        return {}

    def vcpu_paths(self, device_path: str, slot: CpuSlot) -> list[tuple[int, str]]:
        raise AssertionError("machine none has no CPUs")

    def device_props(self, slot: CpuSlot, common: dict[str, Any],
                     device: CpuDevice | None = None) -> dict[str, Any]:
        raise AssertionError("machine none has no CPUs")

    def unplug_request(self, vm: VirtualMachine, device: CpuDevice) -> None:
        raise AssertionError("machine none has no CPUs")

    def guest_eject(self, vm: VirtualMachine, device: CpuDevice) -> None:
        raise AssertionError("machine none has no CPUs")

    def migration_sections(self, device: CpuDevice) -> list[tuple[str, int, dict[str, Any]]]:
        raise AssertionError("machine none has no CPUs")
