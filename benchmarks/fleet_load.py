#!/usr/bin/env python3
"""Load a cpuhot fleet: N VMs in one process, M of them driven at once.

    python benchmarks/fleet_load.py                      # 1000 VMs of -smp 4,maxcpus=16, 100 driven
    python benchmarks/fleet_load.py --count 200 --driven 50 --seconds 3

Starts ``python -m cpuhot fleet --count N -smp 4,maxcpus=16`` (running VMs with a cooperative
guest, so unplugs complete), then:

1. start-up time and RSS of the idle fleet;
2. closed loop: one client on each of M VMs (spread over the fleet), each with one request
   outstanding at all times, cycling query-status, query-hotpluggable-cpus, query-cpus-fast,
   device_add of a CPU and device_del of it: throughput and latency (overall and the worst
   per-VM p99);
3. open loop: the same clients at a fixed rate each (``--rate``, default 100 commands/s);
4. every VM of the fleet answers query-status afterwards (latency of each, one at a time);
5. RSS after the load; SIGTERM; the sockets are gone.

Target (issue #8): 1,000 VMs under 1 GiB RSS, each answering within 10 ms p99 while 100 of
them are driven at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpbench import RawClient, drive, percentile, rss_mib  # noqa: E402


def commands(smp_max: int):
    """Request templates for one client: queries and a plug/unplug of the last slot."""
    core_id = smp_max - 1         # -smp 4,maxcpus=16 => 1 socket of 16 cores (QEMU 7.2 prefers cores)
    add = ('{"execute": "device_add", "arguments": {"driver": "qemu64-x86_64-cpu", "id": "load%(id)d", '
           f'"socket-id": 0, "core-id": {core_id}, "thread-id": 0}}, "id": %(id)d}}').encode()
    return [b'{"execute": "query-status", "id": %(id)d}',
            b'{"execute": "query-hotpluggable-cpus", "id": %(id)d}',
            b'{"execute": "query-cpus-fast", "id": %(id)d}',
            add,
            b'{"execute": "device_del", "arguments": {"id": "load%(prev)d"}, "id": %(id)d}']


def expected_error(line: bytes) -> bool:
    # the cooperative guest ejects 5 ms after device_del: a fast client may find the slot still taken
    return b"exists" in line or b"not found" in line


def show(title: str, r: dict) -> None:
    print(f"\n-- {title}")
    print(f"   {r['commands']} commands in {r['seconds']:.2f} s = {r['rate']:.0f} cmd/s over {r['clients']} VMs")
    print(f"   latency ms: p50 {r['p50 ms']:.3f}  p90 {r['p90 ms']:.3f}  p99 {r['p99 ms']:.3f}  "
          f"max {r['max ms']:.3f}  worst per-VM p99 {r['worst client p99 ms']:.3f}")
    print(f"   id mismatches {r['id mismatches']}, unexpected errors {r['errors']} {r['error samples'][:1]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--driven", type=int, default=100)
    ap.add_argument("--smp", default="4,maxcpus=16")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=100.0, help="open-loop commands/s per client")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    smp_max = int(args.smp.split("maxcpus=")[1].split(",")[0])
    out: dict = {"count": args.count, "driven": args.driven, "smp": args.smp}
    with tempfile.TemporaryDirectory(prefix="cpuhot-fleet-") as tmp:
        d = os.path.join(tmp, "fleet")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "fleet", "--count", str(args.count),
                                 "-smp", args.smp, "--guest", "cooperative", "--compat", "cpuhot",
                                 "--dir", d, "--summary"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            if not line:
                print(proc.stderr.read(), file=sys.stderr)
                return 1
            out["ready s"] = time.perf_counter() - t0
            paths = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".qmp"))
            assert len(paths) == args.count, (len(paths), args.count)
            time.sleep(0.2)
            out["rss idle MiB"] = rss_mib(proc.pid)
            print(f"fleet of {args.count} VMs (-smp {args.smp}): ready in {out['ready s']:.2f} s, "
                  f"RSS {out['rss idle MiB']:.1f} MiB ({out['rss idle MiB'] * 1024 / args.count:.0f} KiB per VM)")
            step = max(1, args.count // args.driven)
            driven = paths[::step][:args.driven]
            cmds = commands(smp_max)
            closed = drive(driven, lambda i: cmds, duration=args.seconds, window=1, expect_error=expected_error)
            out["closed loop"] = closed
            show(f"closed loop: {len(driven)} VMs, one request outstanding each", closed)
            out["rss loaded MiB"] = rss_mib(proc.pid)
            opened = drive(driven, lambda i: cmds, duration=args.seconds, rate=args.rate, window=4,
                           expect_error=expected_error)
            out["open loop"] = opened
            show(f"open loop: {len(driven)} VMs at {args.rate:g} cmd/s each", opened)
            # every VM still answers
            lat = []
            for p in paths:
                c = RawClient(p)
                t = time.perf_counter()
                reply = c.call({"execute": "query-status"})
                lat.append(time.perf_counter() - t)
                c.close()
                assert reply["return"]["running"], reply
            lat.sort()
            out["sweep"] = {"vms": len(lat), "p50 ms": statistics.median(lat) * 1000,
                            "p99 ms": percentile(lat, 99) * 1000, "max ms": lat[-1] * 1000}
            print(f"\n-- every VM answers query-status afterwards: {len(lat)} VMs, p50 "
                  f"{out['sweep']['p50 ms']:.3f} ms, p99 {out['sweep']['p99 ms']:.3f} ms, "
                  f"max {out['sweep']['max ms']:.3f} ms")
            out["rss after MiB"] = rss_mib(proc.pid)
            print(f"\nRSS: idle {out['rss idle MiB']:.1f} MiB, after the closed loop {out['rss loaded MiB']:.1f} MiB, "
                  f"at the end {out['rss after MiB']:.1f} MiB")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out["exit code"] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out["exit code"] = proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        left = [f for f in os.listdir(d)] if os.path.isdir(d) else []
        out["sockets left"] = len(left)
        print(f"SIGTERM: exit code {out['exit code']}, sockets left {len(left)}")
    ok = (out.get("rss after MiB", 1e9) < 1024 and out["closed loop"]["worst client p99 ms"] <= 10
          and out["open loop"]["worst client p99 ms"] <= 10)
    print(f"\ntarget (1,000 VMs < 1 GiB, each p99 <= 10 ms with 100 driven): "
          f"{'met' if ok and args.count >= 1000 and args.driven >= 100 else 'NOT MET' if not ok else 'n/a (smaller run)'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
