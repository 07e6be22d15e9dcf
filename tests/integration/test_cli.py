"""The command line as a user meets it: refusals, signals, several monitors, run state."""

import os
import signal
import subprocess
import sys

import pytest

from .qmpsync import SyncQMP


def run(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "cpuhot", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["-smp", "4,sockets=2,cores=2,threads=2"],
     "cpuhot: Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (2) * dies (1) * "
     "cores (2) * threads (2) != maxcpus (4)\n"),
    (["-machine", "nosuch"], "cpuhot: unsupported machine type\nUse -machine help to list supported machines\n"),
    (["-machine", "pseries", "-smp", "2,threads=2", "-accel", "tcg"],
     "cpuhot: TCG cannot support more than 1 thread/core on a pseries machine\n"),
    (["-machine", "q35", "-smp", "256", "-accel", "tcg"],
     "cpuhot: current -smp configuration requires kernel irqchip and X2APIC API support.\n"),
    (["-numa", "cpu,node-id=3,socket-id=0"],
     "cpuhot: -numa cpu,node-id=3,socket-id=0: Invalid node-id=3, NUMA node must be defined with -numa "
     "node,nodeid=ID before it's used with -numa cpu,node-id=ID\n"),
])
def test_refused_command_lines_exit_1_with_qemus_message(args, message):
    r = run(*args)
    assert r.returncode == 1 and r.stderr == message and r.stdout == ""


def test_kvm_simulation_allows_what_tcg_refuses(serve_vm):
    vm = serve_vm("-machine", "q35", "-smp", "1,maxcpus=288", "-accel", "kvm")
    q = SyncQMP(vm.path)
    entries = q.cmd("query-hotpluggable-cpus")
    assert len(entries) == 288
    q.cmd("device_add", {"driver": entries[0]["type"], "id": "last", **entries[0]["props"]})
    assert q.cmd("qom-get", {"path": "/machine/peripheral/last", "property": "apic-id"}) == 287


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly_and_remove_the_socket(serve_vm, sig):
    vm = serve_vm("-smp", "2")
    SyncQMP(vm.path).close()
    vm.proc.send_signal(sig)
    assert vm.proc.wait(10) == 0
    assert not os.path.exists(vm.path)


def test_quit_reports_shutdown_then_exits_0(serve_vm):
    vm = serve_vm("-smp", "1")
    q = SyncQMP(vm.path)
    assert q.cmd("quit") == {}
    assert [e["event"] for e in q.events] == ["SHUTDOWN"]
    assert q.events[0]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert vm.proc.wait(10) == 0


def test_two_monitors_and_events_to_every_client(serve_vm, tmp_path):
    second = tmp_path / "second.sock"
    vm = serve_vm("-S", "-smp", "1", "-qmp", f"unix:{second},server=on,wait=off")
    a, b, c = SyncQMP(vm.path), SyncQMP(str(second)), SyncQMP(vm.path)     # the default profile serves all at once
    assert a.cmd("query-status")["status"] == "prelaunch"
    a.cmd("cont")
    b.cmd("query-status")
    c.cmd("query-status")
    assert [e["event"] for e in b.events] == ["RESUME"] and [e["event"] for e in c.events] == ["RESUME"]


def test_without_S_the_vm_runs(serve_vm):
    vm = serve_vm("-smp", "1")
    assert SyncQMP(vm.path).cmd("query-status") == {"status": "running", "singlestep": False, "running": True}


def test_racing_clients_get_exactly_one_success(serve_vm):
    vm = serve_vm("-smp", "1,maxcpus=2")
    clients = [SyncQMP(vm.path) for _ in range(8)]
    msg = {"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": 1, "thread-id": 0}
    import json
    for i, q in enumerate(clients):         # all requests are in flight before any reply is read
        q.sock.sendall(json.dumps({"execute": "device_add", "arguments": {**msg, "id": f"c{i}"}}).encode())
    replies = [json.loads(q.file.readline()) for q in clients]
    assert sum("return" in r for r in replies) == 1
    assert {r["error"]["desc"] for r in replies if "error" in r} == {"CPU[1] with APIC ID 1 exists"}
