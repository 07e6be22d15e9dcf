#!/usr/bin/env python3
"""Time from exec to the QMP greeting: cpuhot against QEMU 7.2, side by side, in one run.

    python benchmarks/startup.py              # 15 starts of each, interleaved
    python benchmarks/startup.py --runs 31 --json out.json

Both get the same command line (``-S -nodefaults -display none -accel tcg -machine pc -smp 1,maxcpus=8
-qmp unix:PATH,server=on,wait=off``); the clock starts just before ``fork``/``exec`` and stops when the
first line (the greeting) has been read from the socket, which the same client polls for every
0.5 ms.  Starts alternate between the two so that the machine's load hits both alike.  Prints the
median, minimum and maximum of each, and the ratio of the medians (target: at most 2.0).

cpuhot is started as a drop-in binary is (``cpuhot-system-x86_64`` from this interpreter's
environment, what libvirt execs) and as ``python -m cpuhot serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 2.0
ARGS = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "pc", "-smp", "1,maxcpus=8"]


def time_to_greeting(argv: list[str], path: str, timeout: float = 20.0) -> float:
    """Seconds from exec to the greeting line; the process is terminated afterwards."""
    t0 = time.perf_counter()
    p = subprocess.Popen([*argv, "-qmp", f"unix:{path},server=on,wait=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = t0 + timeout
        while True:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                f = s.makefile("rb")
                line = f.readline()
                elapsed = time.perf_counter() - t0
                f.close()
                if not line.startswith(b'{"QMP"'):
                    raise RuntimeError(f"{argv[0]}: not a greeting: {line[:80]!r}")
                return elapsed
            except (FileNotFoundError, ConnectionRefusedError):
                if p.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {p.returncode} before greeting") from None
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{argv[0]}: no greeting within {timeout} s") from None
                time.sleep(0.0005)
            finally:
                s.close()
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def candidates() -> dict[str, list[str]]:
    bindir = os.path.dirname(sys.executable)
    dropin = os.path.join(bindir, "cpuhot-system-x86_64")
    out: dict[str, list[str]] = {}
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        out["qemu-7.2"] = [qemu, *ARGS]
    if os.path.exists(dropin):
        out["cpuhot-system-x86_64"] = [dropin, *ARGS]
    out["python -m cpuhot serve"] = [sys.executable, "-m", "cpuhot", "serve", *ARGS]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="starts of each (default 15, at most 101)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ns = ap.parse_args()
    runs = max(1, min(ns.runs, 101))
    targets = candidates()
    times: dict[str, list[float]] = {name: [] for name in targets}
    with tempfile.TemporaryDirectory(prefix="cpuhot-startup-") as tmp:
        for name, argv in targets.items():        # one warm-up each (page cache, .pyc files)
            time_to_greeting(argv, os.path.join(tmp, "warm.sock"))
        for n in range(runs):
            for name, argv in targets.items():
                times[name].append(time_to_greeting(argv, os.path.join(tmp, f"s{n}.sock")))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"exec -> QMP greeting, machine pc, {runs} starts each (ms)")
    print(f"{'':26} {'median':>8} {'min':>8} {'max':>8} {'x QEMU':>8}")
    qemu = medians.get("qemu-7.2")
    report: dict[str, dict[str, float | None]] = {}
    for name, t in times.items():
        ratio = medians[name] / qemu if qemu else None
        report[name] = {"median_ms": medians[name] * 1e3, "min_ms": min(t) * 1e3, "max_ms": max(t) * 1e3,
                        "ratio": ratio}
        r = f"{ratio:8.2f}" if ratio is not None else f"{'-':>8}"
        print(f"{name:26} {medians[name]*1e3:8.1f} {min(t)*1e3:8.1f} {max(t)*1e3:8.1f} {r}")
    ok = True
    if qemu:
        for name in targets:
            if name != "qemu-7.2":
                meets = medians[name] / qemu <= TARGET
                ok = ok and meets
                print(f"target {name}: at most {TARGET}x QEMU: {'met' if meets else 'NOT met'}")
    else:
        print("qemu-system-x86_64 not found: no ratio")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
