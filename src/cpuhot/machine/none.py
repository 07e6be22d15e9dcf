"""``-machine none``: a board with no CPUs, which is what libvirt probes a binary with."""

from __future__ import annotations

from .errors import GenericError

TARGETS = {"x86_64": ("x86_64", "x86"), "ppc64": ("ppc64", "ppc"), "s390x": ("s390x", "s390")}
ABSTRACT = {"x86_64": ("x86_64-cpu", "device", "cpu"),
            "ppc64": ("spapr-cpu-core", "cpu-core", "device", "cpu", "powerpc64-cpu"),
            "s390x": ("s390x-cpu", "cpu", "device")}


class NonePolicy:
    """No slots, no CPUs; CPU device_add is refused as QEMU 7.2 refuses it."""

    def __init__(self, arch: str):
        self.arch = arch
        self.target, self.legacy_arch = TARGETS[arch]
        self.topology = None
        self.abstract_types = ABSTRACT[arch]

    numa_supported = True
    cpu_add_in_order = False

    def on_run(self, vm) -> None:
        pass

    def plug_types(self, release: str) -> frozenset[str]:
        from .cpu_models import known_plug_types
        return known_plug_types(self.arch, release)

    def unpluggable_models(self, release: str) -> frozenset[str]:
        return frozenset()

    def child_names(self, device) -> set[str]:
        return set()

    query_cpus_extra_after = "thread_id"

    def query_cpus_extra(self, vm, vcpu) -> dict:
        return {}

    def check_config(self) -> None:
        pass

    def startup_warnings(self, cpu_model_name: str) -> list[str]:
        return []

    reset_warnings = startup_warnings

    def realize_warnings(self) -> list[str]:
        return []

    def on_reset(self, vm) -> None:
        pass

    def build_slots(self) -> list:
        return []

    def default_node(self, slot, num_nodes: int) -> int:
        return 0

    def describe_slot(self, slot) -> str:
        return ""

    def boot_qom_path(self, k: int) -> str:
        raise AssertionError("machine none has no boot CPUs")

    def board_unattached_count(self, boot_cpus: int) -> int:
        return 0

    def unattached_kind(self, n: int, boot_cpus: int):
        return None

    def parse_properties(self, driver: str, opts: dict) -> dict:
        raise GenericError(f"Device '{driver}' can not be hotplugged on this machine")

    def pre_plug(self, vm, driver, values, hotplugged):
        raise GenericError(f"Device '{driver}' can not be hotplugged on this machine")

    def cpu_add_slot(self, vm, cpu_id: int):
        raise GenericError("Not supported")

    def deleted_events(self, device) -> list[dict]:
        return []

    def thread_children(self) -> tuple[str, ...]:
        return ()
