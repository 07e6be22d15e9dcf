#!/usr/bin/env python3
"""Record what real QEMUs print and return when a signal ends them (issue 11, part B).

    python tools/record_signals.py [--out tests/tools/data/qemu-signals.json] [--qemu 7.2 5.2 10.0]

For each release and each of SIGTERM, SIGINT and SIGHUP, QEMU (paused, no guest, a QMP socket) is
greeted, then killed by a sender this script starts:

``python``
    a Python child whose ``argv[0]`` is ``cpuhot-test-killer`` (its ``/proc/PID/cmdline`` is what
    QEMU's ``qemu_get_pid_name`` reads);
``shell``
    ``sh -c 'kill -s SIG PID'`` (the shell's builtin, so the sender is ``sh``);
``terminal``
    the terminal's own ^C (signal from the kernel, sender pid 0): QEMU runs on a pty as its
    controlling terminal and ``\\x03`` is written to the master (SIGINT only).

Written for each: QEMU's stderr (exact, with the sender's pid replaced by ``{pid}`` and its name
by ``{name}`` where they show), the sender's pid and name, and the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemus  # noqa: E402

KILLER = "cpuhot-test-killer"
ARGS = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "q35", "-smp", "1,maxcpus=8"]


def _greeted(path: str, proc: subprocess.Popen) -> socket.socket:
    end = time.monotonic() + 30
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            s.makefile("rb").readline()
            s.sendall(b'{"execute": "qmp_capabilities"}\n')
            s.makefile("rb").readline()
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("QEMU did not start")
            time.sleep(0.02)


def one(version: str, sig: int, sender: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="cpuhot-sig-")
    path = os.path.join(tmp, "q.sock")
    argv = [*qemus.launcher(version), *ARGS, "-qmp", f"unix:{path},server=on,wait=off"]
    master = None
    if sender == "terminal":
        master, slave = os.openpty()

        def ctty() -> None:
            import fcntl
            import termios
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=ctty)
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conn = _greeted(path, proc)
        name = None
        if sender == "python":
            k = subprocess.Popen([KILLER, "-c", "import os, sys, time; os.kill(int(sys.argv[1]), int(sys.argv[2])); "
                                  "time.sleep(3)", str(proc.pid), str(sig)], executable=sys.executable)
            kpid, name = k.pid, KILLER
        elif sender == "shell":
            k = subprocess.Popen(["sh", "-c", f"kill -s {signal.Signals(sig).name[3:]} {proc.pid}; sleep 3"])
            kpid, name = k.pid, "sh"
        else:
            assert master is not None
            os.write(master, b"\x03")
            k, kpid = None, 0
        _, err = proc.communicate(timeout=30)
        if k is not None:
            k.kill()
            k.wait()
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master is not None:
            os.close(master)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.rmdir(tmp)
    text = err.decode()
    if kpid:
        text = text.replace(f"from pid {kpid} ({name})", "from pid {pid} ({name})")
    return {"qemu": version, "signal": sig, "sender": sender, "sender_name": name,
            "stderr": text, "returncode": proc.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "tools", "data",
                                                   "qemu-signals.json"))
    ap.add_argument("--qemu", nargs="+", default=["7.2", "5.2", "10.0"])
    ns = ap.parse_args()
    records = []
    for version in ns.qemu:
        why = qemus.missing(version)
        if why:
            print(f"QEMU {version}: {why}", file=sys.stderr)
            continue
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            for sender in ("python", "shell") + (("terminal",) if sig == signal.SIGINT else ()):
                r = one(version, int(sig), sender)
                print(json.dumps(r), flush=True)
                records.append(r)
    with open(ns.out, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
