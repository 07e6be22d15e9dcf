"""libvirt's "old" vCPU hotplug (before QEMU 2.7): query-cpus + cpu-add, against the qemu-2.7 profile.

The flow follows libvirt's recorded x86-old-bulk test: growing a 5-of-8 guest to 7 vCPUs with one
``cpu-add`` per new vCPU (ids = the next indexes) and a ``query-cpus`` refresh after each.
"""

from .qmpsync import SyncQMP


def test_old_bulk_grow(serve_vm):
    vm = serve_vm("--compat", "qemu-2.7", "-smp", "5,maxcpus=8,sockets=4,cores=2,threads=1")
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
