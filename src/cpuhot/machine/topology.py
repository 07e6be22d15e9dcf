"""The derived CPU topology and QEMU's x86 topology arithmetic.

A slot index enumerates possible CPUs socket-major
(``(((socket*dies + die)*modules + module)*cores + core)*threads + thread``); an x86 APIC ID packs
the same ids into bit fields whose widths are ``ceil(log2(count))``, so APIC
IDs have holes for non-power-of-two counts while slot indexes are dense.

>>> t = CpuTopology(cpus=1, sockets=2, dies=1, clusters=1, cores=3, threads=3, max_cpus=18)
>>> t.ids_from_index(17), t.apic_id(TopoIds(1, 0, 2, 2))
(TopoIds(socket=1, die=0, core=2, thread=2), 26)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class TopoIds(NamedTuple):
    socket: int
    die: int
    core: int
    thread: int
    #: x86 modules (QEMU 9.1+): between die and core; 0 where there is one module per die
    module: int = 0


def field_width(count: int) -> int:
    """Bits needed to hold ids ``0..count-1`` (QEMU's ``apicid_bitwidth_for_count``)."""
    return (count - 1).bit_length() if count > 1 else 0


@dataclass(frozen=True)
class CpuTopology:
    cpus: int
    sockets: int
    dies: int
    clusters: int
    cores: int
    threads: int
    max_cpus: int
    #: s390x (QEMU 10.0): the levels above sockets; 1 elsewhere
    books: int = 1
    drawers: int = 1
    #: x86 (QEMU 9.1+): modules per die, between die and core (``-smp modules=``); 1 elsewhere
    modules: int = 1

    # -- x86 slot and APIC arithmetic ---------------------------------------
    def ids_from_index(self, index: int) -> TopoIds:
        thread = index % self.threads
        core = index // self.threads % self.cores
        module = index // (self.threads * self.cores) % self.modules
        die = index // (self.threads * self.cores * self.modules) % self.dies
        socket = index // (self.threads * self.cores * self.modules * self.dies)
        return TopoIds(socket, die, core, thread, module)

    def index_from_ids(self, ids: TopoIds) -> int:
        return (((ids.socket * self.dies + ids.die) * self.modules + ids.module) * self.cores + ids.core) \
            * self.threads + ids.thread

    @property
    def _widths(self) -> tuple[int, int, int, int]:
        """Bits of thread, core, module and die ids (QEMU's ``apicid_*_width``)."""
        return field_width(self.threads), field_width(self.cores), field_width(self.modules), field_width(self.dies)

    def apic_id(self, ids: TopoIds) -> int:
        """``x86_apicid_from_topo_ids``."""
        tw, cw, mw, dw = self._widths
        return (ids.socket << (tw + cw + mw + dw)) | (ids.die << (tw + cw + mw)) | (ids.module << (tw + cw)) \
            | (ids.core << tw) | ids.thread

    def ids_from_apic_id(self, apic_id: int) -> TopoIds:
        """``x86_topo_ids_from_apicid``."""
        tw, cw, mw, dw = self._widths
        thread = apic_id & ((1 << tw) - 1)
        core = (apic_id >> tw) & ((1 << cw) - 1)
        module = (apic_id >> (tw + cw)) & ((1 << mw) - 1)
        die = (apic_id >> (tw + cw + mw)) & ((1 << dw) - 1)
        socket = apic_id >> (tw + cw + mw + dw)
        return TopoIds(socket, die, core, thread, module)

    def apic_id_from_index(self, index: int) -> int:
        return self.apic_id(self.ids_from_index(index))

    @property
    def max_apic_id(self) -> int:
        return self.apic_id_from_index(self.max_cpus - 1)

    def describe(self) -> str:
        return (f"sockets={self.sockets},dies={self.dies},cores={self.cores},"
                f"threads={self.threads},cpus={self.cpus},maxcpus={self.max_cpus}")
