"""NUMA configuration: ``-numa node|cpu|dist`` and the node of every CPU slot.

Follows QEMU 7.2's ``hw/core/numa.c``: nodes are numbered in order unless
``nodeid=`` says otherwise; ``cpus=`` (legacy, by cpu-index) and
``-numa cpu`` (by topology ids) assign slots; slots nobody assigned get the
board's default (x86: ``socket-id % nodes``) when no slot was assigned at all,
and node 0 plus two warnings when the mapping is partial.  Node memory must
add up to ``-m``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import ConfigError
from .options import OptionError, parse_int, parse_option_string, parse_size
from .slots import CpuSlot

MAX_NODES = 128
RAM_ALIGN = 1 << 23


@dataclass
class NumaNode:
    nodeid: int
    mem: int = 0
    memdev: str | None = None
    has_mem: bool = False
    has_memdev: bool = False


@dataclass
class NumaCpuRule:
    """One ``-numa cpu`` or one ``cpus=`` index: which slots go to which node."""

    node_id: int
    props: dict[str, int]       # socket-id / die-id / core-id / thread-id to match
    location: str               # the option text, for error messages


@dataclass
class NumaOption:
    kind: str                   # "node" | "cpu" | "dist"
    values: dict[str, str]
    location: str               # "-numa node,nodeid=1,cpus=2-7"


@dataclass
class NumaState:
    nodes: dict[int, NumaNode] = field(default_factory=dict)
    distances: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)


_NODE_KEYS = {"nodeid", "mem", "memdev", "cpus", "initiator", "type"}
_CPU_KEYS = {"node-id", "socket-id", "die-id", "cluster-id", "core-id", "thread-id", "type"}
_DIST_KEYS = {"src", "dst", "val", "type"}


def parse_numa_option(text: str) -> NumaOption:
    location = f"-numa {text}"
    try:
        pairs = parse_option_string(text, implied="type")
    except OptionError as e:
        raise ConfigError(str(e), location=location) from None
    values: dict[str, str] = {}
    cpus: list[str] = []
    for k, v in pairs:
        if k == "cpus":
            cpus.append(v)
        else:
            values[k] = v
    kind = values.get("type")
    allowed = {"node": _NODE_KEYS, "cpu": _CPU_KEYS, "dist": _DIST_KEYS}
    if kind not in allowed:
        raise ConfigError(f"Parameter 'type' does not accept value '{kind}'", location=location)
    for k in values:
        if k not in allowed[kind]:
            raise ConfigError(f"Invalid parameter '{k}'", location=location)
    if cpus:
        values["cpus"] = ",".join(cpus)
    return NumaOption(kind=kind, values=values, location=location)


def _int(opt: NumaOption, key: str, *, lo: int = -(1 << 63), hi: int = (1 << 63) - 1, what: str = "int64") -> int:
    try:
        return parse_int(opt.values[key], lo=lo, hi=hi)
    except ValueError:
        raise ConfigError(f"Parameter '{key}' expects {what}", location=opt.location) from None


def _cpu_ranges(opt: NumaOption) -> list[int]:
    out: list[int] = []
    for part in opt.values["cpus"].split(","):
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = parse_int(a, lo=0, hi=65535), parse_int(b, lo=0, hi=65535)
                if hi < lo:
                    raise ValueError(part)
                out.extend(range(lo, hi + 1))
            else:
                out.append(parse_int(part, lo=0, hi=65535))
        except ValueError:
            raise ConfigError("Parameter 'cpus' expects an int64 value or range", location=opt.location) from None
    return out


class NumaBuilder:
    """Applies parsed ``-numa`` options, in command-line order, to a list of slots.

    ``slots`` are objects with ``props`` (the topology ids QEMU knows for the
    slot: ``socket-id``..., or ``core-id`` on pseries), ``index`` and a mutable
    ``node_id`` (``None`` = not assigned yet).
    """

    def __init__(self, slots: Sequence[CpuSlot], *, max_cpus: int, numa_mem_supported: bool, memdevs: dict[str, int]):
        self.slots = slots
        self.max_cpus = max_cpus
        self.numa_mem_supported = numa_mem_supported
        self.memdevs = memdevs
        self.state = NumaState()
        self.warnings: list[str] = []
        self._have_mem = False
        self._have_memdevs = False

    # -- option handlers ----------------------------------------------------
    def apply(self, opt: NumaOption) -> None:
        getattr(self, f"_apply_{opt.kind}")(opt)

    def _apply_node(self, opt: NumaOption) -> None:
        nodes = self.state.nodes
        nodenr = _int(opt, "nodeid", lo=0, hi=65535, what="uint16_t") if "nodeid" in opt.values else len(nodes)
        if nodenr >= MAX_NODES:
            raise ConfigError(f"Max number of NUMA nodes reached: {nodenr}", location=opt.location)
        if nodenr in nodes:
            raise ConfigError(f"Duplicate NUMA nodeid: {nodenr}", location=opt.location)
        if "cpus" in opt.values:
            for idx in _cpu_ranges(opt):
                if idx >= self.max_cpus:
                    raise ConfigError(
                        f"CPU index ({idx}) should be smaller than maxcpus ({self.max_cpus})",
                        location=opt.location)
                slot_props = self.slot_at_cpu_index(idx).props
                self.set_cpu_node(nodenr, dict(slot_props), opt.location)
        node = NumaNode(nodeid=nodenr)
        has_mem, has_memdev = "mem" in opt.values, "memdev" in opt.values
        self._have_memdevs = self._have_memdevs or has_memdev
        self._have_mem = self._have_mem or has_mem
        if (has_mem and self._have_memdevs) or (has_memdev and self._have_mem):
            raise ConfigError("numa configuration should use either mem= or memdev=,"
                              "mixing both is not allowed", location=opt.location)
        if has_mem:
            if not self.numa_mem_supported:
                raise ConfigError("Parameter -numa node,mem is not supported by this machine type",
                                  location=opt.location, hints=("Use -numa node,memdev instead",))
            try:
                node.mem = parse_size(opt.values["mem"], default_unit=1 << 20)
            except ValueError:
                raise ConfigError("Parameter 'mem' expects a size", location=opt.location) from None
            node.has_mem = True
            self.warnings.append(f"{opt.location}: warning: Parameter -numa node,mem is deprecated,"
                                 " use -numa node,memdev instead")
        if has_memdev:
            name = opt.values["memdev"]
            if name not in self.memdevs:
                raise ConfigError(f"memdev={name} is ambiguous", location=opt.location)
            node.mem = self.memdevs[name]
            node.memdev = name
            node.has_memdev = True
        nodes[nodenr] = node

    def _apply_cpu(self, opt: NumaOption) -> None:
        if "node-id" not in opt.values:
            raise ConfigError("Missing mandatory node-id property", location=opt.location)
        node_id = _int(opt, "node-id")
        if node_id not in self.state.nodes:
            raise ConfigError(
                f"Invalid node-id={node_id}, NUMA node must be defined with -numa node,nodeid=ID "
                "before it's used with -numa cpu,node-id=ID", location=opt.location)
        props: dict[str, int] = {k: _int(opt, k) for k in ("socket-id", "die-id", "cluster-id", "core-id", "thread-id")
                 if k in opt.values}
        self.set_cpu_node(node_id, props, opt.location)

    def _apply_dist(self, opt: NumaOption) -> None:
        for k in ("src", "dst", "val"):
            if k not in opt.values:
                raise ConfigError(f"Parameter '{k}' is missing", location=opt.location)
        src, dst = _int(opt, "src", lo=0, hi=65535), _int(opt, "dst", lo=0, hi=65535)
        val = _int(opt, "val", lo=0, hi=255, what="uint8_t")
        for n in (src, dst):
            if n >= MAX_NODES:
                raise ConfigError(f"Parameter 'src' expects an integer between 0 and {MAX_NODES - 1}",
                                  location=opt.location)
            if n not in self.state.nodes:
                raise ConfigError("Source/Destination NUMA node is missing. Please use '-numa node' "
                                  "option to declare it first.", location=opt.location)
        if src == dst and val != 10:
            raise ConfigError(f"Local distance of node {src} should be 10.", location=opt.location)
        self.state.distances[(src, dst)] = val

    # -- slot mapping -------------------------------------------------------
    def slot_at_cpu_index(self, idx: int) -> CpuSlot:
        """The slot holding cpu-index ``idx`` (x86: slot idx; pseries: the core containing it)."""
        per = self.slots[0].vcpus_count if self.slots else 1
        return self.slots[idx // per]

    def set_cpu_node(self, node_id: int, props: dict[str, int], location: str) -> None:
        """QEMU's ``machine_set_cpu_numa_node``: assign every slot that matches ``props``."""
        match = False
        for slot in self.slots:
            sp = slot.props
            for key in ("thread-id", "core-id", "cluster-id", "socket-id", "die-id"):
                if key in props and key not in sp:
                    raise ConfigError(f"{key} is not supported", location=location)
            if any(props[k] != sp[k] for k in ("thread-id", "core-id", "cluster-id", "die-id", "socket-id")
                   if k in props):
                continue
            if slot.node_id is not None and slot.node_id != node_id:
                raise ConfigError(f"CPU is already assigned to node-id: {slot.node_id}", location=location)
            match = True
            slot.node_id = node_id
        if not match:
            raise ConfigError("no match found", location=location)

    # -- completion ---------------------------------------------------------
    def finish(self, ram_size: int, default_node: Callable[[CpuSlot], int],
               describe_slot: Callable[[CpuSlot], str]) -> NumaState:
        """Check memory and give every slot a node (``numa_complete_configuration`` +
        ``machine_numa_finish_cpu_init``).  ``default_node(slot)`` is the board rule."""
        nodes = self.state.nodes
        if not nodes:
            return self.state
        if all(not (n.has_mem or n.has_memdev) for n in nodes.values()) and self.numa_mem_supported:
            # legacy machines split RAM between nodes by themselves
            count = len(nodes)
            granularity = RAM_ALIGN
            usedmem = 0
            for i, node in enumerate(sorted(nodes.values(), key=lambda n: n.nodeid)):
                if i == count - 1:
                    node.mem = ram_size - usedmem
                else:
                    node.mem = (ram_size // count) & ~(granularity - 1)
                    usedmem += node.mem
            self.warnings.append("warning: Default splitting of RAM between nodes is deprecated,"
                                 " Use '-numa node,memdev' to explicitly define RAM allocation per node")
        total = sum(n.mem for n in nodes.values())
        if total != ram_size:
            raise ConfigError(f"total memory for NUMA nodes (0x{total:x}) should equal RAM size (0x{ram_size:x})")
        default_mapping = all(s.node_id is None for s in self.slots)
        missing: list[str] = []
        for slot in self.slots:
            if slot.node_id is None:
                if default_mapping:
                    slot.node_id = default_node(slot)
                else:
                    missing.append(f"CPU {slot.index} [{describe_slot(slot)}]")
                    slot.node_id = 0
        if missing:
            self.warnings.append("warning: CPU(s) not present in any NUMA nodes: " + ", ".join(missing))
            self.warnings.append("warning: All CPU(s) up to maxcpus should be described in NUMA config, "
                                 "ability to start up with partial NUMA mappings is obsoleted and will be "
                                 "removed in future")
        return self.state
