"""libvirt's older vCPU hotplug flows, against every profile that has their commands.

* "old bulk" (before QEMU 2.7): query-cpus + ``cpu-add``, following libvirt's recorded x86-old-bulk
  test: growing a 5-of-8 guest to 7 vCPUs with one ``cpu-add`` per new vCPU (ids = the next indexes)
  and a ``query-cpus`` refresh after each.
* "query-cpus" (QEMU 2.7 to 2.11, and what a libvirt of that age still does against 5.2):
  query-hotpluggable-cpus + ``device_add`` per free entry, present vCPUs read from ``query-cpus``.
"""

import pytest

from cpuhot.profiles import PROFILES

from .qmpsync import SyncQMP

WITH_CPU_ADD = [p for p, prof in PROFILES.items() if prof.serves("cpu-add") and prof.serves("query-cpus")]
WITH_QUERY_CPUS = [p for p, prof in PROFILES.items() if prof.serves("query-cpus")]


def test_the_legacy_profiles_are_covered():
    assert {"qemu-5.1", "qemu-2.7"} <= set(WITH_CPU_ADD) and "qemu-5.2" not in WITH_CPU_ADD
    assert {"qemu-5.2", "qemu-5.1", "qemu-2.7"} <= set(WITH_QUERY_CPUS)


@pytest.mark.parametrize("profile", WITH_CPU_ADD)
def test_old_bulk_grow(serve_vm, profile):
    vm = serve_vm("--compat", profile, "-smp", "5,maxcpus=8,sockets=4,cores=2,threads=1")
    q = SyncQMP(vm.path)
    cpus = q.cmd("query-cpus")
    assert [c["CPU"] for c in cpus] == [0, 1, 2, 3, 4]
    thread_ids = {c["thread_id"] for c in cpus}
    for new in (5, 6):
        q.cmd("cpu-add", {"id": new})
        cpus = q.cmd("query-cpus")
        assert [c["CPU"] for c in cpus] == list(range(new + 1))
        assert cpus[-1]["qom_path"].startswith("/machine/unattached/device[")
        assert cpus[-1]["thread_id"] not in thread_ids
        thread_ids.add(cpus[-1]["thread_id"])
    assert len(q.cmd("query-cpus")) == 7
    assert sum("qom-path" in e for e in q.cmd("query-hotpluggable-cpus")) == 7
    q.close()


@pytest.mark.parametrize("machine, smp, plugged", [
    ("pc", "2,maxcpus=6", 6),                       # 5.2's pc: 6 sockets of 1 core
    ("q35", "1,maxcpus=4,sockets=1,cores=2,threads=2", 4),
    ("pseries", "1,maxcpus=4", 4),
])
@pytest.mark.parametrize("profile", WITH_QUERY_CPUS)
def test_query_cpus_flow(serve_vm, profile, machine, smp, plugged):
    """Plug every free entry in slot order; after each, query-cpus shows the new vCPUs (QEMU 5.2's shape:
    creation order, the first ``current``, APs halted while no guest runs) and nothing else changed."""
    vm = serve_vm("--compat", profile, "-machine", machine, "-smp", smp, "-S")
    q = SyncQMP(vm.path)
    before = q.cmd("query-cpus")
    entries = q.cmd("query-hotpluggable-cpus")
    arch = "ppc" if machine == "pseries" else "x86"
    for n, e in enumerate([e for e in reversed(entries) if "qom-path" not in e]):
        ident = f"vcpu{n}"
        q.cmd("device_add", {"driver": e["type"], "id": ident, **e["props"]})
        cpus = q.cmd("query-cpus")
        assert cpus[:len(before)] == before                      # the old entries are untouched
        new = cpus[len(before):]
        assert len(new) == e["vcpus-count"]
        assert all(c["qom_path"].startswith(f"/machine/peripheral/{ident}") for c in new)
        assert all(c["props"] == e["props"] and c["arch"] == arch for c in new)
        assert all(c["halted"] is True and c["current"] is False for c in new)
        assert all(type(c["CPU"]) is int and type(c["thread_id"]) is int for c in new)
        before = cpus
    assert len(before) == plugged
    assert [c["current"] for c in before] == [True] + [False] * (plugged - 1)
    assert before[0]["halted"] is False
    assert len({c["CPU"] for c in before}) == plugged
    assert all("qom-path" in e for e in q.cmd("query-hotpluggable-cpus"))
    q.close()
