"""The possible-CPUs table: slots, the CPU devices plugged into them, and their vCPUs.

Names follow QEMU: a *slot* is one entry of ``possible_cpus`` (x86: one
thread; sPAPR: one core), its ``arch_id`` is the x86 APIC ID or the sPAPR
core-id; a *CPU device* is what ``device_add`` creates (an x86 CPU or an sPAPR
core) at a ``qom-path``; a *vCPU* is one thread with its ``cpu-index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class VCpu:
    cpu_index: int
    qom_path: str
    thread_id: int
    device: "CpuDevice"
    #: whether the simulated guest has this vCPU online (guest model)
    online: bool = True


@dataclass(eq=False)
class CpuDevice:
    slot: "CpuSlot"
    qom_path: str
    id: str | None
    hotplugged: bool
    vcpus: list[VCpu] = field(default_factory=list)
    #: created by legacy ``cpu-add`` (unattached, no id)
    legacy: bool = False
    #: device_del was accepted and the guest has not ejected it yet
    unplug_requested: bool = False
    #: sPAPR: the DRC is in a state where unplug needs the guest (cold-plugged or configured by it)
    guest_configured: bool = True
    #: monotonically increasing creation number (QEMU's CPU list order)
    created: int = 0
    #: s390x (10.0): the topology properties the CPU keeps (``S390Policy.configure_device``); None elsewhere
    topology_props: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def type(self) -> str:
        return self.slot.type


@dataclass(eq=False)
class CpuSlot:
    index: int
    props: dict[str, int]        # topology ids as QEMU has them for this slot (no node-id)
    arch_id: int
    vcpus_count: int
    type: str
    node_id: int | None = None   # None until NUMA completion; stays None without NUMA on x86
    cpu: CpuDevice | None = None
    #: first cpu-index this slot's vCPUs get under the modern rule
    first_cpu_index: int = 0

    def qmp_props(self, with_node: bool) -> dict[str, int]:
        if with_node and self.node_id is not None:
            return {**self.props, "node-id": self.node_id}
        return dict(self.props)
