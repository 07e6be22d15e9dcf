"""Fast start (cpuhot.early): the greeting is sent before the VM model and asyncio are imported.

Not timed (benchmarks/startup.py measures against QEMU): these tests check what the design relies
on — what is imported before the greeting, that the early greeting is byte for byte the server's,
and that clients who connect during start-up are served as if the server had greeted them.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpuhot import early
from cpuhot.profiles import PROFILES

from .helpers import script

#: modules the greeting must not wait for (written from the design, not from sys.modules)
HEAVY = ("asyncio", "pydantic", "cpuhot.machine", "cpuhot.qmp", "cpuhot.cli", "cpuhot.dropin",
         "cpuhot.launch", "cpuhot.profiles", "dataclasses", "json", "socket", "selectors", "threading", "enum")

#: run in a fresh interpreter: take the early path for argv (``{sock}``, ``{tmp}``, ``{fd}`` filled in),
#: connect as a client, and print the greeting and every module imported before it arrived
PROBE = r"""
import os, sys
from cpuhot import early
kind, address, out, *argv = sys.argv[1:]
g = early.start(argv, "cpuhot-system-x86_64")
if isinstance(g, int):                   # the original process of -daemonize: the daemon reports
    sys.exit(g)
assert g is not None, "the early path was not taken"
import _socket
c = _socket.socket(_socket.AF_INET if kind == "tcp" else _socket.AF_UNIX, _socket.SOCK_STREAM)
c.connect(("127.0.0.1", int(address)) if kind == "tcp" else address)
line = b""
while not line.endswith(b"\n"):
    line += c.recv(4096)
loaded = sorted(sys.modules)             # all that ran before the greeting came
pidfile = [a for a in argv if a.endswith(".pid")]
report = {"greeting": line.decode(), "modules": loaded, "pid": os.getpid(),
          "pidfile": open(pidfile[0]).read() if pidfile else None}
c.close()
g.abort()
with open(out, "w") as f:
    f.write(repr(report))
if g.daemon is not None:
    g.daemon.failed()                    # the original process exits 1: nothing was served
"""

#: each start-up path issue 11 brings to the early greeting: (extra argv, how the client reaches it)
EARLY_PATHS = {
    "unix": (["-qmp", "unix:{sock},server=on,wait=off"], "unix"),
    "tcp": (["-qmp", "tcp:127.0.0.1:{port},server=on,wait=off"], "tcp"),
    "chardev-path": (["-chardev", "socket,id=mon0,path={sock},server=on,wait=off",
                      "-mon", "chardev=mon0,mode=control"], "unix"),
    "chardev-host": (["-chardev", "socket,id=mon0,host=127.0.0.1,port={port},server=on,wait=off",
                      "-mon", "chardev=mon0,mode=control"], "tcp"),
    "chardev-fd": (["-chardev", "socket,id=mon0,fd={fd},server=on,wait=off",
                    "-mon", "chardev=mon0,mode=control"], "unix"),
    "pidfile": (["-pidfile", "{tmp}/q.pid", "-qmp", "unix:{sock},server=on,wait=off"], "unix"),
    "state": (["--state", "{tmp}/state.json", "-qmp", "unix:{sock},server=on,wait=off"], "unix"),
    "daemonize": (["-daemonize", "-pidfile", "{tmp}/q.pid", "-qmp", "unix:{sock},server=on,wait=off"], "unix"),
    "libvirt": (["-name", "guest=vm1,debug-threads=on", "-daemonize", "-pidfile", "{tmp}/q.pid", "-machine",
                 "pc,usb=off", "-chardev", "socket,id=charmonitor,fd={fd},server=on,wait=off",
                 "-mon", "chardev=charmonitor,id=monitor,mode=control", "-no-user-config", "-nodefaults"], "unix"),
}


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _fill(argv: list[str], **values) -> list[str]:
    return [a.format(**values) for a in argv]


@pytest.mark.parametrize("name", sorted(EARLY_PATHS))
def test_nothing_heavy_is_imported_before_the_greeting(tmp_path, name):
    extra, kind = EARLY_PATHS[name]
    sock, port, out = tmp_path / "q.sock", _free_port(), tmp_path / "report.json"
    inherited = None
    fds: tuple[int, ...] = ()
    if "{fd}" in " ".join(extra):
        inherited = socket.socket(socket.AF_UNIX)
        inherited.bind(str(sock))
        inherited.listen(8)
        fds = (inherited.fileno(),)
    argv = ["-S", "-machine", "pc", *_fill(extra, sock=sock, port=port, tmp=tmp_path,
                                           fd=fds[0] if fds else -1)]
    address = str(sock) if kind == "unix" else str(port)
    try:
        r = subprocess.run([sys.executable, "-c", PROBE, kind, address, str(out), *argv],
                           capture_output=True, text=True, timeout=60, pass_fds=fds)
    finally:
        if inherited is not None:
            inherited.close()
    assert r.stderr == ""
    report = ast.literal_eval(out.read_text())
    assert report["greeting"].startswith('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}')
    bad = [m for m in report["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert bad == []
    if "-daemonize" in argv:
        assert r.returncode == 1                      # the daemon reported a failure: nothing served
        assert report["pidfile"] == f"{report['pid']}\n"   # the daemon's pid, before the greeting
    elif "-pidfile" in argv:
        assert r.returncode == 0 and report["pidfile"] == f"{report['pid']}\n"
    else:
        assert r.returncode == 0
    assert not (tmp_path / "q.pid").exists()          # abort() removed the pid file
    if inherited is None:
        assert not sock.exists()                      # ... and the socket it made


@pytest.mark.parametrize("name", sorted(early.GREETING_PROFILES))
def test_early_greeting_is_the_servers_greeting(name):
    from cpuhot.machine.config import LaunchOptions, build_machine
    from cpuhot.qmp.framing import encode
    from cpuhot.qmp.protocol import Monitor
    profile = PROFILES[name]
    version, oob, single = early.GREETING_PROFILES[name]
    assert (version, oob, single) == (profile.version, profile.oob, profile.single_client)
    monitor = Monitor(build_machine(LaunchOptions()).vm, name)
    greeting, single_client = early.greeting_bytes(name)
    assert greeting == encode(monitor.greeting())
    assert single_client is profile.single_client


def test_early_greeting_literal():
    assert early.greeting_bytes("qemu-2.7") == (
        b'{"QMP": {"version": {"qemu": {"micro": 1, "minor": 7, "major": 2}, "package": "cpuhot 0.1.0"}, '
        b'"capabilities": []}}\r\n', True)
    assert early.greeting_bytes("no-such-profile") is None


@pytest.mark.parametrize("argv", [
    ["-qmp", "tcp:localhost:4444"],                    # a host name: never looked up early
    ["-qmp", "tcp::4444"],                             # no address
    ["-qmp", "unix:/x.sock,server=on,wait=on"],
    ["-qmp", "unix:/x.sock", "-qmp", "unix:/x.sock"],  # the same twice: the usual path refuses it
    ["-machine", "pc"],                                # the default socket: the usual path
    ["-version", "-qmp", "unix:/x.sock"],
    ["-machine", "help", "-qmp", "unix:/x.sock"],
    ["-cpu", "help", "-qmp", "unix:/x.sock"],
    ["--help", "-qmp", "unix:/x.sock"],
    ["-no-such-option", "-qmp", "unix:/x.sock"],
    ["-qmp"],                                          # no argument
    ["-chardev", "socket,id=m,path=/x.sock,server=on,wait=off", "-mon", "chardev=m"],  # HMP (readline)
    ["-chardev", "socket,id=m,path=/x.sock,server=on,wait=off", "-mon", "chardev=n,mode=control"],
    ["-chardev", "socket,id=m,path=/x.sock", "-mon", "chardev=m,mode=control"],       # a client chardev
    ["-chardev", "socket,id=m,fd=x,server=on,wait=off", "-mon", "chardev=m,mode=control"],
    ["-chardev", "socket,id=m,path=/x.sock,fd=3,server=on,wait=off", "-mon", "chardev=m,mode=control"],
    ["-chardev", "socket,id=m,path=/a,,b,server=on,wait=off", "-mon", "chardev=m,mode=control"],
    ["-chardev", "socket,id=m,path=/a,server=on,wait=off", "-chardev", "socket,id=m,path=/b,server=on,wait=off",
     "-mon", "chardev=m,mode=control"],                # a duplicate id
    ["-chardev", "pty,id=m", "-mon", "chardev=m,mode=control"],
])
def test_usual_path(argv):
    assert early.plan(argv) is None


def test_plan():
    p = early.plan(["-S", "-qmp", "unix:/a.sock,server=on,wait=off", "--compat", "qemu-7.2",
                    "-qmp", "unix:/b.sock", "-qmp", "tcp:127.0.0.1:4444,server,nowait"])
    assert p is not None
    assert p.listeners == [("unix:/a.sock", "unix", "/a.sock"), ("unix:/b.sock", "unix", "/b.sock"),
                           ("tcp:127.0.0.1:4444", "tcp", ("127.0.0.1", 4444))]
    assert (p.compat, p.daemonize, p.pidfile) == ("qemu-7.2", False, None)
    p = early.plan(["--compat=qemu-5.2", "-qmp", "unix:/a.sock"])
    assert p is not None and (p.listeners, p.compat) == ([("unix:/a.sock", "unix", "/a.sock")], "qemu-5.2")
    p = early.plan(["-daemonize", "-pidfile", "/run/q.pid", "-chardev", "socket,id=charmonitor,fd=23,server=on,wait=off",
                    "-mon", "chardev=charmonitor,id=monitor,mode=control", "--state", "/s.json"])
    assert p is not None
    assert (p.listeners, p.daemonize, p.pidfile) == ([("fd:23", "fd", 23)], True, "/run/q.pid")
    p = early.plan(["-chardev", "socket,id=m,path=rel.sock,server=on,wait=off", "-mon", "m,mode=control"])
    assert p is not None and p.listeners == [(f"unix:{os.path.abspath('rel.sock')}", "unix",
                                              os.path.abspath("rel.sock"))]


def _connect(path, deadline=30.0) -> socket.socket:
    end = time.monotonic() + deadline
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            assert time.monotonic() < end, "no socket"
            time.sleep(0.001)


def _exchange(f, *commands) -> list[dict]:
    for c in commands:
        f.write(json.dumps(c).encode() + b"\n")
    f.flush()
    return [json.loads(f.readline()) for _ in commands]


@pytest.mark.parametrize("compat", ["cpuhot", "qemu-7.2"])
def test_clients_of_the_start_up_are_served(tmp_path, compat):
    path = tmp_path / "q.sock"
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen([script("cpuhot"), "serve", "-S", "-machine", "pc", "--compat", compat,
                             "--trace", str(trace), "-qmp", f"unix:{path},server=on,wait=off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = _connect(path)                 # as early as possible: during start-up
        second = _connect(path)
        f1 = first.makefile("rwb")
        assert json.loads(f1.readline())["QMP"]["version"]["qemu"]["major"] == 7
        assert _exchange(f1, {"execute": "qmp_capabilities"}, {"execute": "query-status"}) == [
            {"return": {}}, {"return": {"status": "prelaunch", "singlestep": False, "running": False}}]
        if compat == "qemu-7.2":               # one client at a time: greeted once the first leaves
            second.settimeout(0.3)
            with pytest.raises(TimeoutError):
                second.recv(1)
            second.settimeout(None)
            f1.close()
            first.close()
        f2 = second.makefile("rwb")
        assert "QMP" in json.loads(f2.readline())
        assert _exchange(f2, {"execute": "qmp_capabilities"}) == [{"return": {}}]
        assert proc.stdout.readline() == f"unix:{path}\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert not path.exists()
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    greetings = [r for r in records if r["dir"] == "out" and r["raw"].startswith('{"QMP"')]
    assert len(greetings) == 2                 # the early greetings are in the trace too


def test_a_refused_command_line_leaves_no_socket(tmp_path):
    path = tmp_path / "q.sock"
    r = subprocess.run([script("cpuhot-system-x86_64"), "-smp", "x", "-qmp", f"unix:{path},server=on,wait=off"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "cpuhot-system-x86_64: Parameter 'smp.cpus' expects integer\n"
    assert not os.path.exists(path)


def test_a_start_up_qemu_aborts_on_dies_of_sigabrt_without_core_or_traceback(tmp_path):
    """QEMU 10.0 aborts on q35 -smp 256 with qemu64 (no x2apic): exit by SIGABRT (-6), after its
    exact lines; cpuhot ends the same way, with no core file even where ``ulimit -c`` allows one
    (core_pattern ``core`` writes into the working directory) and no Python traceback."""
    import resource

    def allow_cores():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    path = tmp_path / "q.sock"
    r = subprocess.run([script("cpuhot-system-x86_64"), "-S", "-accel", "tcg", "-machine", "q35", "-smp", "256", "--compat",
                        "qemu-10.0", "-qmp", f"unix:{path},server=on,wait=off"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, preexec_fn=allow_cores)
    assert (r.returncode, r.stdout) == (-signal.SIGABRT, "")
    assert r.stderr == ("Unexpected error in apic_common_set_id() at hw/intc/apic_common.c:447:\n"
                        "cpuhot-system-x86_64: APIC ID 255 requires x2APIC feature in CPU\n"
                        "Try x2apic=on in -cpu.\n")
    assert sorted(os.listdir(tmp_path)) == []


# -- each path end to end: served as before, refused as before -------------------------------------

def _stale_socket(path) -> None:
    """A socket file nobody listens on: the early path leaves it to the usual path, which replaces it."""
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


def _peer_pid(s: socket.socket) -> int:
    import struct
    return struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]


def test_tcp_monitor_served_from_the_start(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([script("cpuhot-system-x86_64"), "-S", "-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                assert time.monotonic() < end and proc.poll() is None
                time.sleep(0.001)
        f = c.makefile("rwb")
        assert json.loads(f.readline())["QMP"]["version"]["qemu"] == {"micro": 22, "minor": 2, "major": 7}
        assert _exchange(f, {"execute": "qmp_capabilities"}, {"execute": "query-status"}) == [
            {"return": {}}, {"return": {"status": "prelaunch", "singlestep": False, "running": False}}]
        assert proc.stdout.readline() == f"tcp:127.0.0.1:{port}\n"     # printed as before
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_busy_tcp_port_is_reported_as_qemu_reports_it():
    from .helpers import require_qemu
    qemu = require_qemu()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    argv = ["-S", "-nodefaults", "-display", "none", "-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"]
    try:
        assert early.start(argv, "cpuhot-system-x86_64") is None          # the usual path reports it
        seen = []
        for binary in (qemu, script("cpuhot-system-x86_64")):
            r = subprocess.run([binary, *argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            seen.append((r.returncode, r.stdout, r.stderr.replace(os.path.basename(binary), "PROG")))
    finally:
        busy.close()
    assert seen[0] == seen[1]
    assert seen[0][0] == 1


def test_libvirts_client_connects_before_exec_and_is_greeted(tmp_path):
    """libvirt binds and listens, passes the fd and may connect before QEMU runs: that client is greeted
    by the early thread, and its first command answered by the server."""
    path = tmp_path / "monitor.sock"
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(str(path))
    lsock.listen(8)
    first = socket.socket(socket.AF_UNIX)
    first.connect(str(path))                          # in the backlog before the process exists
    fd = lsock.fileno()
    proc = subprocess.Popen([script("cpuhot-system-x86_64"), "-S", "-nodefaults", "-chardev",
                             f"socket,id=charmonitor,fd={fd},server=on,wait=off",
                             "-mon", "chardev=charmonitor,id=monitor,mode=control"],
                            pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lsock.close()
    try:
        f = first.makefile("rwb")
        assert "QMP" in json.loads(f.readline())
        assert _exchange(f, {"execute": "qmp_capabilities"}, {"execute": "query-name"}) == [
            {"return": {}}, {"return": {}}]
        first.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "")          # an inherited monitor is not announced
    assert path.exists()                              # the socket file is libvirt's, not removed


def test_daemonize_greets_from_the_daemon_before_the_parent_returns(tmp_path):
    """As QEMU 5.2, 7.2 and 10.0 do (cpuhot.daemon): the pid file holds the daemon's pid by the time it
    greets, the greeting comes while the original process still waits, which then exits 0."""
    sock, pidfile = tmp_path / "d.sock", tmp_path / "d.pid"
    proc = subprocess.Popen([script("cpuhot-system-x86_64"), "-S", "-nodefaults", "-daemonize", "-pidfile",
                             str(pidfile), "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    daemon = None
    try:
        c = _connect(sock)
        f = c.makefile("rwb")
        assert "QMP" in json.loads(f.readline())
        parent_waiting = proc.poll() is None
        daemon = int(pidfile.read_text())
        assert _peer_pid(c) == daemon != proc.pid     # the daemon listens (and greets), as QEMU's does
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out, err) == (0, "", "")
        assert parent_waiting
        assert _exchange(f, {"execute": "qmp_capabilities"}, {"execute": "query-status"})[1]["return"]["status"] \
            == "prelaunch"
        c.close()
    finally:
        if daemon is not None:
            os.kill(daemon, signal.SIGTERM)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    end = time.monotonic() + 30
    while (sock.exists() or pidfile.exists()) and time.monotonic() < end:
        time.sleep(0.01)
    assert not sock.exists() and not pidfile.exists()


#: refusals after the early greeting (or where the early path defers): the same exit status and
#: stderr as the usual path gives for the same command line (forced there by a stale socket file,
#: which the usual path would replace), and nothing left behind by the early one
REFUSED = {
    "state-file": (["--state", "{tmp}/state.json"], "not json"),
    "smp-pidfile": (["-smp", "1000", "-pidfile", "{tmp}/q.pid"], None),
    "device": (["-device", "no-such-device"], None),
    "daemonize-smp": (["-daemonize", "-pidfile", "{tmp}/q.pid", "-smp", "1000"], None),
    "daemonize-locked-pidfile": (["-daemonize", "-pidfile", "{tmp}/locked.pid"], None),
    "locked-pidfile": (["-pidfile", "{tmp}/locked.pid"], None),
    "chardev-mon-smp": (["-chardev", "socket,id=m,path={tmp}/m{n}.sock,server=on,wait=off",
                         "-mon", "chardev=m,mode=control", "-smp", "1000"], None),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals_are_the_usual_paths(tmp_path, name):
    import fcntl
    extra, state = REFUSED[name]
    if state is not None:
        (tmp_path / "state.json").write_text(state)
    locked = os.open(tmp_path / "locked.pid", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.lockf(locked, fcntl.LOCK_EX | fcntl.LOCK_NB)          # as a running instance holds it
    seen = []
    try:
        for n, route in enumerate(("early", "usual")):
            sock = tmp_path / f"q{n}.sock"
            if route == "usual":
                _stale_socket(sock)
            argv = ["-S", "-nodefaults", *[a.format(tmp=tmp_path, n=n) for a in extra],
                    "-qmp", f"unix:{sock},server=on,wait=off"]
            assert (early.plan(argv) is None) == (route == "usual")
            r = subprocess.run([script("cpuhot-system-x86_64"), *argv], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            seen.append((r.returncode, r.stdout, r.stderr.replace(f"q{n}.sock", "q.sock").replace(f"m{n}.sock", "m.sock")))
            if route == "early":
                assert not sock.exists() and not (tmp_path / "m0.sock").exists()
                assert not (tmp_path / "q.pid").exists()
    finally:
        os.close(locked)
    assert seen[0] == seen[1]
    assert seen[0][0] == 1 and seen[0][2].startswith("cpuhot-system-x86_64: ")


def _recorder():
    import importlib.util
    path = Path(__file__).parents[2] / "tools" / "record_daemonize.py"
    spec = importlib.util.spec_from_file_location("record_daemonize", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DAEMONIZE = json.loads((Path(__file__).parent / "data" / "qemu-daemonize.json").read_text())


@pytest.mark.parametrize("record", DAEMONIZE, ids=lambda r: r["qemu"])
def test_daemonize_looks_like_qemus_to_a_client(record):
    """What tools/record_daemonize.py saw of QEMU 5.2, 7.2 and 10.0, seen the same way of cpuhot with
    that release's profile: pid file first, greeted by the daemon, before the original process exits 0."""
    compat = {"5.2": "qemu-5.2", "7.2": "qemu-7.2", "10.0": "qemu-10.0"}[record["qemu"]]
    seen = _recorder().observe([script("cpuhot-system-x86_64"), "--compat", compat])
    assert seen == {k: v for k, v in record.items() if k != "qemu"}


def test_a_refusal_removes_the_pid_file_it_overwrote_as_qemu_does(tmp_path):
    """QEMU writes the pid file before it checks -smp and removes it when it exits: a stale pid file
    is gone after a refused start-up.  The early path writes it before the greeting, so it does the same."""
    from .helpers import require_qemu
    seen = []
    for n, binary in enumerate((require_qemu(), script("cpuhot-system-x86_64"))):
        pidfile = tmp_path / f"{n}.pid"
        pidfile.write_text("4242\n")                  # left by a process that died
        r = subprocess.run([binary, "-S", "-nodefaults", "-display", "none", "-pidfile", str(pidfile), "-smp", "1000",
                            "-qmp", f"unix:{tmp_path}/{n}.sock,server=on,wait=off"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        seen.append((r.returncode, r.stderr.replace(os.path.basename(binary), "PROG"), pidfile.exists()))
    assert seen[0] == seen[1] == (1, "PROG: Invalid SMP CPUs 1000. The max CPUs supported by machine "
                                     "'pc-i440fx-7.2' is 255\n", False)


@pytest.mark.parametrize("what", ["connected", "closed", "file"])
def test_an_fd_that_is_not_a_listening_socket_takes_the_usual_path_and_stays_open(tmp_path, what):
    keep = []
    if what == "connected":
        a, b = socket.socketpair()
        keep += [a, b]
        fd = a.fileno()
    elif what == "closed":
        s = socket.socket()
        fd = s.fileno()
        s.close()
    else:
        f = open(tmp_path / "f", "w")
        keep.append(f)
        fd = f.fileno()
    argv = ["-S", "-chardev", f"socket,id=m,fd={fd},server=on,wait=off", "-mon", "chardev=m,mode=control"]
    try:
        assert early.plan(argv) is not None                        # it looks like libvirt's ...
        assert early.start(argv, "cpuhot-system-x86_64") is None   # ... but the usual path decides
        if what != "closed":
            os.fstat(fd)                                           # not closed by the early path
    finally:
        for k in keep:
            k.close()


@pytest.mark.parametrize("usual_path", [False, True], ids=["early-path", "usual-path"])
@pytest.mark.parametrize("pidfile,smp", [("locked", "2,maxcpus=1"), ("locked", "1"), ("stale", "2,maxcpus=1")])
def test_pid_file_refusals_as_qemu_orders_them(tmp_path, pidfile, smp, usual_path):
    """QEMU writes -pidfile once its options are read, before its monitors and machine checks:
    a locked pid file wins over a bad -smp and leaves a stale -qmp socket alone, and a stale pid
    file is overwritten and removed when the machine checks refuse.  Both of cpuhot's start-up
    paths (a stale socket file sends it down the usual one) must end the same way."""
    import fcntl
    from .helpers import require_qemu
    qemu = require_qemu()
    held = os.open(tmp_path / "locked.pid", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)          # another QEMU's, as far as they know
    sock = tmp_path / "q.sock"
    seen = []
    try:
        for binary in (qemu, script("cpuhot-system-x86_64")):
            (tmp_path / "stale.pid").write_text("99999\n")
            if usual_path:
                s = socket.socket(socket.AF_UNIX)
                s.bind(str(sock))
                s.close()
            r = subprocess.run([binary, "-S", "-nodefaults", "-display", "none", "-smp", smp,
                                "-pidfile", str(tmp_path / f"{pidfile}.pid"), "-qmp", f"unix:{sock},server=on,wait=off"],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            seen.append((r.returncode, r.stdout, r.stderr.replace(os.path.basename(binary), "PROG"),
                         (tmp_path / "stale.pid").exists(), (tmp_path / "locked.pid").exists()))
            if pidfile == "locked":         # QEMU never got to its monitors: a stale socket stays
                assert sock.exists() == usual_path, binary
            sock.unlink(missing_ok=True)
    finally:
        os.close(held)
    assert seen[1] == seen[0]
    assert seen[0][0] == 1
