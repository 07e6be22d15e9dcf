"""s390x policy: expectations written from the recorded QEMU transcripts (slots, ids, texts) and,
where QEMU cannot show it here, from QEMU's documentation and history (marked so)."""

import pytest

from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.machine.errors import ConfigError
from cpuhot.qmp.framing import Parsed
from cpuhot.qmp.protocol import Monitor

from .helpers import error_of, make_vm

S390 = "s390-ccw-virtio"


def monitor(profile="cpuhot", **kw):
    kw.setdefault("arch", "s390x")
    kw.setdefault("machine", S390)
    mon = Monitor(build_machine(LaunchOptions(**kw)).vm, profile, validate_returns=True)
    s = mon.open_session()
    mon.handle(s, Parsed({"execute": "qmp_capabilities"}))
    return mon, s


def call(mon, s, name, args=None):
    msg = {"execute": name, **({"arguments": args} if args else {})}
    return mon.handle(s, Parsed(msg))


def test_one_slot_per_core_and_cpu_index_is_the_core_id():
    vm = make_vm(arch="s390x", machine=S390, smp="2,maxcpus=4")
    assert [e["props"] for e in vm.query_hotpluggable_cpus()] == [{"core-id": i} for i in (3, 2, 1, 0)]
    vm.device_add({"driver": "qemu-s390x-cpu", "core-id": 3, "id": "c3"})
    cpus = vm.query_cpus_fast()
    assert [(c["cpu-index"], c["qom-path"], c["cpu-state"]) for c in cpus] == [
        (0, "/machine/unattached/device[0]", "operating"), (1, "/machine/unattached/device[1]", "stopped"),
        (3, "/machine/peripheral/c3", "stopped")]
    assert error_of(vm.device_add, {"driver": "qemu-s390x-cpu", "core-id": 3}) == (
        "GenericError", "Unable to add CPU with core-id: 3, it already exists")
    assert error_of(vm.device_add, {"driver": "qemu-s390x-cpu", "core-id": 4}) == (
        "GenericError", "Unable to add CPU with core-id: 4, maximum core-id: 3")
    assert error_of(vm.device_del, "c3") == ("GenericError", "CPU hot unplug not supported on this machine")


def test_10_0_topology_ids_follow_drawers_books_sockets():
    # recorded (s390x-smp-d2b2s2 of 10.0): core 7 of -smp 1,drawers=2,books=2,sockets=2,maxcpus=8
    vm = make_vm(arch="s390x", machine=S390, smp="1,drawers=2,books=2,sockets=2,maxcpus=8", release="10.0")
    props = {e["props"]["core-id"]: e["props"] for e in vm.query_hotpluggable_cpus()}
    assert props[7] == {"core-id": 7, "socket-id": 1, "drawer-id": 1, "book-id": 1}
    assert props[6] == {"core-id": 6, "socket-id": 0, "drawer-id": 1, "book-id": 1}
    assert props[2] == {"core-id": 2, "socket-id": 0, "drawer-id": 0, "book-id": 1}


@pytest.mark.parametrize(("release", "smp", "message"), [
    ("7.2", "1,books=2", "Parameter 'smp.books' is unexpected"),
    ("5.2", "1,books=2", "Invalid parameter 'books'"),
    ("10.0", "1,books=2", "Invalid CPU topology: product of the hierarchy must match maxcpus: drawers (1) * books (2) "
                          "* sockets (1) * cores (0) * threads (1) != maxcpus (1)"),
    ("7.2", "2,threads=2", "S390 does not support more than 1 threads."),
    ("5.2", "2,sockets=2,maxcpus=8", "Invalid CPU topology: sockets (2) * cores (1) * threads (1) != maxcpus (8)"),
    ("10.0", "0", "Invalid CPU topology: CPU topology parameters must be greater than zero"),
])
def test_smp_refusals_per_release(release, smp, message):
    with pytest.raises(ConfigError) as e:
        build_machine(LaunchOptions(arch="s390x", machine=S390, smp=smp, release=release))
    assert e.value.message == message


def test_5_2_takes_threads_and_dies_that_7_2_refuses():
    vm = make_vm(arch="s390x", machine=S390, smp="4,threads=2,maxcpus=8", release="5.2")
    assert len(vm.query_hotpluggable_cpus()) == 8
    assert vm.query_cpus_fast()[0]["arch"] == "s390"


def test_numa_is_refused():
    with pytest.raises(ConfigError) as e:
        build_machine(LaunchOptions(arch="s390x", machine=S390, smp="2", numa=["node"]))
    assert (e.value.location, e.value.message) == ("-numa node", "NUMA is not supported by this machine-type")


def test_legacy_cpu_add_in_the_5_1_profile():
    """Inferred from QEMU <= 5.1's s390_hot_add_cpu: core-id = id, an unattached CPU, realize's checks."""
    mon, s = monitor("qemu-5.1", smp="1,maxcpus=4", start_paused=True)
    assert call(mon, s, "cpu-add", {"id": 2})[-1][1] == {"return": {}}
    cpus = call(mon, s, "query-cpus")[-1][1]["return"]
    assert [(c["CPU"], c["qom_path"], c["arch"], c["cpu-state"]) for c in cpus] == [
        (0, "/machine/unattached/device[0]", "s390", "operating"), (2, "/machine/unattached/device[1]", "s390", "stopped")]
    assert call(mon, s, "cpu-add", {"id": 2})[-1][1]["error"]["desc"] == \
        "Unable to add CPU with core-id: 2, it already exists"
    assert call(mon, s, "cpu-add", {"id": -1})[-1][1]["error"]["desc"] == \
        "Unable to add CPU with core-id: 4294967295, maximum core-id: 3"


def test_cont_without_guest_code_is_a_disabled_wait_panic():
    """Recorded (s390x-run-no-shutdown, s390x-run-exit): RESUME, then GUEST_PANICKED disabled-wait."""
    for no_shutdown, names, state in ((True, ["RESUME", "GUEST_PANICKED", "STOP"], "guest-panicked"),
                                      (False, ["RESUME", "GUEST_PANICKED", "SHUTDOWN"], "shutdown")):
        vm = build_machine(LaunchOptions(arch="s390x", machine=S390, smp="1", guest="none", clock="virtual",
                                         start_paused=True, no_shutdown=no_shutdown)).vm
        vm.cont()
        vm.clock_step(0.01)
        events = vm.drain_events()
        assert [e.name for e in events] == names and vm.runstate == state
        assert events[1].data["info"]["reason"] == "disabled-wait"
        assert vm.powered_off is (not no_shutdown)


def test_kvm_topology_commands_only_with_simulated_kvm_on_10_0():
    """Documented (docs/devel/s390-cpu-topology.rst), not observable under TCG."""
    mon, s = monitor(smp="1,sockets=2,cores=2,maxcpus=4", release="10.0", accel="tcg")
    assert call(mon, s, "query-s390x-cpu-polarization")[-1][1]["error"]["class"] == "CommandNotFound"
    mon, s = monitor(smp="1,sockets=2,cores=2,maxcpus=4", release="10.0", force_kvm=True)
    assert call(mon, s, "query-s390x-cpu-polarization")[-1][1] == {"return": {"polarization": "horizontal"}}
    assert call(mon, s, "device_add", {"driver": "qemu-s390x-cpu", "core-id": 3, "id": "a"})[-1][1] == {"return": {}}
    def get(p):
        return call(mon, s, "qom-get", {"path": "/machine/peripheral/a", "property": p})[-1][1]["return"]
    assert (get("socket-id"), get("entitlement"), get("dedicated")) == (1, "medium", False)
    assert call(mon, s, "set-cpu-topology", {"core-id": 3, "socket-id": 0, "entitlement": "high"})[-1][1] == \
        {"return": {}}
    assert (get("socket-id"), get("entitlement")) == (0, "high")
    assert call(mon, s, "set-cpu-topology", {"core-id": 3, "socket-id": 5})[-1][1]["error"]["desc"] == \
        "socket-id 5 too big"
    assert call(mon, s, "set-cpu-topology", {"core-id": 2})[-1][1]["error"]["desc"] == "Core-id 2 does not exist!"
    assert call(mon, s, "set-cpu-topology", {"core-id": 3, "dedicated": True, "entitlement": "low"})[-1][1][
        "error"]["desc"] == "A dedicated CPU implies a vertical high entitlement"
    assert call(mon, s, "device_add", {"driver": "qemu-s390x-cpu", "core-id": 2, "socket-id": 1})[-1][1][
        "error"]["desc"] == "Please define all or none of the topology geometry attributes"
    out = call(mon, s, "x-cpuhot-s390x-polarize", {"polarization": "vertical"})
    assert [m.get("event") for _, m in out] == ["CPU_POLARIZATION_CHANGE", None]
    assert out[0][1]["data"] == {"polarization": "vertical"}


def test_a_simulated_guest_starts_the_cpus_it_onlines():
    """Inferred (no guest runs under QEMU here): a guest SIGP-starts each vCPU it brings online, so
    with cpuhot's cooperative guest a hot-plugged CPU goes from stopped to operating."""
    vm = build_machine(LaunchOptions(arch="s390x", machine=S390, smp="1,maxcpus=2", guest="auto",
                                     clock="virtual", start_paused=True)).vm
    vm.cont()
    vm.guest.set_onlining("delayed:5")        # udev (the default) would online it at once
    vm.device_add({"driver": "qemu-s390x-cpu", "core-id": 1, "id": "c1"})
    assert [c["cpu-state"] for c in vm.query_cpus_fast()] == ["operating", "stopped"]
    vm.clock_step(30)
    assert [c["cpu-state"] for c in vm.query_cpus_fast()] == ["operating", "operating"]
    assert vm.runstate == "running"                    # a guest runs: no disabled wait


def test_state_file_keeps_s390x_cpus_and_their_topology(tmp_path):
    from cpuhot.machine.state import restore, snapshot
    opts = LaunchOptions(arch="s390x", machine=S390, smp="1,sockets=2,cores=2,maxcpus=4", release="10.0",
                         start_paused=True)
    vm = build_machine(opts).vm
    vm.device_add({"driver": "qemu-s390x-cpu", "core-id": 3, "id": "a", "socket-id": 1, "book-id": 0,
                   "drawer-id": 0, "entitlement": "high"})
    _, built = restore(snapshot(vm, opts))
    again = built.vm
    assert again.query_cpus_fast() == vm.query_cpus_fast()
    assert again.qom_get("/machine/peripheral/a", "entitlement") == "high"
    assert again.qom_get("/machine/peripheral/a", "socket-id") == 1
