"""``-smp`` of s390x as QEMU 5.2 and 10.0 parse and derive it (7.2's rules, and 5.2's
``smp_parse`` shared with the other boards, are :mod:`cpuhot.machine.smp`).

* 5.2: ``smp_parse`` of hw/core/machine.c (every board but pc, which has its own): QemuOpts
  (``Invalid parameter 'X'``, ``Parameter 'X' expects a number``, with the option as location),
  "prefer sockets", ``dies`` accepted and ignored, zeros taken as "not given", and its own texts
  (``maxcpus must be equal to or greater than smp``, ``Invalid CPU topology: sockets (S) * cores (C)
  * threads (T) != maxcpus (M)``).
* 10.0: ``machine_parse_smp_config`` with ``drawers`` and ``books`` (s390x) and ``modules``; a zero
  is refused (``CPU topology parameters must be greater than zero``); an unsupported level > 1 says
  ``X > 1 not supported by this machine's CPU topology``.

Recorded: tests/conformance/transcripts/qemu-{5.2,10.0}/s390x-smp-*.json.
"""

from __future__ import annotations

from .errors import ConfigError
from .options import OptionError, parse_int, parse_option_string
from .qdev import qdict_order
from .smp import SmpRules, _signed32, derive_topology, parse_smp
from .topology import CpuTopology

_U32 = 0xFFFFFFFF
KEYS_10_0 = ("cpus", "drawers", "books", "sockets", "dies", "clusters", "modules", "cores", "threads", "maxcpus")


def derive(text: str | None, rules: SmpRules, smp_rules: str) -> tuple[CpuTopology, list[str]]:
    """The topology ``-smp text`` gives under the release's rules (``Release.smp_rules``)."""
    if smp_rules == "5.2":
        from .smp import derive_topology_smp_parse
        return derive_topology_smp_parse(text, rules)
    if smp_rules == "10.0":
        return _derive_10_0(text, rules)
    return derive_topology(parse_smp(text), rules)


def _limits(cpus: int, maxcpus: int, rules: SmpRules) -> None:
    if cpus < rules.min_cpus:
        raise ConfigError(f"Invalid SMP CPUs {_signed32(cpus)}. The min CPUs supported by machine "
                          f"'{rules.machine_name}' is {rules.min_cpus}")
    if maxcpus > rules.max_cpus:
        raise ConfigError(f"Invalid SMP CPUs {_signed32(maxcpus)}. The max CPUs supported by machine "
                          f"'{rules.machine_name}' is {rules.max_cpus}")



def _derive_10_0(text: str | None, rules: SmpRules) -> tuple[CpuTopology, list[str]]:
    given: dict[str, int] = {}
    if text is not None:
        try:
            pairs = parse_option_string(text, implied="cpus")
        except OptionError as e:
            raise ConfigError(str(e)) from None
        raw = dict(pairs)
        for key in KEYS_10_0:
            if key in raw:
                try:
                    given[key] = parse_int(raw[key])
                except ValueError:
                    raise ConfigError(f"Parameter 'smp.{key}' expects integer") from None
        for key in qdict_order(raw):
            if key not in KEYS_10_0:
                raise ConfigError(f"Parameter 'smp.{key}' is unexpected")
    if any(val == 0 for val in given.values()):
        raise ConfigError("Invalid CPU topology: CPU topology parameters must be greater than zero")
    g = {k: given.get(k, 0) & _U32 for k in KEYS_10_0}
    supported = {"modules": False, "clusters": rules.clusters_supported, "dies": rules.dies_supported,
                 "books": rules.books_supported, "drawers": rules.drawers_supported}
    for level in ("modules", "clusters", "dies", "books", "drawers"):
        if not supported[level] and g[level] > 1:
            raise ConfigError(f"{level} > 1 not supported by this machine's CPU topology")
        g[level] = g[level] or 1
    cpus, maxcpus = g["cpus"], g["maxcpus"]
    drawers, books, dies, clusters, modules = g["drawers"], g["books"], g["dies"], g["clusters"], g["modules"]
    sockets, cores, threads = g["sockets"], g["cores"], g["threads"]

    def div(a: int, b: int) -> int:
        b &= _U32
        return a // b if b else 0

    above = drawers * books * dies * clusters * modules
    if cpus == 0 and maxcpus == 0:
        sockets, cores, threads = sockets or 1, cores or 1, threads or 1
    else:
        maxcpus = maxcpus or cpus
        if rules.prefer_sockets:
            if sockets == 0:
                cores, threads = cores or 1, threads or 1
                sockets = div(maxcpus, above * cores * threads)
            elif cores == 0:
                threads = threads or 1
                cores = div(maxcpus, above * sockets * threads)
        else:
            if cores == 0:
                sockets, threads = sockets or 1, threads or 1
                cores = div(maxcpus, above * sockets * threads)
            elif sockets == 0:
                threads = threads or 1
                sockets = div(maxcpus, above * cores * threads)
        if threads == 0:
            threads = div(maxcpus, above * sockets * cores)
    total = (above * sockets * cores * threads) & _U32
    maxcpus = maxcpus or total
    cpus = cpus or maxcpus

    def hierarchy() -> str:
        parts = []
        if rules.drawers_supported:
            parts.append(f"drawers ({drawers})")
        if rules.books_supported:
            parts.append(f"books ({books})")
        parts.append(f"sockets ({sockets})")
        if rules.dies_supported:
            parts.append(f"dies ({dies})")
        if rules.clusters_supported:
            parts.append(f"clusters ({clusters})")
        parts += [f"cores ({cores})", f"threads ({threads})"]
        return " * ".join(parts)

    if total != maxcpus:
        raise ConfigError("Invalid CPU topology: product of the hierarchy must match maxcpus: "
                          f"{hierarchy()} != maxcpus ({maxcpus})")
    if maxcpus < cpus:
        raise ConfigError("Invalid CPU topology: maxcpus must be equal to or greater than smp: "
                          f"{hierarchy()} == maxcpus ({maxcpus}) < smp_cpus ({cpus})")
    _limits(cpus, maxcpus, rules)
    return CpuTopology(cpus=cpus, sockets=sockets, dies=dies, clusters=clusters, cores=cores, threads=threads,
                       max_cpus=maxcpus, books=books, drawers=drawers), []
