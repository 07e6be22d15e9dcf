"""QEMU's signal message: ``terminating on signal N from pid P (NAME)``, or without the sender.

The expected texts and exit statuses are the ones recorded from real QEMU 5.2, 7.2 and 10.0 by
``tools/record_signals.py`` (``data/qemu-signals.json``), each killed by a sender of the same kind
started the same way here: a Python child whose ``argv[0]`` the test chooses, a shell's ``kill``,
and the terminal's ^C (no sender pid).  cpuhot runs with the profile of each release.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from cpuhot.cli import kill_report, qemu_pid_name
from cpuhot.client import QMPClient

from .helpers import script, wait_for

RECORDED = json.loads((Path(__file__).parent / "data" / "qemu-signals.json").read_text())
KILLER = "cpuhot-test-killer"          # the sender's argv[0], as in the recording
PROFILE = {"5.2": "qemu-5.2", "7.2": "qemu-7.2", "10.0": "qemu-10.0"}


def _case_id(r: dict) -> str:
    return f"{r['qemu']}-{signal.Signals(r['signal']).name}-{r['sender']}"


def test_the_recording_covers_every_release_signal_and_sender():
    cases = {(r["qemu"], r["signal"], r["sender"]) for r in RECORDED}
    for version in PROFILE:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            assert (version, int(sig), "python") in cases and (version, int(sig), "shell") in cases
        assert (version, int(signal.SIGINT), "terminal") in cases


def _start(tmp_path, compat: str, *, tty: bool):
    sock = tmp_path / "q.sock"
    argv = [script("cpuhot-system-x86_64"), "-S", "-nodefaults", "--compat", compat,
            "-qmp", f"unix:{sock},server=on,wait=off"]
    master = None
    if tty:
        master, slave = os.openpty()

        def ctty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=ctty)
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert wait_for(sock.exists, 30)
    return proc, sock, master


@pytest.mark.parametrize("record", RECORDED, ids=_case_id)
def test_signal_message_is_qemus(tmp_path, record):
    sig, sender = record["signal"], record["sender"]
    proc, sock, master = _start(tmp_path, PROFILE[record["qemu"]], tty=sender == "terminal")
    killer = None
    try:
        c = QMPClient(f"unix:{sock}", timeout=20)
        assert c.execute("query-status")["status"] == "prelaunch"      # serving: past the start-up
        if sender == "python":
            killer = subprocess.Popen([KILLER, "-c", "import os, sys, time; os.kill(int(sys.argv[1]), int(sys.argv[2])); "
                                       "time.sleep(30)", str(proc.pid), str(sig)], executable=sys.executable)
            pid, name = killer.pid, KILLER
        elif sender == "shell":
            killer = subprocess.Popen(["sh", "-c", f"kill -s {signal.Signals(sig).name[3:]} {proc.pid}; sleep 30"])
            pid, name = killer.pid, "sh"
        else:
            assert master is not None
            os.write(master, b"\x03")
            pid, name = 0, None
        _, err = proc.communicate(timeout=30)
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if killer is not None:
            killer.kill()
            killer.wait()
        if master is not None:
            os.close(master)
    assert name == record["sender_name"]
    expected = record["stderr"].replace("qemu-system-x86_64: ", "cpuhot-system-x86_64: ")
    if pid:
        expected = expected.replace("{pid}", str(pid)).replace("{name}", name)
    assert type(err) is bytes and err == expected.encode()         # byte for byte
    assert type(proc.returncode) is int and proc.returncode == record["returncode"]
    assert not sock.exists()


def test_the_sender_gets_shutdown_first(tmp_path):
    """The SHUTDOWN event (guest false, host-signal) still reaches a client before the socket closes."""
    proc, sock, _ = _start(tmp_path, "qemu-7.2", tty=False)
    try:
        c = QMPClient(f"unix:{sock}", timeout=20)
        c.execute("query-status")
        os.kill(proc.pid, signal.SIGHUP)
        end = time.monotonic() + 20
        while not c.events and time.monotonic() < end:
            try:
                c.execute("query-status", timeout=0.5)
            except Exception:
                break
        _, err = proc.communicate(timeout=30)
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err.decode() == f"cpuhot-system-x86_64: terminating on signal 1 from pid {os.getpid()} ({qemu_pid_name(os.getpid())})\n"
    assert proc.returncode == 0
    if c.events:
        assert (c.events[0]["event"], c.events[0]["data"]) == ("SHUTDOWN", {"guest": False, "reason": "host-signal"})


def test_pid_name_is_argv0_of_proc_cmdline():
    with open("/proc/self/cmdline", "rb") as f:
        argv0 = f.read().split(b"\0")[0].decode()
    name = qemu_pid_name(os.getpid())
    assert type(name) is str and name == argv0
    child = subprocess.Popen(["x y", "-c", "import time; time.sleep(30)"], executable=sys.executable)
    try:
        assert wait_for(lambda: qemu_pid_name(child.pid) == "x y", 10)     # a space stays: only NUL ends it
    finally:
        child.kill()
        child.wait()
    assert qemu_pid_name(child.pid) is None                              # reaped: no /proc entry


def test_kill_report_texts():
    # softmmu/runstate.c qemu_kill_report (the same in 5.2, 7.2 and 10.0): no sender -> the short
    # form; a sender whose name cannot be read -> "<unknown process>"
    assert kill_report("p", 15, 0, None) == "p: terminating on signal 15\n"
    assert kill_report("p", 1, 42, "sh") == "p: terminating on signal 1 from pid 42 (sh)\n"
    assert kill_report("p", 2, 42, None) == "p: terminating on signal 2 from pid 42 (<unknown process>)\n"
    assert kill_report("p", 2, 42, "") == "p: terminating on signal 2 from pid 42 ()\n"


def test_a_second_signal_is_not_reported_again(tmp_path):
    proc, sock, _ = _start(tmp_path, "qemu-7.2", tty=False)
    try:
        c = QMPClient(f"unix:{sock}", timeout=20)
        c.execute("query-status")
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpuhot-system-x86_64: terminating on signal ")
    assert proc.returncode == 0
