#!/usr/bin/env python3
"""Record what a client sees of a daemonizing QEMU (issue 11): ``-daemonize -pidfile FILE -qmp unix:...``.

    python tools/record_daemonize.py [--out tests/tools/data/qemu-daemonize.json] [--qemu 7.2 5.2 10.0]

A client polls for the socket from before exec; recorded for each release: whether the pid file
already held the daemon's pid when the socket first accepted, whether the greeting arrived while the
original process was still waiting, whether the greeting came from the daemon itself (SO_PEERCRED),
and the original process's exit status, stdout and stderr.  ``tests/tools/test_startup.py`` checks
cpuhot against these.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemus  # noqa: E402

ARGS = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "pc", "-smp", "1,maxcpus=8"]


def observe(argv: list[str], timeout: float = 30.0) -> dict:
    """Start ``argv`` + ``-daemonize -pidfile -qmp`` and watch it as a client does."""
    tmp = tempfile.mkdtemp(prefix="cpuhot-daemonize-")
    sock, pidfile = os.path.join(tmp, "d.sock"), os.path.join(tmp, "d.pid")
    seen: dict = {}

    def client() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                time.sleep(0.0002)
                continue
            try:
                text = open(pidfile).read() if os.path.exists(pidfile) else None
                seen["pidfile_at_connect"] = text
                seen["greeting"] = s.makefile("rb").readline().startswith(b'{"QMP"')
                seen["parent_waiting_at_greeting"] = proc.poll() is None
                seen["peer"] = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            finally:
                s.close()
            return

    proc = subprocess.Popen([*argv, *ARGS, "-daemonize", "-pidfile", pidfile, "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    th = threading.Thread(target=client)
    th.start()
    out, err = proc.communicate(timeout=timeout)
    th.join(timeout)
    daemon = int(open(pidfile).read())
    os.kill(daemon, 15)
    end = time.monotonic() + timeout
    while os.path.exists(pidfile) and time.monotonic() < end:
        time.sleep(0.01)
    for leftover in (sock, pidfile):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
    os.rmdir(tmp)
    return {"returncode": proc.returncode, "stdout": out, "stderr": err,
            "pidfile_held_the_daemon_at_connect": seen.get("pidfile_at_connect") == f"{daemon}\n",
            "greeted": seen.get("greeting"), "greeting_before_the_parent_exits": seen.get("parent_waiting_at_greeting"),
            "greeted_by_the_daemon": seen.get("peer") == daemon != proc.pid}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "tools", "data",
                                                   "qemu-daemonize.json"))
    ap.add_argument("--qemu", nargs="+", default=["7.2", "5.2", "10.0"])
    ns = ap.parse_args()
    records = []
    for version in ns.qemu:
        why = qemus.missing(version)
        if why:
            print(f"QEMU {version}: {why}", file=sys.stderr)
            continue
        r = {"qemu": version, **observe(qemus.launcher(version))}
        print(json.dumps(r), flush=True)
        records.append(r)
    with open(ns.out, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
