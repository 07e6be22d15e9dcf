"""--trace FILE records every QMP exchange; `python -m cpuhot replay` replays the clients' side against
any QMP server.  The proof: a trace recorded from cpuhot --compat qemu-7.2 replays against the real
QEMU 7.2 (same argv) with no difference."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from cpuhot.client import QMPClient, QMPError
from cpuhot.trace import load, trace_argv

from .helpers import Server, require_qemu

ARGV = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "q35", "-smp", "1,maxcpus=4",
        "-name", "guest=t1", "-uuid", "12345678-1234-1234-1234-123456789abc"]


def session(path: str) -> list[bytes]:
    """What a client does: queries, a plug, refusals, HMP, bad input; then a second client."""
    sent = []
    q = QMPClient(f"unix:{path}")
    for cmd in ("query-status", "query-name", "query-uuid", "query-version", "query-hotpluggable-cpus",
                "query-cpus-fast"):
        q.execute(cmd)
    free = q.execute("query-hotpluggable-cpus")[0]
    q.execute("device_add", {"driver": free["type"], "id": "vcpu3", **free["props"]})
    for cmd, args in (("device_add", {"driver": free["type"], "id": "vcpu3", **free["props"]}),
                      ("device_del", {"id": "vcpu3"}), ("device_add", {"id": "x"}), ("nosuch", None),
                      ("qom-get", {"path": "/machine/peripheral/vcpu3", "property": "apic-id"})):
        try:
            q.execute(cmd, args)
        except QMPError:
            pass
    q.hmp("info hotpluggable-cpus")
    q.hmp("info cpus")
    raw = b'{"execute": "query-status", "id": "raw-1"}\n{"execute" "x"}\n'
    q.sock.sendall(raw)
    sent.append(raw)
    assert q.reader.read_line(10) is not None and q.reader.read_line(10) is not None
    q.execute("query-cpus-fast")
    q.close()
    time.sleep(0.05)
    with QMPClient(f"unix:{path}") as q2:         # QEMU serves one client at a time: the next one
        q2.execute("query-hotpluggable-cpus")
    return sent


@pytest.fixture
def recorded(tmp_path):
    trace = tmp_path / "session.jsonl"
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", *ARGV, "--compat", "qemu-7.2", "--trace", str(trace)])
    try:
        with srv.client():
            pass
        srv_path = srv.path
        session(srv_path)
    finally:
        srv.stop()
    return trace


def replay(trace, address, *extra):
    return subprocess.run([sys.executable, "-m", "cpuhot", "replay", str(trace), "--against", address, *extra],
                          capture_output=True, text=True, timeout=60)


def test_trace_format(recorded):
    records = load(str(recorded))
    assert records[0]["dir"] == "meta" and trace_argv(records)[:len(ARGV)] == ARGV
    assert {r["dir"] for r in records} == {"meta", "open", "in", "out", "close"}
    ts = [r["t"] for r in records]
    assert ts == sorted(ts)
    clients = {r["client"] for r in records if r["dir"] != "meta"}
    assert clients == {0, 1, 2}            # the fixture's probe, the session, the second client
    for r in records:
        if r["dir"] == "out":
            json.loads(r["raw"])           # each message the server wrote, as written
    sent = b"".join(r["raw"].encode() for r in records if r["dir"] == "in" and r["client"] == 1)
    assert b'{"execute" "x"}\n' in sent and sent.count(b'"execute": "device_add"') == 3
    replies = [json.loads(r["raw"]) for r in records if r["dir"] == "out" and r["client"] == 1]
    assert {"class": "GenericError", "desc": "Duplicate device ID 'vcpu3'"} in [m.get("error") for m in replies]
    assert any(m.get("id") == "raw-1" for m in replies)


def test_replay_against_cpuhot_itself(recorded):
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", *ARGV, "--compat", "qemu-7.2"])
    try:
        srv.client().close()          # an extra client the trace does not have: harmless, it came first
        r = replay(recorded, f"unix:{srv.path}")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("no difference")


def test_replay_against_real_qemu(recorded):
    """The trace recorded from cpuhot --compat qemu-7.2, replayed against QEMU 7.2 with the same argv."""
    qemu = require_qemu()
    srv = Server(qemu, ARGV)
    try:
        srv.client().close()
        r = replay(recorded, f"unix:{srv.path}")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    compared = int(r.stdout.split("replay: ")[1].split(" messages")[0])
    assert compared == sum(1 for rec in load(str(recorded)) if rec["dir"] == "out") >= 25
    assert "no difference" in r.stdout


def test_replay_reports_differences(recorded):
    other = [a if a != "1,maxcpus=4" else "1,maxcpus=8" for a in ARGV]
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", *other, "--compat", "qemu-7.2"])
    try:
        srv.client().close()
        r = replay(recorded, f"unix:{srv.path}")
    finally:
        srv.stop()
    assert r.returncode == 1
    assert "--- step" in r.stdout and "after sending:" in r.stdout
    assert '+        "core-id": 7,' in r.stdout           # the slots the trace's VM did not have
    assert '"thread-id": 0' in r.stdout                   # topology ids are compared, not masked
    assert "difference(s)" in r.stdout.splitlines()[-1]


def test_replay_over_tcp_with_events(tmp_path):
    """A cooperative guest: device_del, then DEVICE_DELETED after a delay; replayed over TCP."""
    trace = tmp_path / "events.jsonl"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    argv = ["-machine", "pc", "-smp", "1,maxcpus=2", "--guest", "cooperative:0.05"]
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", *argv, "--trace", str(trace)])
    try:
        with srv.client() as q:
            free = q.execute("query-hotpluggable-cpus")[0]
            q.execute("device_add", {"driver": free["type"], "id": "cpu1", **free["props"]})
            q.execute("device_del", {"id": "cpu1"})
            q.wait_event("DEVICE_DELETED", lambda e: e["data"].get("device") == "cpu1", timeout=5)
            time.sleep(0.1)
            assert len(q.execute("query-cpus-fast")) == 1
    finally:
        srv.stop()
    events = [json.loads(r["raw"])["event"] for r in load(str(trace)) if r["dir"] == "out" and '"event"' in r["raw"]]
    assert "DEVICE_DELETED" in events
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", *argv, "-qmp", f"tcp:127.0.0.1:{port}"])
    try:
        srv.client().close()
        r = replay(trace, f"tcp:127.0.0.1:{port}")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stdout
    # the same trace against a guest that never ejects: the missing events are reported
    srv = Server(sys.executable, ["-m", "cpuhot", "serve", "-machine", "pc", "-smp", "1,maxcpus=2",
                                  "--guest", "unresponsive"])
    try:
        srv.client().close()
        r = replay(trace, f"unix:{srv.path}", "--timeout", "0.5")
    finally:
        srv.stop()
    assert r.returncode == 1 and "DEVICE_DELETED" in r.stdout


def test_replay_usage_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = replay(bad, "unix:/nonexistent")
    assert r.returncode == 2 and "not a JSON line" in r.stderr
    good = tmp_path / "empty.jsonl"
    good.write_text(json.dumps({"t": 0, "dir": "open", "client": 0}) + "\n")
    r = replay(good, f"unix:{tmp_path}/nobody.sock", "--timeout", "0.2")
    assert r.returncode == 2
