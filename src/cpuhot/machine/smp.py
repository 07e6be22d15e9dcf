"""``-smp`` parsing and the CPU-topology derivation rules of QEMU 7.2.

The option string is split the way QEMU's option parser splits it
(``cpus`` is the implied first key), each value is an integer as QEMU's
keyval visitor reads it (base prefixes allowed, int64 range), and the
missing members are derived by ``machine_parse_smp_config``'s rules:
"prefer cores" from machine version 6.2 on, "prefer sockets" before.
QEMU holds the derived values in ``unsigned int``; so does this module
(masked to 32 bits), which is why ``-smp -1`` reports ``Invalid SMP CPUs -1``.

>>> topo, warnings = derive_topology(parse_smp("4,maxcpus=8,threads=2"), SmpRules())
>>> (topo.sockets, topo.cores, topo.threads, topo.max_cpus, topo.cpus)
(1, 4, 2, 8, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError
from .options import OptionError, parse_int, parse_option_string
from .qdev import qdict_order
from .topology import CpuTopology

SMP_KEYS = ("cpus", "sockets", "dies", "clusters", "cores", "threads", "maxcpus")
_U32 = 0xFFFFFFFF

ZERO_WARNING = (
    "Deprecated CPU topology (considered invalid): "
    "CPU topology parameters must be greater than zero"
)


@dataclass(frozen=True)
class SmpConfig:
    """What the user asked for: ``None`` for a member that was not given."""

    cpus: int | None = None
    sockets: int | None = None
    dies: int | None = None
    clusters: int | None = None
    cores: int | None = None
    threads: int | None = None
    maxcpus: int | None = None
    # QEMU 9.0+ (Release.smp_extra_keys); appended so positional use stays as it was
    drawers: int | None = None
    books: int | None = None
    modules: int | None = None


@dataclass(frozen=True)
class SmpRules:
    """The machine-class facts the derivation depends on."""

    machine_name: str = "pc-i440fx-7.2"
    max_cpus: int = 255
    min_cpus: int = 0
    dies_supported: bool = True
    clusters_supported: bool = False
    prefer_sockets: bool = False
    #: QEMU 10.0's s390x levels
    books_supported: bool = False
    drawers_supported: bool = False
    #: the release's rules (:class:`cpuhot.machine.release.Release`); 7.2's by default
    zero_is_error: bool = False
    unsupported_text: str = "{level} not supported by this machine's CPU topology"
    modules_supported: bool = False


def parse_smp(text: str | None, extra_keys: tuple[str, ...] = ()) -> SmpConfig:
    """Parse an ``-smp`` argument (``None`` when the option is absent).

    >>> parse_smp("2,maxcpus=6")
    SmpConfig(cpus=2, sockets=None, dies=None, clusters=None, cores=None, threads=None, maxcpus=6, drawers=None, books=None, modules=None)
    """
    if text is None:
        return SmpConfig()
    try:
        pairs = parse_option_string(text, implied="cpus")
    except OptionError as e:
        raise ConfigError(str(e)) from None
    values: dict[str, int] = {}
    given = dict(pairs)
    known = (*SMP_KEYS, *extra_keys)
    # the visitor reads the members in SMPConfiguration's order, then complains about the first
    # key left over in QDict order
    for key in known:
        if key in given:
            try:
                values[key] = parse_int(given[key])
            except ValueError:
                raise ConfigError(f"Parameter 'smp.{key}' expects integer") from None
    for key in qdict_order(given):
        if key not in known:
            raise ConfigError(f"Parameter 'smp.{key}' is unexpected")
    return SmpConfig(**values)


def _signed32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


def derive_topology(cfg: SmpConfig, rules: SmpRules) -> tuple[CpuTopology, list[str]]:
    """Apply QEMU 7.2's ``machine_parse_smp_config``; return the topology and warnings."""
    warnings: list[str] = []
    given = [getattr(cfg, k) for k in (*SMP_KEYS, "drawers", "books", "modules")]
    if any(v is not None and v == 0 for v in given):
        if rules.zero_is_error:
            raise ConfigError("Invalid CPU topology: CPU topology parameters must be greater than zero")
        warnings.append(f"warning: {ZERO_WARNING}")

    def u(v: int | None) -> int:
        return 0 if v is None else v & _U32

    cpus, sockets, dies, clusters = u(cfg.cpus), u(cfg.sockets), u(cfg.dies), u(cfg.clusters)
    cores, threads, maxcpus = u(cfg.cores), u(cfg.threads), u(cfg.maxcpus)

    for level in ("drawers", "books"):     # no machine cpuhot simulates has them (s390x does)
        if u(getattr(cfg, level)) > 1:
            raise ConfigError(rules.unsupported_text.format(level=level))
    if not rules.dies_supported and dies > 1:
        raise ConfigError(rules.unsupported_text.format(level="dies"))
    if not rules.clusters_supported and clusters > 1:
        raise ConfigError(rules.unsupported_text.format(level="clusters"))
    modules = u(cfg.modules)
    if not rules.modules_supported and modules > 1:
        raise ConfigError(rules.unsupported_text.format(level="modules"))
    dies = dies or 1
    clusters = clusters or 1
    modules = modules or 1
    # the levels between socket and core (QEMU 9.1+ counts x86 modules among them)
    inner = (dies * clusters * modules) & _U32

    if cpus == 0 and maxcpus == 0:
        sockets = sockets or 1
        cores = cores or 1
        threads = threads or 1
    else:
        maxcpus = maxcpus or cpus
        if rules.prefer_sockets:
            if sockets == 0:
                cores = cores or 1
                threads = threads or 1
                sockets = maxcpus // ((inner * cores * threads) & _U32 or 1)
            elif cores == 0:
                threads = threads or 1
                cores = maxcpus // ((sockets * inner * threads) & _U32 or 1)
        else:
            if cores == 0:
                sockets = sockets or 1
                threads = threads or 1
                cores = maxcpus // ((sockets * inner * threads) & _U32 or 1)
            elif sockets == 0:
                threads = threads or 1
                sockets = maxcpus // ((inner * cores * threads) & _U32 or 1)
        if threads == 0:
            threads = maxcpus // ((sockets * inner * cores) & _U32 or 1)

    product = (sockets * inner * cores * threads) & _U32
    maxcpus = maxcpus or product
    cpus = cpus or maxcpus

    def hierarchy() -> str:
        dies_part = f" * dies ({dies})" if rules.dies_supported else ""
        clusters_part = f" * clusters ({clusters})" if rules.clusters_supported else ""
        modules_part = f" * modules ({modules})" if rules.modules_supported else ""
        return f"sockets ({sockets}){dies_part}{clusters_part}{modules_part} * cores ({cores}) * threads ({threads})"

    if product != maxcpus:
        raise ConfigError(
            "Invalid CPU topology: product of the hierarchy must match maxcpus: "
            f"{hierarchy()} != maxcpus ({maxcpus})"
        )
    if maxcpus < cpus:
        raise ConfigError(
            "Invalid CPU topology: maxcpus must be equal to or greater than smp: "
            f"{hierarchy()} == maxcpus ({maxcpus}) < smp_cpus ({cpus})"
        )
    if cpus < rules.min_cpus:
        raise ConfigError(
            f"Invalid SMP CPUs {_signed32(cpus)}. The min CPUs supported by machine "
            f"'{rules.machine_name}' is {rules.min_cpus}"
        )
    if maxcpus > rules.max_cpus:
        raise ConfigError(
            f"Invalid SMP CPUs {_signed32(maxcpus)}. The max CPUs supported by machine "
            f"'{rules.machine_name}' is {rules.max_cpus}"
        )
    topo = CpuTopology(
        cpus=cpus, sockets=sockets, dies=dies, clusters=clusters, cores=cores,
        threads=threads, max_cpus=maxcpus, modules=modules,
    )
    return topo, warnings


# --------------------------------------------------------------------------- QEMU <= 6.0: smp_parse

#: the ``-smp`` keys QEMU 5.2's ``qemu_smp_opts`` knows (no ``clusters``: 7.0)
SMP_KEYS_5_2 = ("cpus", "sockets", "dies", "cores", "threads", "maxcpus")


def derive_topology_smp_parse(text: str | None, rules: SmpRules) -> tuple[CpuTopology, list[str]]:
    """QEMU 5.2's ``-smp``: QemuOpts parsing, then ``pc_smp_parse`` (x86, with dies) or the generic
    ``smp_parse`` (pseries, none).  Recorded from the real 5.2: every machine prefers sockets
    (``-smp 1,maxcpus=4`` is 4 sockets of 1 core), missing cores/threads are derived from ``cpus``
    (not ``maxcpus``), and the messages are 5.2's ("Invalid CPU topology deprecated: ..." on x86)."""
    if text is None:            # no -smp: the machine's defaults (1 CPU)
        return CpuTopology(cpus=1, sockets=1, dies=1, clusters=1, cores=1, threads=1, max_cpus=1), []
    location = f"-smp {text}"
    try:
        pairs = parse_option_string(text, implied="cpus")
    except OptionError as e:
        raise ConfigError(str(e), location=location) from None
    got: dict[str, int] = {}
    for key, raw in pairs:
        if key not in SMP_KEYS_5_2:
            raise ConfigError(f"Invalid parameter '{key}'", location=location)
        try:                    # qemu_strtou64: a negative number wraps
            got[key] = parse_int(raw, lo=-(1 << 64) + 1, hi=(1 << 64) - 1) & ((1 << 64) - 1)
        except ValueError:
            raise ConfigError(f"Parameter '{key}' expects a number", location=location) from None

    def num(key: str, default: int) -> int:
        return got[key] & _U32 if key in got else default       # read into an unsigned int

    x86 = rules.dies_supported
    cpus, sockets, cores, threads = num("cpus", 0), num("sockets", 0), num("cores", 0), num("threads", 0)
    dies = num("dies", 1) if x86 else 1

    def div(a: int, b: int) -> int:
        return a // (b & _U32) if b & _U32 else 0

    if cpus == 0 or sockets == 0:
        cores = cores or 1
        threads = threads or 1
        if cpus == 0:
            sockets = sockets or 1
            cpus = (cores * threads * dies * sockets) & _U32
        else:
            sockets = div(num("maxcpus", cpus), cores * threads * dies)
    elif cores == 0:
        threads = threads or 1
        cores = div(cpus, sockets * dies * threads) or 1
    elif threads == 0:
        threads = div(cpus, cores * dies * sockets) or 1
    elif (sockets * dies * cores * threads) & _U32 < cpus:
        dies_part = f" * dies ({dies})" if x86 else ""
        raise ConfigError(f"cpu topology: sockets ({sockets}){dies_part} * cores ({cores}) * threads ({threads}) "
                          f"< smp_cpus ({cpus})")
    max_cpus = num("maxcpus", cpus)
    if max_cpus < cpus:
        raise ConfigError("maxcpus must be equal to or greater than smp")
    if (sockets * dies * cores * threads) & _U32 != max_cpus:
        if x86:
            raise ConfigError(f"Invalid CPU topology deprecated: sockets ({sockets}) * dies ({dies}) * "
                              f"cores ({cores}) * threads ({threads}) != maxcpus ({max_cpus})")
        raise ConfigError(f"Invalid CPU topology: sockets ({sockets}) * cores ({cores}) * threads ({threads}) "
                          f"!= maxcpus ({max_cpus})")
    if max_cpus > rules.max_cpus:           # vl.c, after smp_parse
        raise ConfigError(f"Invalid SMP CPUs {_signed32(max_cpus)}. The max CPUs supported by machine "
                          f"'{rules.machine_name}' is {rules.max_cpus}")
    if cpus < rules.min_cpus:
        raise ConfigError(f"Invalid SMP CPUs {_signed32(cpus)}. The min CPUs supported by machine "
                          f"'{rules.machine_name}' is {rules.min_cpus}")
    return CpuTopology(cpus=cpus, sockets=sockets, dies=dies, clusters=1, cores=cores, threads=threads,
                       max_cpus=max_cpus), []


#: ``Release.smp_parser`` -> the function that turns ``-smp`` text into a topology
SMP_PARSERS: dict[str, Callable[[str | None, SmpRules, tuple[str, ...]], tuple[CpuTopology, list[str]]]] = {
    "machine_parse_smp_config": lambda text, rules, extra_keys: derive_topology(parse_smp(text, extra_keys), rules),
    "smp_parse": lambda text, rules, extra_keys: derive_topology_smp_parse(text, rules),
}


def smp_topology(text: str | None, rules: SmpRules, parser: str = "machine_parse_smp_config",
                 extra_keys: tuple[str, ...] = ()) -> tuple[CpuTopology, list[str]]:
    """``-smp`` of the QEMU release whose ``smp_parser`` is ``parser`` (and whose grammar has
    ``extra_keys`` beyond 7.2's): (topology, warnings)."""
    return SMP_PARSERS[parser](text, rules, extra_keys)
