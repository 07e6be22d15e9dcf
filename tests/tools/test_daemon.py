"""-daemonize, -pidfile and -chardev/-mon monitors (also on an inherited listening fd, as libvirt
passes it), checked on cpuhot-system-x86_64 and, where it matters, side by side with QEMU 7.2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from cpuhot.client import QMPClient

from .helpers import Server, require_qemu, script, wait_for

P = ["-S", "-nodefaults", "-display", "none"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists": read its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _daemonize(binary: str, tmp_path, *extra, name="d", pidname=None):
    sock, pidfile = tmp_path / f"{name}.sock", tmp_path / f"{pidname or name}.pid"
    r = subprocess.run([binary, *P, "-daemonize", "-pidfile", str(pidfile), "-qmp",
                        f"unix:{sock},server=on,wait=off", *extra], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    return r, sock, pidfile


@pytest.fixture
def kill_later():
    pids = []
    yield pids.append
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_daemonize_serves_once_the_parent_returns(tmp_path, kill_later):
    r, sock, pidfile = _daemonize(script("cpuhot-system-x86_64"), tmp_path, "-machine", "q35", "-smp", "1,maxcpus=4")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    text = pidfile.read_text()
    assert text.endswith("\n") and text.strip().isdigit()
    pid = int(text)
    kill_later(pid)
    assert oct(pidfile.stat().st_mode & 0o777) == "0o600"
    # listening when the parent exited: no retry needed
    with QMPClient(f"unix:{sock}", timeout=5) as q:
        assert q.execute("query-status")["status"] == "prelaunch"
    # a real daemon: not our child, its own session (double fork: not the session leader), stdio on /dev/null
    assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid
    assert all(os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null" for fd in (0, 1, 2))
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    # a second instance cannot take the locked pid file: QEMU's message, exit 1, nothing left behind
    r2, sock2, _ = _daemonize(script("cpuhot-system-x86_64"), tmp_path, name="d2", pidname="d")
    assert r2.returncode == 1 and not sock2.exists()
    assert "cpuhot-system-x86_64: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n" \
        in r2.stderr
    assert pidfile.read_text() == text
    # SIGTERM: clean exit, socket and pid file removed
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not _alive(pid))
    assert not pidfile.exists() and not sock.exists()


def test_daemonize_refusal_exits_1_in_the_parent(tmp_path):
    r, sock, pidfile = _daemonize(script("cpuhot-system-x86_64"), tmp_path, "-smp", "1000")
    assert r.returncode == 1
    assert r.stderr == ("cpuhot-system-x86_64: Invalid SMP CPUs 1000. The max CPUs supported by machine "
                        "'pc-i440fx-7.2' is 255\n")
    assert not pidfile.exists() and not sock.exists()


def test_daemonize_like_qemu(tmp_path, kill_later):
    """QEMU and cpuhot, same argv: both return 0 with nothing printed, both leave a pid file with
    the daemon's pid, both serve, both remove the pid file at SIGTERM."""
    qemu = require_qemu()
    seen = []
    for binary in (qemu, script("cpuhot-system-x86_64")):
        name = os.path.basename(binary)
        r, sock, pidfile = _daemonize(binary, tmp_path, "-accel", "tcg", "-uuid",
                                      "6b29fc40-ca47-1067-b31d-00dd010662da", name=name)
        pid = int(pidfile.read_text())
        kill_later(pid)
        with QMPClient(f"unix:{sock}", timeout=10) as q:
            seen.append((r.returncode, r.stdout, r.stderr, oct(pidfile.stat().st_mode & 0o777),
                         q.execute("query-uuid"), os.getsid(pid) != os.getsid(0)))
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not _alive(pid))
        assert not pidfile.exists()
    assert seen[0] == seen[1]


def test_pidfile_without_daemonize(tmp_path):
    pidfile = tmp_path / "vm.pid"
    srv = Server(script("cpuhot-system-x86_64"), [*P, "-pidfile", str(pidfile)])
    try:
        srv.client().close()
        assert pidfile.read_text() == f"{srv.proc.pid}\n"
    finally:
        srv.stop()
    assert not pidfile.exists()


def _listening_unix_socket(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(8)
    return s


@pytest.mark.parametrize("daemonize", [False, True], ids=["foreground", "daemonize"])
def test_inherited_listening_fd_as_libvirt_passes_it(tmp_path, daemonize, kill_later):
    """libvirt: ``-chardev socket,id=charmonitor,fd=N,server=on,wait=off -mon chardev=charmonitor,id=monitor,
    mode=control`` with N a listening socket it created (and passed down)."""
    path = tmp_path / "monitor.sock"
    lsock = _listening_unix_socket(path)
    fd = lsock.fileno()
    argv = [script("cpuhot-system-x86_64"), *P, "-name", "guest=lv,debug-threads=on", "-chardev",
            f"socket,id=charmonitor,fd={fd},server=on,wait=off", "-mon", "chardev=charmonitor,id=monitor,mode=control"]
    if daemonize:
        argv += ["-daemonize", "-pidfile", str(tmp_path / "lv.pid")]
    proc = subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lsock.close()                # only the VM holds it now
    try:
        if daemonize:
            assert proc.wait(30) == 0
            kill_later(int((tmp_path / "lv.pid").read_text()))
        with QMPClient(f"unix:{path}", timeout=10) as q:
            assert q.execute("query-name") == {"name": "lv"}
            assert q.greeting["QMP"]["version"]["qemu"]["major"] == 7
    finally:
        if daemonize:
            os.kill(int((tmp_path / "lv.pid").read_text()), signal.SIGTERM)
        else:
            proc.terminate()
            assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_inherited_fd_like_qemu(tmp_path):
    qemu = require_qemu()
    answers = []
    for binary in (qemu, script("cpuhot-system-x86_64")):
        path = tmp_path / f"{os.path.basename(binary)}.sock"
        lsock = _listening_unix_socket(path)
        fd = lsock.fileno()
        srv = Server(binary, [*P, "-accel", "tcg", "-name", "guest=lv", "-chardev",
                              f"socket,id=charmonitor,fd={fd},server=on,wait=off",
                              "-mon", "chardev=charmonitor,id=monitor,mode=control"], pass_fds=(fd,), sock=str(path))
        lsock.close()
        try:
            with srv.client() as q:
                answers.append([q.execute(c) for c in ("query-name", "query-status", "query-target")])
        finally:
            srv.stop()
    assert answers[0] == answers[1]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_chardev_monitors_on_path_and_tcp(tmp_path):
    """Two QMP monitors on -chardev sockets (unix path and tcp): one VM behind both."""
    path, port = tmp_path / "c0.sock", _free_port()
    srv = Server(script("cpuhot-system-ppc64"),
                 [*P, "-machine", "pseries", "-smp", "1,maxcpus=4", "-chardev",
                  f"socket,id=c0,path={path},server=on,wait=off", "-mon", "chardev=c0,mode=control",
                  "-chardev", f"socket,id=c1,host=127.0.0.1,port={port},server=on,wait=off",
                  "-mon", "chardev=c1,mode=control,pretty=off"], sock=str(path))
    try:
        with srv.client() as q, QMPClient(f"tcp:127.0.0.1:{port}") as t:
            free = q.execute("query-hotpluggable-cpus")[0]
            q.execute("device_add", {"driver": free["type"], "id": "core3", **free["props"]})
            assert t.execute("query-hotpluggable-cpus")[0]["qom-path"] == "/machine/peripheral/core3"
    finally:
        srv.stop()
