"""Each compatibility profile over a real socket, driven by qemu.qmp (and a sync client for legacy flows)."""

import asyncio

import pytest
from qemu.qmp import ExecuteError, QMPClient

from .qmpsync import QMPError, SyncQMP

#: what the cpuhot profile serves, written down (not read from the registry under test): a command
#: added or lost shows here.  Every one but the x-cpuhot-* and legacy ones is also in QEMU 7.2's
#: recorded query-commands (test_served_commands_are_qemus).
QEMU_72_SUBSET = {
    "balloon", "closefd", "cont", "device-list-properties", "getfd", "migrate-set-parameters",
    "query-iothreads", "query-migrate-parameters", "device_add", "device_del", "human-monitor-command", "migrate",
    "migrate-incoming", "migrate-pause", "migrate-set-capabilities", "migrate_cancel", "qmp_capabilities",
    "qom-get", "qom-list", "qom-list-properties", "qom-list-types", "query-balloon", "query-block",
    "query-chardev", "query-command-line-options", "query-commands", "query-cpu-definitions", "query-cpus-fast",
    "query-hotpluggable-cpus", "query-jobs", "query-kvm", "query-machines", "query-migrate",
    "query-migrate-capabilities", "query-name", "query-named-block-nodes", "query-qmp-schema", "query-status",
    "query-target", "query-uuid", "query-version", "quit", "stop", "system_powerdown", "system_reset",
}
LEGACY = {"cpu-add", "query-cpus"}
CPUHOT_ONLY = {"x-cpuhot-clock-step", "x-cpuhot-guest-agent", "x-cpuhot-guest-cpus", "x-cpuhot-guest-eject",
               "x-cpuhot-guest-mode", "x-cpuhot-guest-online", "x-cpuhot-s390x-polarize", "x-cpuhot-topology"}
#: served only by profiles of a release that still has them (query-events: QEMU <= 5.2)
NOT_IN_7_2 = {"query-events"}
#: s390x's CPU-topology commands (QEMU 8.2+, KVM): not in 7.2's x86 list
S390X_ONLY = {"set-cpu-topology", "query-s390x-cpu-polarization"}
ALL = QEMU_72_SUBSET | LEGACY | CPUHOT_ONLY | NOT_IN_7_2 | S390X_ONLY


def test_served_commands_are_qemus():
    import json
    from pathlib import Path
    recorded = Path(__file__).resolve().parent.parent / "conformance/transcripts/qemu-7.2/proto-query-commands-x86.json"
    text = recorded.read_text()
    qemu = {name for name in QEMU_72_SUBSET if f'"name": "{name}"' in text}
    assert qemu == QEMU_72_SUBSET, QEMU_72_SUBSET - qemu
    assert not any(f'"name": "{name}"' in text for name in LEGACY | CPUHOT_ONLY)
    assert json.loads(text)["qemu_version"]


async def _probe(path):
    qmp = QMPClient("profile-probe")
    await qmp.connect(path)
    try:
        v = qmp.greeting.QMP.version["qemu"]
        caps = list(qmp.greeting.QMP.capabilities)
        names = {c["name"] for c in await qmp.execute("query-commands")}
        missing = {}
        for name in ("cpu-add", "query-cpus", "query-cpus-fast", "x-cpuhot-guest-mode"):
            try:
                await qmp.execute(name, {"id": 99} if name == "cpu-add" else None)
                missing[name] = False
            except ExecuteError as e:
                missing[name] = e.error_class == "CommandNotFound"
        return (v["major"], v["minor"], v["micro"]), caps, names, missing
    finally:
        await qmp.disconnect()


@pytest.mark.parametrize("compat, version, expected, absent", [
    ("cpuhot", (7, 2, 22), ALL - NOT_IN_7_2, set()),
    ("qemu-7.2", (7, 2, 22), ALL - NOT_IN_7_2 - CPUHOT_ONLY - {"cpu-add", "query-cpus"}, {"cpu-add", "query-cpus"}),
    ("qemu-5.2", (5, 2, 0), ALL - CPUHOT_ONLY - {"cpu-add"}, {"cpu-add"}),
    ("qemu-5.1", (5, 1, 0), ALL - CPUHOT_ONLY, set()),
    ("qemu-2.7", (2, 7, 1), ALL - CPUHOT_ONLY - {"query-cpus-fast", "migrate-pause"}, {"query-cpus-fast"}),
])
def test_query_commands_is_exactly_what_the_profile_serves(serve_vm, compat, version, expected, absent):
    vm = serve_vm("--compat", compat, "-smp", "1,maxcpus=4")
    got_version, caps, names, missing = asyncio.run(_probe(vm.path))
    assert got_version == version
    assert names == expected
    assert {n for n, gone in missing.items() if gone} == absent | ({"x-cpuhot-guest-mode"} if compat != "cpuhot" else set())
    assert caps == ([] if compat == "qemu-2.7" else ["oob"])


def test_qemu_2_7_cpu_index_counts_and_plug_order(serve_vm):
    vm = serve_vm("--compat", "qemu-2.7", "-smp", "1,maxcpus=4,sockets=1,cores=4")
    q = SyncQMP(vm.path)
    cpu = "qemu64-x86_64-cpu"
    with pytest.raises(QMPError) as e:
        q.cmd("device_add", {"driver": cpu, "id": "c2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    assert e.value.desc == ("CPU slot 2 cannot be plugged before slot 1: this machine plugs CPUs in order "
                            "(QEMU 2.7 rule)")
    q.cmd("device_add", {"driver": cpu, "id": "c1", "socket-id": 0, "core-id": 1, "thread-id": 0})
    q.cmd("device_add", {"driver": cpu, "id": "c2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    with pytest.raises(QMPError) as e:
        q.cmd("device_del", {"id": "c1"})
    assert "cannot be unplugged before slot 2" in e.value.desc
    # x86 cpu-add still takes any order, and cpu_index is the count of CPUs at creation
    q.cmd("cpu-add", {"id": 3})
    cpus = q.cmd("query-cpus")
    assert [(c["CPU"], c["props"]["core-id"]) for c in cpus] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # QEMU 5.2 shows the APs halted until a guest starts them (recorded in prelaunch; no guest runs here)
    assert all(c["arch"] == "x86" for c in cpus)
    assert [c["halted"] for c in cpus] == [False, True, True, True]
    assert [c["current"] for c in cpus] == [True, False, False, False]
    with pytest.raises(QMPError) as e:
        q.cmd("query-cpus-fast")
    assert e.value.error_class == "CommandNotFound"
    q.close()


def test_qemu_2_7_out_of_order_cpu_add_shifts_cpu_index(serve_vm):
    vm = serve_vm("--compat", "qemu-2.7", "-smp", "2,maxcpus=8")
    q = SyncQMP(vm.path)
    q.cmd("cpu-add", {"id": 5})
    q.cmd("cpu-add", {"id": 2})
    # QEMU 5.2's -smp 2,maxcpus=8 is 8 sockets of 1 core (recorded): the slots are sockets
    by_socket = {c["props"]["socket-id"]: c["CPU"] for c in q.cmd("query-cpus")}
    assert by_socket == {0: 0, 1: 1, 5: 2, 2: 3}
    q.close()


def test_modern_profiles_keep_cpu_index_on_the_slot(serve_vm):
    vm = serve_vm("--compat", "qemu-5.1", "-smp", "2,maxcpus=8")
    q = SyncQMP(vm.path)
    q.cmd("cpu-add", {"id": 5})
    q.cmd("cpu-add", {"id": 2})
    assert [c["cpu-index"] for c in q.cmd("query-cpus-fast")] == [0, 1, 5, 2]
    assert [c["CPU"] for c in q.cmd("query-cpus")] == [0, 1, 5, 2]       # creation order, as 5.2 lists
    with pytest.raises(QMPError) as e:
        q.cmd("cpu-add", {"id": 5})
    assert e.value.desc == "CPU[5] with APIC ID 5 exists"
    with pytest.raises(QMPError) as e:
        q.cmd("cpu-add", {"id": 8})
    assert e.value.desc == "Invalid CPU [socket: 8, die: 0, core: 0, thread: 0] with APIC ID 8, valid index range 0:7"
    with pytest.raises(QMPError) as e:
        q.cmd("cpu-add", {"id": -1})
    assert e.value.desc == "Invalid CPU id: -1"
    # cpu-add'ed CPUs are unattached and have no id: device_del cannot name them by id
    paths = [c["qom-path"] for c in q.cmd("query-cpus-fast")]
    assert paths[2].startswith("/machine/unattached/device[")
    q.close()


def test_pseries_cpu_add_plugs_a_whole_core(serve_vm):
    vm = serve_vm("--compat", "cpuhot", "-machine", "pseries", "-smp", "4,maxcpus=16,threads=4", "-accel", "kvm")
    q = SyncQMP(vm.path)
    q.cmd("cpu-add", {"id": 8})
    cpus = q.cmd("query-cpus")
    assert [c["CPU"] for c in cpus] == [0, 1, 2, 3, 8, 9, 10, 11]
    assert {c["arch"] for c in cpus} == {"ppc"} and all("nip" in c for c in cpus)
    entry = [e for e in q.cmd("query-hotpluggable-cpus") if e["props"]["core-id"] == 8][0]
    assert entry["vcpus-count"] == 4 and entry["qom-path"].startswith("/machine/unattached/")
    with pytest.raises(QMPError) as e:
        q.cmd("cpu-add", {"id": 6})
    assert "multiple of 4" in e.value.desc
    q.close()


def test_pseries_cpu_add_in_order_under_2_7(serve_vm):
    vm = serve_vm("--compat", "qemu-2.7", "-machine", "pseries", "-smp", "1,maxcpus=4")
    q = SyncQMP(vm.path)
    with pytest.raises(QMPError) as e:
        q.cmd("cpu-add", {"id": 2})
    assert "cannot be plugged before slot 1" in e.value.desc
    q.cmd("cpu-add", {"id": 1})
    q.cmd("cpu-add", {"id": 2})
    assert [c["CPU"] for c in q.cmd("query-cpus")] == [0, 1, 2]
    q.close()
