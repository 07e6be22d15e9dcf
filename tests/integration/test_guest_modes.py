"""The guest modes over a real socket, the way libvirt drives unplug: device_del, then wait for
DEVICE_DELETED (5 s on x86, 10 s on pseries) — on a virtual clock, so nothing sleeps."""

import pytest

from .qmpsync import QMPError, SyncQMP

X86 = "qemu64-x86_64-cpu"
CORE = "power9_v2.0-spapr-cpu-core"


def step(q, seconds):
    q.cmd("x-cpuhot-clock-step", {"seconds": seconds})


def wait_deleted(q, ident, timeout):
    """libvirt's qemuDomainWaitForDeviceRemoval, in virtual seconds: True if DEVICE_DELETED came."""
    waited = 0.0
    while waited < timeout:
        for e in q.events:
            if e["event"] == "DEVICE_DELETED" and e["data"].get("device") == ident:
                q.events.remove(e)
                return True
        step(q, 0.5)
        waited += 0.5
    return False


def plug_all(q):
    free = [e for e in reversed(q.cmd("query-hotpluggable-cpus")) if "qom-path" not in e]
    count = len(q.cmd("query-cpus-fast"))
    ids = []
    for e in free:
        ident = f"vcpu{count}"
        q.cmd("device_add", {"driver": e["type"], "id": ident, **e["props"]})
        count += e["vcpus-count"]
        ids.append(ident)
    step(q, 1)           # the guest onlines them
    return ids


def test_x86_shrink_8_to_2_cooperative(serve_vm):
    vm = serve_vm("--guest", "cooperative", "--clock", "virtual", "-smp", "2,maxcpus=8")
    q = SyncQMP(vm.path)
    ids = plug_all(q)
    assert len(q.cmd("query-cpus-fast")) == 8
    assert all(c["online"] for c in q.cmd("x-cpuhot-guest-cpus"))
    for ident in reversed(ids):
        q.cmd("device_del", {"id": ident})
        assert wait_deleted(q, ident, 5.0)
    assert len(q.cmd("query-cpus-fast")) == 2
    assert sum("qom-path" in e for e in q.cmd("query-hotpluggable-cpus")) == 2
    osts = [e for e in q.events if e["event"] == "ACPI_DEVICE_OST"]
    assert len(osts) == 12 and {e["data"]["info"]["slot-type"] for e in osts} == {"CPU"}


def test_pseries_smt8_shrink_32_to_8_cooperative(serve_vm):
    vm = serve_vm("--guest", "cooperative", "--clock", "virtual", "-machine", "pseries",
                  "-smp", "8,maxcpus=32,threads=8", "-accel", "kvm")
    q = SyncQMP(vm.path)
    ids = plug_all(q)
    assert len(q.cmd("query-cpus-fast")) == 32
    for ident in reversed(ids):
        q.cmd("device_del", {"id": ident})
        assert wait_deleted(q, ident, 10.0)
    assert [c["cpu-index"] for c in q.cmd("query-cpus-fast")] == list(range(8))
    threads = [e for e in q.events if e["event"] == "DEVICE_DELETED" and "/thread[" in e["data"]["path"]]
    assert len(threads) == 3 * 8 * 3          # icp, xive-tctx and the thread, per vCPU


def test_unresponsive_guest_hits_libvirts_timeout_and_the_cpu_stays(serve_vm):
    vm = serve_vm("--guest", "unresponsive", "--clock", "virtual", "-smp", "2,maxcpus=4")
    q = SyncQMP(vm.path)
    q.cmd("device_add", {"driver": X86, "id": "vcpu2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    q.cmd("device_del", {"id": "vcpu2"})
    assert not wait_deleted(q, "vcpu2", 5.0)
    assert q.cmd("device_del", {"id": "vcpu2"}) == {}          # a repeated request is accepted
    assert any(e.get("qom-path") == "/machine/peripheral/vcpu2" for e in q.cmd("query-hotpluggable-cpus"))
    assert len(q.cmd("query-cpus-fast")) == 3


def test_pseries_unresponsive_waits_past_libvirts_10s(serve_vm):
    vm = serve_vm("--guest", "unresponsive", "--clock", "virtual", "-machine", "pseries", "-smp", "1,maxcpus=4")
    q = SyncQMP(vm.path)
    q.cmd("device_add", {"driver": CORE, "id": "vcpu1", "core-id": 1})
    step(q, 1)
    q.cmd("device_del", {"id": "vcpu1"})
    assert not wait_deleted(q, "vcpu1", 10.0)
    assert len(q.cmd("query-cpus-fast")) == 2


def test_refusing_guests_report_their_error(serve_vm):
    vm = serve_vm("--guest", "refuse", "--clock", "virtual", "-machine", "pseries", "-smp", "1,maxcpus=4")
    q = SyncQMP(vm.path)
    q.cmd("device_add", {"driver": CORE, "id": "vcpu1", "core-id": 1})
    step(q, 1)
    q.cmd("device_del", {"id": "vcpu1"})
    step(q, 1)
    errors = [e for e in q.events if e["event"] == "DEVICE_UNPLUG_GUEST_ERROR"]
    assert errors and errors[0]["data"] == {"device": "vcpu1", "path": "/machine/peripheral/vcpu1"}
    assert len(q.cmd("query-cpus-fast")) == 2

    vm = serve_vm("--guest", "refuse", "--clock", "virtual", "-smp", "1,maxcpus=4")
    q = SyncQMP(vm.path)
    q.cmd("device_add", {"driver": X86, "id": "vcpu1", "socket-id": 0, "core-id": 1, "thread-id": 0})
    q.cmd("device_del", {"id": "vcpu1"})
    step(q, 1)
    statuses = [e["data"]["info"]["status"] for e in q.events if e["event"] == "ACPI_DEVICE_OST"]
    assert statuses == [0x84, 0x82]


def test_guest_mode_changes_at_run_time_and_guest_actions(serve_vm):
    vm = serve_vm("--clock", "virtual", "-S", "-smp", "2,maxcpus=4")
    q = SyncQMP(vm.path)
    assert q.cmd("x-cpuhot-guest-mode") == {"mode": "auto", "effective": "none", "booted": False}
    q.cmd("device_add", {"driver": X86, "id": "vcpu2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    with pytest.raises(QMPError) as e:
        q.cmd("device_del", {"id": "vcpu2"})
    assert e.value.desc.startswith("acpi: device unplug request for not supported device type")
    q.cmd("cont")                                            # a guest boots
    assert q.cmd("x-cpuhot-guest-mode")["effective"] == "cooperative"
    q.cmd("x-cpuhot-guest-mode", {"mode": "unresponsive"})
    q.cmd("device_del", {"id": "vcpu2"})
    step(q, 3)
    assert len(q.cmd("query-cpus-fast")) == 3
    q.cmd("x-cpuhot-guest-online", {"cpu-index": 1, "online": False})
    assert [c["online"] for c in q.cmd("x-cpuhot-guest-cpus")] == [True, False, True]
    q.cmd("x-cpuhot-guest-eject", {"id": "vcpu2"})          # the guest ejects on its own
    assert any(e["event"] == "DEVICE_DELETED" and e["data"].get("device") == "vcpu2" for e in q.events)
    assert len(q.cmd("query-cpus-fast")) == 2
    with pytest.raises(QMPError):
        q.cmd("x-cpuhot-guest-mode", {"mode": "sometimes"})


def test_real_clock_cooperative_unplug_arrives_by_itself(serve_vm):
    vm = serve_vm("--guest", "cooperative:0.05", "-smp", "1,maxcpus=2")
    q = SyncQMP(vm.path)
    q.cmd("device_add", {"driver": X86, "id": "vcpu1", "socket-id": 0, "core-id": 1, "thread-id": 0})
    q.cmd("device_del", {"id": "vcpu1"})
    e = q.wait_event("DEVICE_DELETED", lambda d: d.get("device") == "vcpu1", timeout=5)
    assert e["data"]["path"] == "/machine/peripheral/vcpu1"
