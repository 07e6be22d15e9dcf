"""Sockets: private permissions, stale sockets replaced, live ones never stolen, loopback TCP,
no program execution through migration URIs."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from cpuhot.launch import terminate

from .helpers import Client


def serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    terminate(proc)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, err


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="cpuhot-sock-") as d:
        yield d


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_socket_is_private(tmp):
    path = os.path.join(tmp, "q.sock")
    proc = serve("-qmp", f"unix:{path},server=on,wait=off")
    try:
        assert proc.stdout.readline().strip() == f"unix:{path}"
        assert stat.S_ISSOCK(os.lstat(path).st_mode) and mode(path) == 0o600
        assert Client(path).ok("query-status")["running"] is True
    finally:
        code, _ = stop(proc)
    assert code == 0 and not os.path.exists(path), "the socket is removed on SIGTERM"


def test_default_socket_lives_in_a_private_directory(tmp):
    runtime = os.path.join(tmp, "run")
    os.makedirs(os.path.join(runtime, "cpuhot"), mode=0o755)     # even a too-open one is tightened
    os.chmod(os.path.join(runtime, "cpuhot"), 0o755)
    proc = serve(env={"XDG_RUNTIME_DIR": runtime})
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith(f"unix:{runtime}/cpuhot/qmp-"), line
        path = line[5:]
        assert mode(os.path.dirname(path)) == 0o700
        assert mode(path) == 0o600
    finally:
        stop(proc)


def test_stale_socket_is_replaced(tmp):
    path = os.path.join(tmp, "q.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)          # a socket file nobody listens on, as a killed server leaves it
    dead.close()
    proc = serve("-qmp", f"unix:{path},server=on,wait=off")
    try:
        assert proc.stdout.readline().strip() == f"unix:{path}"
        assert Client(path).ok("query-status")["running"] is True
    finally:
        assert stop(proc)[0] == 0


def test_live_socket_is_not_stolen(tmp):
    path = os.path.join(tmp, "q.sock")
    first = serve("-qmp", f"unix:{path},server=on,wait=off")
    try:
        assert first.stdout.readline().strip() == f"unix:{path}"
        second = serve("-qmp", f"unix:{path},server=on,wait=off")
        code, err = stop_when_done(second)
        assert code == 1
        assert err.strip() == f"cpuhot: -qmp unix:{path},server=on,wait=off: {path} is in use by a running server"
        c = Client(path)
        assert c.ok("query-status")["running"] is True          # the first one still serves
        c.close()
    finally:
        assert stop(first)[0] == 0


@pytest.mark.parametrize("kind", ["file", "symlink", "directory"])
def test_something_else_at_the_path_is_left_alone(tmp, kind):
    path = os.path.join(tmp, "q.sock")
    target = os.path.join(tmp, "precious")
    with open(target, "w") as f:
        f.write("keep me")
    if kind == "file":
        os.link(target, path)
    elif kind == "symlink":
        os.symlink(target, path)
    else:
        os.mkdir(path)
    code, err = stop_when_done(serve("-qmp", f"unix:{path},server=on,wait=off"))
    assert code == 1 and "exists and is not a socket" in err, err
    assert open(target).read() == "keep me" and os.path.lexists(path)


def test_tcp_listens_on_loopback_unless_told_otherwise():
    proc = serve("-qmp", "tcp::0,server=on,wait=off")
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("tcp:127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert b'"QMP"' in s.makefile("rb").readline()
    finally:
        stop(proc)
    proc = serve("-qmp", "tcp:0.0.0.0:0,server=on,wait=off")          # an explicit host is obeyed
    try:
        assert proc.stdout.readline().strip().startswith("tcp:0.0.0.0:")
    finally:
        stop(proc)


def test_exec_migration_uris_are_refused(tmp):
    marker = os.path.join(tmp, "ran")
    path = os.path.join(tmp, "q.sock")
    proc = serve("-qmp", f"unix:{path},server=on,wait=off")
    try:
        proc.stdout.readline()
        c = Client(path)
        reply = c.call({"execute": "migrate", "arguments": {"uri": f"exec:touch {marker}"}})
        assert reply["error"]["class"] == "GenericError"
        assert "'exec:' migration URIs are refused" in reply["error"]["desc"]
        assert c.ok("query-migrate") == {} or c.ok("query-migrate").get("status") != "active"
        c.close()
    finally:
        stop(proc)
    # on the command line too: refused with a message, exit status 1, nothing run
    proc = serve("-incoming", f"exec:touch {marker}", "-qmp", f"unix:{path},server=on,wait=off")
    code, err = stop_when_done(proc)
    assert code == 1
    assert "-incoming exec:touch" in err and "'exec:' migration URIs are refused" in err
    assert not os.path.exists(marker) and not os.path.exists(path)


def test_exec_migrate_incoming_is_refused(tmp):
    marker = os.path.join(tmp, "ran")
    path = os.path.join(tmp, "q.sock")
    proc = serve("-incoming", "defer", "-qmp", f"unix:{path},server=on,wait=off")
    try:
        proc.stdout.readline()
        c = Client(path)
        reply = c.call({"execute": "migrate-incoming", "arguments": {"uri": f"exec:touch {marker}"}})
        assert "'exec:' migration URIs are refused" in reply["error"]["desc"]
        c.close()
    finally:
        stop(proc)
    assert not os.path.exists(marker)


def stop_when_done(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return stop(proc)
