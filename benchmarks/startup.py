#!/usr/bin/env python3
"""Time from exec to the QMP greeting: cpuhot against QEMU 7.2, side by side, in one run, for
each way of starting that harnesses use.

    python benchmarks/startup.py              # 15 starts of each, interleaved
    python benchmarks/startup.py --runs 31 --json out.json
    python benchmarks/startup.py --paths unix tcp

Both get the same command line: ``-S -nodefaults -display none -accel tcg -machine pc -smp 1,maxcpus=8``
and the monitor of the path measured:

``unix``      ``-qmp unix:PATH,server=on,wait=off``
``tcp``       ``-qmp tcp:127.0.0.1:PORT,server=on,wait=off`` (a port free at the time)
``chardev``   ``-chardev socket,id=mon0,path=PATH,server=on,wait=off -mon chardev=mon0,mode=control``
``fd``        ``-chardev socket,id=mon0,fd=N,server=on,wait=off -mon ...``: libvirt's way, a UNIX socket
              the benchmark binds and listens on and passes as fd N, then connects to at once
``daemonize`` ``-daemonize -pidfile FILE -qmp unix:...``: until the greeting (which both send before
              the original process exits); the daemon is found by its pid file and ended
``state``     ``--state FILE -qmp unix:...`` (a fresh state file each time; cpuhot only: its QEMU
              column is QEMU's ``unix``)

The clock starts just before ``fork``/``exec`` and stops when the first line (the greeting) has been
read from the socket, which the same client polls for every 0.5 ms.  Starts alternate between the
programs so that the machine's load hits them alike.  Prints the median, minimum and maximum of each
and the ratio of the medians to QEMU's (target: at most 2.0 for every path).

cpuhot is started as a drop-in binary is (``cpuhot-system-x86_64`` from this interpreter's
environment, what libvirt execs) and, for ``unix``, also as ``python -m cpuhot serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 2.0
ARGS = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "pc", "-smp", "1,maxcpus=8"]
PATHS = ("unix", "tcp", "chardev", "fd", "daemonize", "state")


def _free_port() -> int:
    s = socket.socket(socket.AF_INET)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def time_to_greeting(program: list[str], path: str, tmp: str, n: int, timeout: float = 20.0) -> float:
    """Seconds from exec to the greeting line of ``program`` started the ``path`` way; the
    process (or its daemon) is terminated afterwards."""
    sock_path = os.path.join(tmp, f"s{n}.sock")
    pidfile = os.path.join(tmp, f"p{n}.pid")
    address: str | tuple[str, int] = sock_path
    pass_fds: tuple[int, ...] = ()
    inherited = None
    if path == "tcp":
        address = ("127.0.0.1", _free_port())
        extra = ["-qmp", f"tcp:127.0.0.1:{address[1]},server=on,wait=off"]
    elif path == "chardev":
        extra = ["-chardev", f"socket,id=mon0,path={sock_path},server=on,wait=off", "-mon", "chardev=mon0,mode=control"]
    elif path == "fd":
        inherited = socket.socket(socket.AF_UNIX)
        inherited.bind(sock_path)
        inherited.listen(64)
        pass_fds = (inherited.fileno(),)
        extra = ["-chardev", f"socket,id=mon0,fd={inherited.fileno()},server=on,wait=off",
                 "-mon", "chardev=mon0,mode=control"]
    elif path == "daemonize":
        extra = ["-daemonize", "-pidfile", pidfile, "-qmp", f"unix:{sock_path},server=on,wait=off"]
    elif path == "state" and "qemu" not in os.path.basename(program[0]):
        extra = ["--state", os.path.join(tmp, f"st{n}.json"), "-qmp", f"unix:{sock_path},server=on,wait=off"]
    else:
        extra = ["-qmp", f"unix:{sock_path},server=on,wait=off"]
    t0 = time.perf_counter()
    p = subprocess.Popen([*program, *ARGS, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, pass_fds=pass_fds)
    if inherited is not None:
        inherited.close()                 # the child has it; the client connects to its path
    try:
        deadline = t0 + timeout
        while True:
            s = socket.socket(socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX)
            try:
                s.connect(address)
                f = s.makefile("rb")
                line = f.readline()
                elapsed = time.perf_counter() - t0
                f.close()
                if not line.startswith(b'{"QMP"'):
                    raise RuntimeError(f"{program[0]} ({path}): not a greeting: {line[:80]!r}")
                return elapsed
            except (FileNotFoundError, ConnectionRefusedError):
                if p.poll() is not None and path != "daemonize":
                    raise RuntimeError(f"{program[0]} exited with {p.returncode} before greeting") from None
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{program[0]} ({path}): no greeting within {timeout} s") from None
                time.sleep(0.0005)
            finally:
                s.close()
    finally:
        if path == "daemonize":
            try:
                p.wait(timeout=timeout)      # the original process exits once the daemon serves
                with open(pidfile) as f:
                    daemon = int(f.read())
                os.kill(daemon, signal.SIGTERM)
                end = time.monotonic() + 10
                while os.path.exists(pidfile) and time.monotonic() < end:
                    time.sleep(0.005)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for leftover in (sock_path, pidfile, os.path.join(tmp, f"st{n}.json")):
            _remove(leftover)


def candidates() -> dict[str, list[str]]:
    bindir = os.path.dirname(sys.executable)
    dropin = os.path.join(bindir, "cpuhot-system-x86_64")
    out: dict[str, list[str]] = {}
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        out["qemu-7.2"] = [qemu]
    if os.path.exists(dropin):
        out["cpuhot-system-x86_64"] = [dropin]
    out["python -m cpuhot serve"] = [sys.executable, "-m", "cpuhot", "serve"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="starts of each (default 15, at most 101)")
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which start-ups (default all)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ns = ap.parse_args()
    runs = max(1, min(ns.runs, 101))
    programs = candidates()
    # (path, program name): the drop-in for every path, python -m only for the plain one
    rows = [(path, name) for path in ns.paths for name in programs
            if name != "python -m cpuhot serve" or path == "unix"]
    times: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    counter = 0
    with tempfile.TemporaryDirectory(prefix="cpuhot-startup-") as tmp:
        for path, name in rows:                 # one warm-up each (page cache, .pyc files)
            counter += 1
            time_to_greeting(programs[name], path, tmp, counter)
        for _ in range(runs):
            for row in rows:
                counter += 1
                times[row].append(time_to_greeting(programs[row[1]], row[0], tmp, counter))
    medians = {row: statistics.median(t) for row, t in times.items()}
    print(f"exec -> QMP greeting, machine pc, {runs} starts each (ms)")
    print(f"{'path':10} {'':24} {'median':>8} {'min':>8} {'max':>8} {'x QEMU':>8}")
    report: dict[str, dict[str, dict[str, float | None]]] = {}
    ok = True
    verdicts = []
    for (path, name), t in times.items():
        qemu = medians.get((path, "qemu-7.2"))
        ratio = medians[(path, name)] / qemu if qemu else None
        report.setdefault(path, {})[name] = {"median_ms": medians[(path, name)] * 1e3, "min_ms": min(t) * 1e3,
                                             "max_ms": max(t) * 1e3, "ratio": ratio}
        r = f"{ratio:8.2f}" if ratio is not None else f"{'-':>8}"
        print(f"{path:10} {name:24} {medians[(path, name)]*1e3:8.1f} {min(t)*1e3:8.1f} {max(t)*1e3:8.1f} {r}")
        if name != "qemu-7.2" and ratio is not None:
            meets = ratio <= TARGET
            ok = ok and meets
            verdicts.append(f"target {path} {name}: at most {TARGET}x QEMU: {'met' if meets else 'NOT met'}")
    if "qemu-7.2" not in programs:
        print("qemu-system-x86_64 not found: no ratio")
    print("\n".join(verdicts))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
