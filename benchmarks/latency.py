#!/usr/bin/env python3
"""cpuhot against QEMU 7.2, side by side, in one run, with the same raw-socket client.

    python benchmarks/latency.py             # everything: main table, targets, scaling 8 -> 4096
    python benchmarks/latency.py --quick     # main table without the 4096-core plug, no scaling
    python benchmarks/latency.py --no-qemu   # cpuhot only (ratios are not computed)
    python benchmarks/latency.py --json out.json

Main configurations (QEMU with ``-accel tcg``, both started with ``-S``): pc-8, q35-255 and
pseries-4096.  For each: time from exec to the greeting (median of 3 starts), RSS at start,
median round trips of ``query-status`` and ``query-hotpluggable-cpus``, ``device_add`` of every
free slot (median round trip and total), then ``query-hotpluggable-cpus``/``query-cpus-fast``
on the full machine and the RSS.  Throughput: 64 cpuhot clients at once (QEMU serves one client
at a time, so it gets one).  Then every ratio cpuhot/QEMU and whether it meets its target, and a
scaling table (x86 q35 with ``-accel kvm`` up to 288 slots, pseries up to 4096) with the cost per
slot / per CPU, to show that costs grow linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpbench import Target, drive, free_slots, plug, qemu_binary, timed  # noqa: E402

MAIN = {
    "pc-8": ("x86_64", ["-machine", "pc", "-smp", "1,maxcpus=8", "-accel", "tcg"]),
    "q35-255": ("x86_64", ["-machine", "q35", "-smp", "1,maxcpus=255", "-accel", "tcg"]),
    "pseries-4096": ("ppc64", ["-machine", "pseries", "-smp", "1,maxcpus=4096", "-accel", "tcg"]),
}
SCALING = [("x86_64", "q35", n, ["-machine", "q35", "-smp", f"1,maxcpus={n}", "-accel", "kvm"])
           for n in (8, 32, 128, 255, 288)] + \
          [("ppc64", "pseries", n, ["-machine", "pseries", "-smp", f"1,maxcpus={n}", "-accel", "tcg"])
           for n in (8, 64, 256, 1024, 4096)]

#: (label, metric key, configs, target ratio or absolute, kind): "ratio" = cpuhot/QEMU <= target
TARGETS = [
    ("query-status", "query-status ms", list(MAIN), 0.7, "ratio"),
    ("query-hotpluggable-cpus, 8 slots", "qhc ms", ["pc-8"], 0.5, "ratio"),
    ("query-hotpluggable-cpus, 4096 full", "qhc full ms", ["pseries-4096"], 0.05, "ratio"),
    ("device_add", "device_add ms", list(MAIN), 0.2, "ratio"),
    ("plug all 4095 pseries cores", "plug all s", ["pseries-4096"], 0.05, "ratio"),
    ("RSS at start", "rss start MiB", list(MAIN), 1.0, "ratio"),
    ("RSS, 4096 full", "rss full MiB", ["pseries-4096"], 0.1, "ratio"),
    ("first reply (s, absolute)", "first reply s", list(MAIN), 0.2, "absolute"),
]


def samples_for(slots: int, kind: str) -> int:
    if kind == "qemu":
        return 200 if slots <= 16 else 50 if slots <= 300 else 10
    return 300 if slots <= 300 else 40


def first_reply(kind: str, arch: str, args: list[str], tmp: str, n: int) -> float:
    times = []
    for i in range(n):
        with Target(kind, arch, args, os.path.join(tmp, f"fr-{kind}.sock")) as t:
            times.append(t.first_reply)
    return statistics.median(times)


def measure(kind: str, arch: str, args: list[str], tmp: str, *, plug_all: bool = True,
            starts: int = 3, log=print) -> dict:
    slots = int(args[args.index("-smp") + 1].split("maxcpus=")[1].split(",")[0])
    out: dict = {}
    with Target(kind, arch, args, os.path.join(tmp, f"{kind}.sock")) as t:
        fr = [t.first_reply]
        out["rss start MiB"] = t.rss
        c = t.client
        out["query-status ms"] = timed(c, {"execute": "query-status"}, samples_for(8, kind), batches=3)
        out["qhc ms"] = timed(c, {"execute": "query-hotpluggable-cpus"}, samples_for(slots, kind), batches=3)
        free = free_slots(c)
        if not plug_all:
            free = free[:20]
        t0 = time.perf_counter()
        rtts = plug(c, free, "b")
        total = time.perf_counter() - t0
        out["device_add ms"] = statistics.median(rtts) * 1000
        if plug_all:
            out["plug all s"] = total
            out["plugged"] = len(free)
            out["qhc full ms"] = timed(c, {"execute": "query-hotpluggable-cpus"}, samples_for(slots, kind))
            out["qcf full ms"] = timed(c, {"execute": "query-cpus-fast"}, samples_for(slots, kind))
            out["rss full MiB"] = t.rss
    if starts > 1:
        fr += [first_reply(kind, arch, args, tmp, 1) for _ in range(starts - 1)]
    out["first reply s"] = statistics.median(fr)
    return out


def throughput(kind: str, tmp: str, clients: int, seconds: float) -> dict:
    arch, args = MAIN["pc-8"]
    with Target(kind, arch, args, os.path.join(tmp, f"tp-{kind}.sock")) as t:
        t.client.close()        # QEMU serves one client at a time: free the monitor for the driver
        return drive([t.sock] * clients, lambda i: [b'{"execute": "query-status", "id": %(id)d}'],
                     duration=seconds, window=1)


def linearity(rows: list[dict]) -> list[str]:
    """For each (who, arch): growth of the per-slot / per-CPU costs between the two largest sizes."""
    out = []
    for who in ("cpuhot", "qemu"):
        for arch in ("x86_64", "ppc64"):
            series = sorted((r for r in rows if r["who"] == who and r["arch"] == arch), key=lambda r: r["slots"])
            if len(series) < 2:
                continue
            a, b = series[-2], series[-1]
            parts = []
            for key, unit in (("qhc full ms", "slots"), ("qcf full ms", "plugged"), ("plug all s", "plugged")):
                ua, ub = a[key] / max(1, a[unit]), b[key] / max(1, b[unit])
                growth = ub / ua if ua else float("nan")
                parts.append(f"{key.split(' ms')[0].split(' s')[0]} x{growth:.2f} ({'ok' if growth <= 1.5 else 'SUPERLINEAR'})")
            out.append(f"{who:6} {arch:6} {a['slots']}->{b['slots']}: " + ", ".join(parts))
    return out


def fmt(v, width=10, prec=3) -> str:
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        if v != v:
            return "nan".rjust(width)
        if abs(v) >= 1000:
            return f"{v:{width}.0f}"
        return f"{v:{width}.{prec}f}"
    return f"{v:>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-qemu", action="store_true", help="measure cpuhot only")
    ap.add_argument("--quick", action="store_true",
                    help="plug only 20 slots, skip the scaling table (no 4096-full figures)")
    ap.add_argument("--full", action="store_true", help="(the default; kept for older instructions)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    ap.add_argument("--scaling-no-qemu", action="store_true", help="scaling table for cpuhot only")
    ap.add_argument("--configs", nargs="*", default=list(MAIN), choices=list(MAIN))
    ap.add_argument("--seconds", type=float, default=2.0, help="throughput run length")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    with_qemu = not args.no_qemu
    results: dict = {"main": {}, "throughput": {}, "scaling": [], "targets": []}
    with tempfile.TemporaryDirectory(prefix="cpuhot-bench-") as tmp:
        # -- main table ---------------------------------------------------------------
        for name in args.configs:
            arch, argv = MAIN[name]
            rows = {"cpuhot": measure("cpuhot", arch, argv, tmp, plug_all=not args.quick)}
            if with_qemu and qemu_binary(arch):
                rows["qemu"] = measure("qemu", arch, argv, tmp, plug_all=not args.quick)
            results["main"][name] = rows
            print(f"\n== {name}: {' '.join(argv)} ==")
            print(f"{'metric':24} {'cpuhot':>10} {'qemu 7.2':>10} {'ratio':>8}")
            for metric, value in rows["cpuhot"].items():
                q = rows.get("qemu", {}).get(metric)
                ratio = f"{value / q:8.3f}" if q and metric != "plugged" else "       -"
                print(f"{metric:24} {fmt(value)} {fmt(q)} {ratio}", flush=True)
        # -- throughput -----------------------------------------------------------------
        print("\n== throughput: query-status, closed loop, one request outstanding per client ==")
        tp = results["throughput"]
        tp["cpuhot 1 client"] = throughput("cpuhot", tmp, 1, args.seconds)
        tp["cpuhot 64 clients"] = throughput("cpuhot", tmp, 64, args.seconds)
        if with_qemu and qemu_binary("x86_64"):
            tp["qemu 1 client"] = throughput("qemu", tmp, 1, args.seconds)
        print(f"{'who':20} {'cmd/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'id mismatches':>14}")
        for who, r in tp.items():
            print(f"{who:20} {r['rate']:10.0f} {r['p50 ms']:8.3f} {r['p99 ms']:8.3f} {r['max ms']:8.3f} "
                  f"{r['id mismatches']:14d}", flush=True)
        # -- targets ----------------------------------------------------------------------
        print("\n== targets (ratio = cpuhot / QEMU 7.2, this run) ==")
        print(f"{'target':38} {'config':14} {'cpuhot':>10} {'qemu':>10} {'ratio':>8} {'goal':>7}  verdict")
        for label, key, configs, goal, kind in TARGETS:
            for cfg in configs:
                rows = results["main"].get(cfg)
                if not rows or key not in rows["cpuhot"]:
                    continue
                ours = rows["cpuhot"][key]
                theirs = rows.get("qemu", {}).get(key)
                if kind == "absolute":
                    value, verdict = ours, ours <= goal
                elif theirs:
                    value, verdict = ours / theirs, ours / theirs <= goal
                else:
                    value, verdict = None, None
                results["targets"].append({"target": label, "config": cfg, "cpuhot": ours, "qemu": theirs,
                                           "value": value, "goal": goal, "met": verdict})
                vtxt = "met" if verdict else "NOT MET" if verdict is False else "no QEMU"
                print(f"{label:38} {cfg:14} {fmt(ours)} {fmt(theirs)} {fmt(value, 8)} {goal:7g}  {vtxt}")
        r64 = tp["cpuhot 64 clients"]["rate"]
        ok = r64 >= 20000
        results["targets"].append({"target": "64 clients aggregate cmd/s", "cpuhot": r64, "goal": 20000, "met": ok})
        print(f"{'64 clients, aggregate cmd/s (absolute)':38} {'pc-8':14} {r64:10.0f} "
              f"{fmt(tp.get('qemu 1 client', {}).get('rate'))} {'-':>8} {'>=20000':>7}  {'met' if ok else 'NOT MET'}")
        # -- scaling -----------------------------------------------------------------------
        if not (args.quick or args.no_scaling):
            print("\n== scaling: every free slot plugged; per-unit costs should stay flat (linear growth) ==")
            head = (f"{'who':6} {'config':16} {'slots':>5} {'1st reply s':>11} {'RSS0 MiB':>8} "
                    f"{'qhc0 ms':>8} {'add ms':>7} {'plug all s':>10} {'qhc ms':>8} {'us/slot':>7} "
                    f"{'qcf ms':>8} {'us/cpu':>7} {'RSS MiB':>8}")
            print(head)
            reuse = {("ppc64", 4096): "pseries-4096"}
            for arch, family, n, argv in SCALING:
                kinds = ["cpuhot"] + (["qemu"] if with_qemu and not args.scaling_no_qemu and qemu_binary(arch)
                                      else [])
                for kind in kinds:
                    cfg = reuse.get((arch, n))
                    if cfg in results["main"] and kind in results["main"][cfg] and \
                            "plug all s" in results["main"][cfg][kind]:
                        r = results["main"][cfg][kind]
                    else:
                        r = measure(kind, arch, argv, tmp, starts=1)
                    vcpus = r["plugged"] + 1
                    results["scaling"].append({"who": kind, "arch": arch, "slots": n, **r})
                    print(f"{kind:6} {family + ' ' + argv[-1]:16} {n:5d} {r['first reply s']:11.3f} "
                          f"{r['rss start MiB']:8.1f} {r['qhc ms']:8.3f} {r['device_add ms']:7.3f} "
                          f"{r['plug all s']:10.3f} {r['qhc full ms']:8.3f} {r['qhc full ms'] / n * 1000:7.2f} "
                          f"{r['qcf full ms']:8.3f} {r['qcf full ms'] / vcpus * 1000:7.2f} {r['rss full MiB']:8.1f}",
                          flush=True)
            verdicts = linearity(results["scaling"])
            if verdicts:
                print("\nper-unit cost, largest size / second largest (<= 1.5: linear or better):")
                for line in verdicts:
                    print("  " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
