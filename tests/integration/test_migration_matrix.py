"""Migration between two cpuhot processes: the outcomes QEMU 7.2 gives (checked against two real QEMUs
in tests/conformance) plus the seed story's two worlds (examples/migration_story.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .qmpsync import SyncQMP

CPU = "qemu64-x86_64-cpu"
CAPS = [{"capability": "events", "state": True}, {"capability": "return-path", "state": True}]
ROOT = Path(__file__).resolve().parents[2]


def run_pair(serve_vm, src_args, dst_args, plug=()):
    src = serve_vm("-S", *src_args)
    mig = os.path.join(src.dir, "mig.sock")
    dst = serve_vm("-S", *dst_args, "-incoming", f"unix:{mig}")
    s, d = SyncQMP(src.path), SyncQMP(dst.path)
    for q in (s, d):
        q.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    for args in plug:
        s.cmd("device_add", args)
    assert d.cmd("query-status")["status"] == "inmigrate"
    s.cmd("migrate", {"uri": f"unix:{mig}"})
    status = s.wait_event("MIGRATION", lambda x: x["status"] in ("completed", "failed"))["data"]["status"]
    assert s.cmd("query-status")["status"] == "postmigrate"
    return status, s, d, dst


def hp(ident, core):
    return {"driver": CPU, "id": ident, "socket-id": 0, "core-id": core, "thread-id": 0}


def test_matching(serve_vm):
    status, s, d, _ = run_pair(serve_vm, ["-smp", "1,maxcpus=4"],
                               ["-smp", "1,maxcpus=4", "-device", f"{CPU},id=hp2,socket-id=0,core-id=2,thread-id=0"],
                               plug=[hp("hp2", 2)])
    assert status == "completed"
    assert d.cmd("query-status")["status"] == "prelaunch"        # the source's state is taken over
    assert [(c["cpu-index"], c["qom-path"]) for c in d.cmd("query-cpus-fast")] == \
           [(c["cpu-index"], c["qom-path"]) for c in s.cmd("query-cpus-fast")]


def test_target_missing_a_hotplugged_cpu(serve_vm):
    status, s, d, dst = run_pair(serve_vm, ["-smp", "1,maxcpus=4"], ["-smp", "1,maxcpus=4"], plug=[hp("hp2", 2)])
    assert status == "failed"
    assert dst.proc.wait(10) == 1
    err = dst.proc.stderr.read()
    assert ("Unknown savevm section or instance 'cpu_common' 2. Make sure that your current VM setup matches "
            "your saved VM setup, including any hotplugged devices") in err
    assert "load of migration failed: Invalid argument" in err


def test_target_with_an_extra_cpu_completes(serve_vm):
    status, *_ = run_pair(serve_vm, ["-smp", "1,maxcpus=4"],
                          ["-smp", "1,maxcpus=4", "-device", f"{CPU},id=x,socket-id=0,core-id=3,thread-id=0"])
    assert status == "completed"


def test_different_maxcpus_completes_as_in_qemu(serve_vm):
    status, *_ = run_pair(serve_vm, ["-smp", "1,maxcpus=4"], ["-smp", "1,maxcpus=8"])
    assert status == "completed"


def test_different_machine_fails(serve_vm):
    status, *_ = run_pair(serve_vm, ["-machine", "pc", "-smp", "1"], ["-machine", "q35", "-smp", "1"])
    assert status == "failed"


def test_running_source_resumes_on_target_without_S(serve_vm, tmp_path):
    src = serve_vm("-smp", "1,maxcpus=4")
    mig = str(tmp_path / "mig.sock")
    dst = serve_vm("-smp", "1,maxcpus=4", "-incoming", f"unix:{mig}")
    s, d = SyncQMP(src.path), SyncQMP(dst.path)
    s.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    d.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    s.cmd("migrate", {"uri": f"unix:{mig}"})
    s.wait_event("MIGRATION", lambda x: x["status"] == "completed")
    assert s.cmd("query-status")["status"] == "postmigrate"
    d.wait_event("MIGRATION", lambda x: x["status"] == "completed")
    assert d.cmd("query-status")["status"] == "running"


def test_exec_uris_are_refused(serve_vm):
    vm = serve_vm("-smp", "1")
    q = SyncQMP(vm.path)
    with pytest.raises(Exception) as e:
        q.cmd("migrate", {"uri": "exec:touch /tmp/cpuhot-must-not-exist"})
    assert "does not run programs" in str(e.value)
    assert not os.path.exists("/tmp/cpuhot-must-not-exist")


def test_defer_then_migrate_incoming(serve_vm, tmp_path):
    src = serve_vm("-S", "-smp", "1,maxcpus=4")
    dst = serve_vm("-S", "-smp", "1,maxcpus=4", "-incoming", "defer")
    s, d = SyncQMP(src.path), SyncQMP(dst.path)
    mig = str(tmp_path / "m.sock")
    d.cmd("migrate-incoming", {"uri": f"unix:{mig}"})
    s.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    s.cmd("migrate", {"uri": f"unix:{mig}"})
    assert s.wait_event("MIGRATION", lambda x: x["status"] in ("completed", "failed"))["data"]["status"] == "completed"


def test_the_seed_story_example_prints_what_it_promises():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "migration_story.py")], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out == (ROOT / "examples" / "migration_story.expected").read_text()


def test_tcp_migration_and_cancel(serve_vm):
    import socket as _socket
    s_ = _socket.socket()
    s_.bind(("127.0.0.1", 0))
    port = s_.getsockname()[1]
    s_.close()
    src = serve_vm("-S", "-smp", "1,maxcpus=2")
    dst = serve_vm("-S", "-smp", "1,maxcpus=2", "-incoming", f"tcp:127.0.0.1:{port}")
    s, d = SyncQMP(src.path), SyncQMP(dst.path)  # noqa: F841 (d keeps the target's monitor open)
    s.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    assert {c["capability"]: c["state"] for c in s.cmd("query-migrate-capabilities")}["return-path"] is True
    s.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    assert s.wait_event("MIGRATION", lambda x: x["status"] in ("completed", "failed"))["data"]["status"] == "completed"
    assert s.cmd("query-migrate")["status"] == "completed"
    # cancelling when nothing runs is a no-op, as in QEMU
    assert s.cmd("migrate_cancel") == {}
    # a second migration to a closed port fails with a reason
    s.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    s.wait_event("MIGRATION", lambda x: x["status"] == "failed")
    info = s.cmd("query-migrate")
    assert info["status"] == "failed" and "Failed to connect" in info["error-desc"]


def test_migrate_argument_errors(serve_vm):
    vm = serve_vm("-S", "-smp", "1")
    q = SyncQMP(vm.path)
    for uri, text in (("foo:bar", "Parameter 'uri' expects a valid migration protocol"),):
        with pytest.raises(Exception) as e:
            q.cmd("migrate", {"uri": uri})
        assert text in str(e.value)
    with pytest.raises(Exception) as e:
        q.cmd("migrate-incoming", {"uri": "unix:/tmp/x.sock"})
    assert "'-incoming' was not specified on the command line" in str(e.value)


@pytest.mark.parametrize(("compat", "status"), [("qemu-7.2", {}), ("qemu-10.0", {"status": "setup"}),
                                                ("qemu-5.2", {})])
def test_a_waiting_target_lists_its_address(serve_vm, compat, status):
    """What QEMU 5.2, 7.2 and 10.0 answered (recorded with -incoming tcp:127.0.0.1:0 and, by the live
    differential, unix:): the address the target listens on -- tcp with the port it got, as text --
    and on 10.0 the setup state; after the load, the status alone."""
    tcp = serve_vm("-S", "--compat", compat, "-incoming", "tcp:127.0.0.1:0")
    got = SyncQMP(tcp.path).cmd("query-migrate")
    address = got["socket-address"][0]
    assert got == {**status, "socket-address": [{"port": address["port"], "ipv4": True, "host": "127.0.0.1",
                                                 "type": "inet"}]}
    assert address["port"].isdigit() and int(address["port"]) > 0
    src = serve_vm("-S", "--compat", compat)
    mig = os.path.join(src.dir, "mig.sock")
    dst = serve_vm("-S", "--compat", compat, "-incoming", f"unix:{mig}")
    d = SyncQMP(dst.path)
    assert d.cmd("query-migrate") == {**status, "socket-address": [{"path": mig, "type": "unix"}]}
    s = SyncQMP(src.path)
    s.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    s.cmd("migrate", {"uri": f"unix:{mig}"})
    s.wait_event("MIGRATION", lambda x: x["status"] == "completed")
    ram = s.cmd("query-migrate")["ram"]
    assert ram["total"] == 134750208 and ram["normal"] == {"qemu-5.2": 47, "qemu-7.2": 49, "qemu-10.0": 51}[compat]
    assert d.cmd("query-migrate") == {"status": "completed"}
