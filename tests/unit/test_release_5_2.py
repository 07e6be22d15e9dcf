"""QEMU 5.2's rules as cpuhot's Release holds them; every expectation is a recorded 5.2 reply or
stderr line (tests/conformance/transcripts/qemu-5.2/, named per case), 7.2's defaults unchanged."""

import pytest

from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.machine.errors import ConfigError
from cpuhot.machine.release import RELEASES, Release, get_release
from cpuhot.machine.smp import SmpRules, smp_topology

PC52 = SmpRules(machine_name="pc-i440fx-5.2", max_cpus=255, dies_supported=True)
PSERIES52 = SmpRules(machine_name="pseries-5.2", max_cpus=1024, dies_supported=False)


def topo(text, rules=PC52):
    t, warnings = smp_topology(text, rules, "smp_parse")
    assert warnings == []
    return (t.cpus, t.sockets, t.dies, t.cores, t.threads, t.max_cpus)


def test_7_2_is_the_default_of_every_field():
    fresh = Release("x", (1, 2, 3))
    seven = get_release("7.2")
    for name in Release.__dataclass_fields__:
        if name not in ("name", "version"):
            assert getattr(fresh, name) == getattr(seven, name), name
    assert seven.reword("Parameter 'core-id' expects integer") == "Parameter 'core-id' expects integer"


@pytest.mark.parametrize("text, want", [
    ("1,maxcpus=4", (1, 4, 1, 1, 1, 4)),              # legacy-query-cpus-pc-sockets: sockets preferred
    ("2,sockets=1,cores=4,maxcpus=4", (2, 1, 1, 4, 1, 4)),
    ("0", (1, 1, 1, 1, 1, 1)),                        # smp-pc-0: 0 is "not given", no warning in 5.2
    (None, (1, 1, 1, 1, 1, 1)),
])
def test_smp_parse_derivation(text, want):
    assert topo(text) == want


@pytest.mark.parametrize("text, rules, message", [
    ("2,sockets=2,cores=2,maxcpus=8", PC52,             # smp-pc-sockets2-cores2-maxcpus8
     "Invalid CPU topology deprecated: sockets (2) * dies (1) * cores (2) * threads (1) != maxcpus (8)"),
    ("2,maxcpus=1", PC52, "maxcpus must be equal to or greater than smp"),        # smp-refuse-maxcpus-lt-cpus
    ("4,sockets=2,cores=3,maxcpus=4", PSERIES52,                                  # smp-refuse-product-pseries
     "Invalid CPU topology: sockets (2) * cores (3) * threads (1) != maxcpus (4)"),
    ("-1", PC52, "Invalid SMP CPUs -1. The max CPUs supported by machine 'pc-i440fx-5.2' is 255"),
])
def test_smp_parse_refusals(text, rules, message):
    with pytest.raises(ConfigError) as e:
        smp_topology(text, rules, "smp_parse")
    assert e.value.message == message


@pytest.mark.parametrize("text, location_message", [
    ("2,foo=1", "-smp 2,foo=1: Invalid parameter 'foo'"),                 # smp-refuse-foo
    ("2,clusters=2", "-smp 2,clusters=2: Invalid parameter 'clusters'"),  # smp-refuse-clusters-pc
    ("two", "-smp two: Parameter 'cpus' expects a number"),               # smp-refuse-two
])
def test_smp_parse_option_errors_carry_the_option(text, location_message):
    with pytest.raises(ConfigError) as e:
        smp_topology(text, PC52, "smp_parse")
    assert f"{e.value.location}: {e.value.message}" == location_message


def test_5_2_model_through_build_machine():
    vm = build_machine(LaunchOptions(release="5.2", smp="2,sockets=1,cores=4,maxcpus=4", start_paused=True)).vm
    assert vm.machine.name == "pc-i440fx-5.2"
    fast = vm.query_cpus_fast()
    assert [list(c)[0] for c in fast] == ["arch", "arch"] and {c["arch"] for c in fast} == {"x86"}
    cpus = vm.query_cpus()                        # legacy-query-cpus-pc
    assert [(c["CPU"], c["current"], c["halted"]) for c in cpus] == [(0, True, False), (1, False, True)]
    assert list(cpus[0]) == ["arch", "current", "props", "CPU", "qom_path", "pc", "halted", "thread_id"]
    assert "arch" not in build_machine(LaunchOptions(smp="2")).vm.query_cpus_fast()[0]


def test_5_2_texts_and_tables():
    r = RELEASES["5.2"]
    assert r.reword("Duplicate device ID 'nic'") == "Duplicate ID 'nic' for device"      # x86-pc-add-duplicate-id
    assert r.reword("Parameter 'core-id' expects integer") == "Parameter 'core-id' expects int64"
    with pytest.raises(ConfigError) as e:                                                # machine-refuse-unknown
        build_machine(LaunchOptions(release="5.2", machine="nosuch"))
    assert e.value.location == "-machine nosuch"
    with pytest.raises(ConfigError):                                                     # machines-pc-alias
        build_machine(LaunchOptions(release="5.2", machine="pc-i440fx-7.2"))
