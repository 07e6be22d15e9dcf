"""-smp parsing and QEMU 7.2's derivation rules (expectations checked on real 7.2)."""

import pytest
from hypothesis import assume, given, strategies as st

from cpuhot.machine.errors import ConfigError
from cpuhot.machine.smp import SmpRules, ZERO_WARNING, derive_topology, parse_smp

PC = SmpRules("pc-i440fx-7.2", 255, dies_supported=True)
Q35 = SmpRules("pc-q35-7.2", 288, dies_supported=True)
PSERIES = SmpRules("pseries-7.2", 4096, dies_supported=False)
OLD_PC = SmpRules("pc-i440fx-2.6", 255, dies_supported=True, prefer_sockets=True)


def topo(text, rules=PC):
    t, _ = derive_topology(parse_smp(text), rules)
    return (t.cpus, t.sockets, t.dies, t.cores, t.threads, t.max_cpus)


@pytest.mark.parametrize("text, expected", [
    (None, (1, 1, 1, 1, 1, 1)),
    ("3", (3, 1, 1, 3, 1, 3)),
    ("2,maxcpus=6", (2, 1, 1, 6, 1, 6)),
    ("sockets=2", (2, 2, 1, 1, 1, 2)),
    ("cores=2,threads=2", (4, 1, 1, 2, 2, 4)),
    ("2,maxcpus=9,cores=3", (2, 3, 1, 3, 1, 9)),
    ("4,maxcpus=8,threads=2", (4, 1, 1, 4, 2, 8)),
    ("6,sockets=2,threads=3", (6, 2, 1, 1, 3, 6)),
    ("", (1, 1, 1, 1, 1, 1)),
    ("0", (1, 1, 1, 1, 1, 1)),
    ("0,maxcpus=0", (1, 1, 1, 1, 1, 1)),
    ("4,maxcpus=16", (4, 1, 1, 16, 1, 16)),
    ("8,sockets=2,dies=2,cores=2,threads=1", (8, 2, 2, 2, 1, 8)),
])
def test_derivation_prefers_cores(text, expected):
    assert topo(text) == expected


def test_old_machines_prefer_sockets():
    assert topo("2,maxcpus=6", OLD_PC) == (2, 6, 1, 1, 1, 6)


def test_zero_parameter_warns_and_counts_as_omitted():
    t, warnings = derive_topology(parse_smp("4,sockets=0"), PC)
    assert warnings == [f"warning: {ZERO_WARNING}"] and t.sockets == 1 and t.cores == 4


@pytest.mark.parametrize("text, rules, message", [
    ("4,sockets=2,cores=2,threads=2", PC,
     "Invalid CPU topology: product of the hierarchy must match maxcpus: "
     "sockets (2) * dies (1) * cores (2) * threads (2) != maxcpus (4)"),
    ("4,sockets=2,cores=2,threads=2", PSERIES,
     "Invalid CPU topology: product of the hierarchy must match maxcpus: "
     "sockets (2) * cores (2) * threads (2) != maxcpus (4)"),
    ("2,maxcpus=1", PC,
     "Invalid CPU topology: maxcpus must be equal to or greater than smp: "
     "sockets (1) * dies (1) * cores (1) * threads (1) == maxcpus (1) < smp_cpus (2)"),
    ("256", PC, "Invalid SMP CPUs 256. The max CPUs supported by machine 'pc-i440fx-7.2' is 255"),
    ("289", Q35, "Invalid SMP CPUs 289. The max CPUs supported by machine 'pc-q35-7.2' is 288"),
    ("4097", PSERIES, "Invalid SMP CPUs 4097. The max CPUs supported by machine 'pseries-7.2' is 4096"),
    ("-1", PC, "Invalid SMP CPUs -1. The max CPUs supported by machine 'pc-i440fx-7.2' is 255"),
    ("2,clusters=2", PC, "clusters not supported by this machine's CPU topology"),
    ("2,dies=2", PSERIES, "dies not supported by this machine's CPU topology"),
    ("2,books=2", PC, "Parameter 'smp.books' is unexpected"),
    ("2,foo=1", PC, "Parameter 'smp.foo' is unexpected"),
    ("two", PC, "Parameter 'smp.cpus' expects integer"),
])
def test_refusals(text, rules, message):
    with pytest.raises(ConfigError) as e:
        derive_topology(parse_smp(text), rules)
    assert e.value.message == message


def test_integers_take_c_prefixes():
    assert topo("0x4,maxcpus=010") == (4, 1, 1, 8, 1, 8)


@given(sockets=st.integers(1, 4), dies=st.integers(1, 3), cores=st.integers(1, 6), threads=st.integers(1, 4),
       data=st.data())
def test_explicit_topology_always_multiplies_out(sockets, dies, cores, threads, data):
    maxcpus = sockets * dies * cores * threads
    assume(maxcpus <= PC.max_cpus)
    cpus = data.draw(st.integers(1, maxcpus))
    t, warnings = derive_topology(
        parse_smp(f"{cpus},maxcpus={maxcpus},sockets={sockets},dies={dies},cores={cores},threads={threads}"), PC)
    assert (t.sockets, t.dies, t.cores, t.threads, t.max_cpus, t.cpus) == (sockets, dies, cores, threads,
                                                                            maxcpus, cpus)
    assert warnings == []


@given(cpus=st.integers(1, 255), extra=st.integers(0, 255))
def test_any_derived_topology_is_consistent(cpus, extra):
    maxcpus = min(255, cpus + extra)
    t, _ = derive_topology(parse_smp(f"{cpus},maxcpus={maxcpus}"), PC)
    assert t.sockets * t.dies * t.cores * t.threads == t.max_cpus == maxcpus
    assert t.cpus == cpus
