"""Save and restore through passed fds, as libvirt does it (recorded with libvirt 9.0 and QEMU 7.2):
``getfd`` over SCM_RIGHTS + ``migrate fd:migrate`` into a file; a target started with
``-incoming defer`` (or ``-incoming fd:N``) and an inherited fd, the hot-plugged vCPUs
``device_add``-ed out of order, then ``migrate-incoming fd:N``.  Expected texts are QEMU 7.2's."""

import array
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from cpuhot.launch import terminate

from .qmpsync import QMPError, SyncQMP

CPU = "qemu64-x86_64-cpu"
SMP = ["-machine", "pc", "-smp", "1,sockets=4,cores=1,threads=1,maxcpus=4"]


def hp(ident, socket_id):
    return {"driver": CPU, "id": ident, "socket-id": socket_id, "core-id": 0, "thread-id": 0}


class Proc:
    def __init__(self, args, pass_fds=(), connect=True):
        self.dir = tempfile.mkdtemp(prefix="cpuhot-fdmig-")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cpuhot", "serve", "--validate-returns", *args,
             "-qmp", f"unix:{self.path},server=on,wait=off"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=pass_fds)
        if not self.proc.stdout.readline().strip():
            raise RuntimeError(f"cpuhot did not start: {self.proc.stderr.read()}")
        self.qmp = SyncQMP(self.path) if connect else None

    def stop(self):
        if self.qmp is not None:
            self.qmp.close()
        terminate(self.proc, 5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def procs():
    started = []

    def start(*args, pass_fds=(), connect=True):
        p = Proc(list(args), pass_fds, connect)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


def cmd_with_fd(q: SyncQMP, name, args, fd):
    """Send a command with ``fd`` attached (SCM_RIGHTS), as libvirt sends getfd."""
    data = json.dumps({"execute": name, "arguments": args}).encode()
    q.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    while True:
        reply = q._read()
        if "event" in reply:
            q.events.append(reply)
        elif "error" in reply:
            raise QMPError(reply["error"])
        else:
            return reply["return"]


def err(fn, *a):
    with pytest.raises(QMPError) as e:
        fn(*a)
    return e.value.error_class, e.value.desc


def test_migration_parameters_as_qemu_7_2(procs):
    q = procs(*SMP).qmp
    params = q.cmd("query-migrate-parameters")
    assert params["max-bandwidth"] == 134217728 and params["downtime-limit"] == 300
    assert params["tls-creds"] == "" and params["multifd-compression"] == "none"
    assert list(params)[:3] == ["cpu-throttle-tailslow", "xbzrle-cache-size", "cpu-throttle-initial"]
    assert len(params) == 26
    assert q.cmd("migrate-set-parameters", {"max-bandwidth": 9223372036853727232}) == {}
    assert q.cmd("query-migrate-parameters")["max-bandwidth"] == 9223372036853727232
    q.cmd("migrate-set-parameters", {"max-bandwidth": -1, "tls-creds": None})
    assert q.cmd("query-migrate-parameters")["max-bandwidth"] == 18446744073709551615
    assert err(q.cmd, "migrate-set-parameters", {"bogus": 1}) == ("GenericError", "Parameter 'bogus' is unexpected")
    assert err(q.cmd, "migrate-set-parameters", {"downtime-limit": 3000000}) == (
        "GenericError", "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms")
    assert err(q.cmd, "migrate-set-parameters", {"compress-level": 10}) == (
        "GenericError", "Parameter 'compress_level' expects a value between 0 and 9")
    assert err(q.cmd, "migrate-set-parameters", {"cpu-throttle-initial": 0}) == (
        "GenericError", "Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99")
    assert err(q.cmd, "migrate-set-parameters", {"max-bandwidth": "x"}) == (
        "GenericError", "Parameter 'max-bandwidth' expects uint64")
    assert err(q.cmd, "migrate-set-parameters", {"multifd-compression": "zz"}) == (
        "GenericError", "Parameter 'multifd-compression' does not accept value 'zz'")
    assert err(q.cmd, "migrate-set-parameters", {"block-incremental": 1}) == (
        "GenericError", "Invalid parameter type for 'block-incremental', expected: boolean")
    # all or nothing: a bad member leaves the others unset
    err(q.cmd, "migrate-set-parameters", {"downtime-limit": 5, "compress-level": 99})
    assert q.cmd("query-migrate-parameters")["downtime-limit"] == 300


def test_getfd_closefd_as_qemu_7_2(procs, tmp_path):
    q = procs(*SMP).qmp
    assert err(q.cmd, "getfd", {"fdname": "migrate"}) == ("GenericError", "No file descriptor supplied via SCM_RIGHTS")
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        assert cmd_with_fd(q, "getfd", {"fdname": "x"}, fd) == {}
        assert err(cmd_with_fd, q, "getfd", {"fdname": "1x"}, fd) == (
            "GenericError", "Parameter 'fdname' expects a name not starting with a digit")
    finally:
        os.close(fd)
    assert q.cmd("closefd", {"fdname": "x"}) == {}
    assert err(q.cmd, "closefd", {"fdname": "x"}) == ("GenericError", "File descriptor named 'x' not found")
    assert err(q.cmd, "migrate", {"uri": "fd:nope"}) == ("GenericError", "File descriptor named 'nope' has not been found")
    assert q.cmd("query-status")["status"] == "running"      # nothing started, the VM is usable


def save(tmp_path, procs, plug):
    src = procs("-S", *SMP)
    s = src.qmp
    s.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    for args in plug:
        s.cmd("device_add", args)
    s.cmd("cont")
    before = (s.cmd("query-hotpluggable-cpus"), s.cmd("query-cpus-fast"))
    path = tmp_path / "saved"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        cmd_with_fd(s, "getfd", {"fdname": "migrate"}, fd)
    finally:
        os.close(fd)
    s.cmd("stop")
    s.cmd("migrate-set-parameters", {"max-bandwidth": 9223372036853727232})
    s.cmd("migrate", {"uri": "fd:migrate", "detach": True, "resume": False})
    assert s.wait_event("MIGRATION", lambda d: d["status"] in ("completed", "failed"))["data"]["status"] == "completed"
    assert s.cmd("query-migrate")["status"] == "completed"
    assert s.cmd("query-status")["status"] == "postmigrate"
    return path, before


def _strip_threads(cpus):
    return [{k: v for k, v in c.items() if k != "thread-id"} for c in cpus]


def test_save_restore_out_of_order_then_unplug(procs, tmp_path):
    plug = [hp("vcpu3", 3), hp("vcpu1", 1)]
    path, (hot, fast) = save(tmp_path, procs, plug)
    fd = os.open(path, os.O_RDONLY)
    try:
        dst = procs("-S", *SMP, "-incoming", "defer", pass_fds=(fd,))
    finally:
        os.close(fd)
    d = dst.qmp
    d.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    for args in plug:
        d.cmd("device_add", args)
    d.cmd("migrate-incoming", {"uri": f"fd:{fd}"})
    statuses = [d.wait_event("MIGRATION", lambda x, s=s: x["status"] == s)["data"]["status"]
                for s in ("setup", "active", "completed")]
    assert statuses == ["setup", "active", "completed"]
    assert d.cmd("query-status")["status"] == "paused"           # -S: libvirt sends cont itself
    assert d.cmd("query-hotpluggable-cpus") == hot
    assert _strip_threads(d.cmd("query-cpus-fast")) == _strip_threads(fast)
    d.cmd("cont")
    d.cmd("device_del", {"id": "vcpu3"})
    d.wait_event("DEVICE_DELETED", lambda x: x.get("device") == "vcpu3")
    assert [c["cpu-index"] for c in d.cmd("query-cpus-fast")] == [0, 1]


def test_restore_without_a_hotplugged_cpu_fails_as_qemu(procs, tmp_path):
    path, _ = save(tmp_path, procs, [hp("vcpu3", 3), hp("vcpu1", 1)])
    fd = os.open(path, os.O_RDONLY)
    try:
        dst = procs("-S", *SMP, "-incoming", "defer", pass_fds=(fd,))
    finally:
        os.close(fd)
    d = dst.qmp
    d.cmd("device_add", hp("vcpu3", 3))              # vcpu1 (cpu-index 1) is missing
    d.cmd("migrate-incoming", {"uri": f"fd:{fd}"})
    assert dst.proc.wait(10) == 1
    stderr = dst.proc.stderr.read()
    assert ("Unknown savevm section or instance 'cpu_common' 1. Make sure that your current VM setup matches "
            "your saved VM setup, including any hotplugged devices") in stderr
    assert "load of migration failed: Invalid argument" in stderr


def test_restore_of_a_file_that_is_not_a_stream_fails_as_qemu(procs, tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"QEVM\x00\x00\x00\x03" + b"\x00" * 64)       # a real QEMU stream's magic, not cpuhot's
    fd = os.open(path, os.O_RDONLY)
    try:
        dst = procs("-S", *SMP, "-incoming", f"fd:{fd}", pass_fds=(fd,), connect=False)
    finally:
        os.close(fd)
    assert dst.proc.wait(10) == 1
    stderr = dst.proc.stderr.read()
    assert "Not a migration stream" in stderr and "load of migration failed: Invalid argument" in stderr


def test_incoming_fd_on_the_command_line_and_a_socket_fd(procs, tmp_path):
    """``-incoming fd:N`` with a socketpair: the source migrates into the other end via getfd."""
    a, b = socket.socketpair()
    src = procs("-S", *SMP)
    s = src.qmp
    s.cmd("device_add", hp("vcpu2", 2))
    try:
        dst = procs("-S", *SMP, "-device", f"{CPU},id=vcpu2,socket-id=2,core-id=0,thread-id=0",
                    "-incoming", f"fd:{b.fileno()}", pass_fds=(b.fileno(),))
        cmd_with_fd(s, "getfd", {"fdname": "migrate"}, a.fileno())
    finally:
        a.close()
        b.close()
    d = dst.qmp
    s.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    s.cmd("migrate", {"uri": "fd:migrate"})
    assert s.wait_event("MIGRATION", lambda x: x["status"] in ("completed", "failed"))["data"]["status"] == "completed"
    deadline = time.monotonic() + 10
    while d.cmd("query-migrate").get("status") != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [c["qom-path"] for c in d.cmd("query-cpus-fast")] == [c["qom-path"] for c in s.cmd("query-cpus-fast")]
