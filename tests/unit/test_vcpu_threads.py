"""--vcpu-threads: every vCPU's thread-id is a live OS thread of this process, gone after unplug."""

import os
import time

from cpuhot.machine.config import LaunchOptions, build_machine


def live_tids():
    return {int(t) for t in os.listdir(f"/proc/{os.getpid()}/task")}


def gone(tids, timeout=2.0):
    """A joined Python thread may still be finishing in the kernel for a moment."""
    deadline = time.monotonic() + timeout
    while set(tids) & live_tids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_thread_ids_are_real_and_end_on_unplug():
    vm = build_machine(LaunchOptions(smp="2,maxcpus=4", vcpu_threads=True, guest="cooperative",
                                     clock="virtual")).vm
    tids = [c["thread-id"] for c in vm.query_cpus_fast()]
    assert set(tids) <= live_tids() and len(set(tids)) == 2
    vm.device_add({"driver": "qemu64-x86_64-cpu", "id": "c2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    new = vm.query_cpus_fast()[-1]["thread-id"]
    assert new in live_tids()
    with open(f"/proc/{os.getpid()}/task/{new}/comm") as f:
        assert f.read().strip() == "CPU 2/KVM"
    vm.clock_step(0.1)
    vm.device_del("c2")
    vm.clock_step(0.1)
    assert gone([new])
    vm.vcpu_threads.stop_all()
    assert gone(tids)
