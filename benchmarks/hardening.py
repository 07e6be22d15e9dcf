#!/usr/bin/env python3
"""Issue 11's figures, cpuhot next to QEMU 7.2 in the same run.

    python benchmarks/hardening.py            # device_add with 5,000 .. 80,000 properties
    python benchmarks/hardening.py --no-qemu

For each size: the round trip of one ``device_add`` carrying that many (unknown) properties,
which both refuse with ``Property '...' not found``.  The target (issue 11, item 1) is that
cpuhot's time grows linearly and stays under QEMU's (QEMU 7.2 answered 80,000 keys in under 3 s;
cpuhot took about 30 s before the fix).  Also the RSS of each after the largest request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpbench import Target, qemu_binary  # noqa: E402

SIZES = (5_000, 20_000, 80_000)


def device_add_seconds(target: Target, n: int) -> float:
    args = {"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": 1, "thread-id": 0}
    args.update({f"x{i}": "1" for i in range(n)})
    data = json.dumps({"execute": "device_add", "arguments": args}).encode()
    start = time.perf_counter()
    reply = json.loads(target.client.call_raw(data))
    elapsed = time.perf_counter() - start
    assert "error" in reply and "not found" in reply["error"]["desc"], reply
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--no-qemu", action="store_true")
    opts = ap.parse_args()
    kinds = ["cpuhot"] + ([] if opts.no_qemu or not qemu_binary("x86_64") else ["qemu"])
    results: dict[str, dict[int, float]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cpuhot-bench-") as tmp:
        for kind in kinds:
            extra = ["-accel", "tcg"] if kind == "qemu" else []
            with Target(kind, "x86_64", ["-machine", "pc", "-smp", "1,maxcpus=4", *extra],
                        os.path.join(tmp, f"{kind}.sock")) as target:
                results[kind] = {n: device_add_seconds(target, n) for n in SIZES}
                rss[kind] = target.rss
    print(f"{'device_add properties':>22}  " + "  ".join(f"{k:>10}" for k in kinds))
    for n in SIZES:
        print(f"{n:>22}  " + "  ".join(f"{results[k][n]:>9.3f}s" for k in kinds))
    print(f"{'RSS after (MiB)':>22}  " + "  ".join(f"{rss[k]:>10.1f}" for k in kinds))
    c = results["cpuhot"]
    growth = c[SIZES[-1]] / max(c[SIZES[0]], 1e-6)
    print(f"cpuhot growth {SIZES[0]} -> {SIZES[-1]} properties: {growth:.1f}x "
          f"(linear: {SIZES[-1] / SIZES[0]:.0f}x, quadratic: {(SIZES[-1] / SIZES[0]) ** 2:.0f}x)")
    if "qemu" in results:
        ratio = c[SIZES[-1]] / results["qemu"][SIZES[-1]]
        print(f"cpuhot/QEMU at {SIZES[-1]}: {ratio:.2f}x  target <= 1x: {'met' if ratio <= 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
