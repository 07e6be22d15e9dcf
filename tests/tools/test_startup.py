"""Fast start (cpuhot.early): the greeting is sent before the VM model and asyncio are imported.

Not timed (benchmarks/startup.py measures against QEMU): these tests check what the design relies
on — what is imported before the greeting, that the early greeting is byte for byte the server's,
and that clients who connect during start-up are served as if the server had greeted them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cpuhot import early
from cpuhot.profiles import PROFILES

from .helpers import script

#: modules the greeting must not wait for (written from the design, not from sys.modules)
HEAVY = ("asyncio", "pydantic", "cpuhot.machine", "cpuhot.qmp", "cpuhot.cli", "cpuhot.dropin",
         "cpuhot.launch", "cpuhot.profiles", "dataclasses", "json", "socket", "selectors", "threading", "enum")

PROBE = r"""
import sys
from cpuhot import early
path = sys.argv[1]
g = early.start(["serve", "-S", "-machine", "pc", "-qmp", f"unix:{path},server=on,wait=off"], "cpuhot")
assert g is not None, "the early path was not taken"
loaded = sorted(sys.modules)            # all the greeting path imported (the client below imports more)
import socket
c = socket.socket(socket.AF_UNIX)
c.connect(path)
line = c.makefile("rb").readline()
print(line.decode().rstrip())
print(" ".join(loaded))
g.abort()
"""


def test_nothing_heavy_is_imported_before_the_greeting(tmp_path):
    path = tmp_path / "q.sock"
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}')
    loaded = out[1].split()
    bad = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert bad == []
    assert not path.exists()                    # abort() removed the socket


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
    ["-qmp", "tcp:127.0.0.1:4444"],                    # TCP: the usual path
    ["-daemonize", "-qmp", "unix:/x.sock"],
    ["-pidfile", "p", "-qmp", "unix:/x.sock"],
    ["-qmp", "unix:/x.sock,server=on,wait=on"],
    ["-machine", "pc"],                                # the default socket: the usual path
    ["-version", "-qmp", "unix:/x.sock"],
])
def test_usual_path(argv):
    assert early.plan(argv) is None


def test_plan():
    assert early.plan(["-S", "-qmp", "unix:/a.sock,server=on,wait=off", "--compat", "qemu-7.2",
                       "-qmp", "unix:/b.sock"]) == (["/a.sock", "/b.sock"], "qemu-7.2")
    assert early.plan(["--compat=qemu-5.2", "-qmp", "unix:/a.sock"]) == (["/a.sock"], "qemu-5.2")


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
