#!/usr/bin/env python3
"""Round-trip latency of cpuhot (and QEMU 7.2 when installed), measured with one raw-socket client.

    python benchmarks/latency.py            # cpuhot, and QEMU side by side if it is installed
    python benchmarks/latency.py --no-qemu  # cpuhot only
    python benchmarks/latency.py --full     # also plug every pseries-4096 core and query the full machine

Prints medians in milliseconds per configuration and the cpuhot/QEMU ratio.
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

CONFIGS = {
    "pc-8": ("qemu-system-x86_64", ["-machine", "pc", "-smp", "1,maxcpus=8"]),
    "q35-255": ("qemu-system-x86_64", ["-machine", "q35", "-smp", "1,maxcpus=255"]),
    "pseries-4096": ("qemu-system-ppc64", ["-machine", "pseries", "-smp", "1,maxcpus=4096"]),
}


class RawClient:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        json.loads(self.file.readline())
        self.call({"execute": "qmp_capabilities"})

    def call(self, msg: dict) -> dict:
        self.sock.sendall(json.dumps(msg).encode())
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply or "error" in reply:
                return reply

    def close(self):
        self.file.close()
        self.sock.close()


def start(kind: str, config: str, tmp: str):
    binary, args = CONFIGS[config]
    path = os.path.join(tmp, f"{kind}-{config}.sock")
    if kind == "qemu":
        argv = [binary, "-S", "-nodefaults", "-display", "none", "-accel", "tcg", *args]
    else:
        argv = [sys.executable, "-m", "cpuhot", "serve", "-S", "-accel", "tcg", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*argv, "-qmp", f"unix:{path},server=on,wait=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} {config} exited with {proc.returncode}")
        time.sleep(0.002)
    while True:
        try:
            client = RawClient(path)
            break
        except (ConnectionRefusedError, FileNotFoundError):
            time.sleep(0.002)
    first_reply = time.perf_counter() - t0
    return proc, client, first_reply


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(client: RawClient, msg: dict, n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        reply = client.call(msg)
        samples.append(time.perf_counter() - t)
        assert "return" in reply, reply
    return statistics.median(samples) * 1000


def plug_ms(client: RawClient, n: int) -> tuple[float, int]:
    entries = client.call({"execute": "query-hotpluggable-cpus"})["return"]
    free = [e for e in reversed(entries) if "qom-path" not in e][:n]
    samples = []
    for i, e in enumerate(free):
        msg = {"execute": "device_add", "arguments": {"driver": e["type"], "id": f"b{i}", **e["props"]}}
        t = time.perf_counter()
        reply = client.call(msg)
        samples.append(time.perf_counter() - t)
        assert "return" in reply, reply
    return statistics.median(samples) * 1000, len(free)


def measure(kind: str, config: str, tmp: str, full: bool) -> dict:
    proc, client, first = start(kind, config, tmp)
    try:
        big = config == "pseries-4096"
        out = {"first reply s": first, "rss start MiB": rss_mib(proc.pid),
               "query-status ms": timed(client, {"execute": "query-status"}, 200),
               "query-hotpluggable-cpus ms": timed(client, {"execute": "query-hotpluggable-cpus"}, 20 if big else 200)}
        out["device_add ms"], _ = plug_ms(client, 20 if big else 7)
        if full and big:
            t = time.perf_counter()
            _, count = plug_ms(client, 4096)
            out["plug all s"] = time.perf_counter() - t
            out["query-hotpluggable-cpus full ms"] = timed(client, {"execute": "query-hotpluggable-cpus"}, 5)
            out["rss full MiB"] = rss_mib(proc.pid)
        return out
    finally:
        client.close()
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--full", action="store_true", help="plug all pseries-4096 cores (QEMU takes ~15 s)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            rows = {"cpuhot": measure("cpuhot", config, tmp, args.full)}
            if not args.no_qemu and shutil.which(CONFIGS[config][0]):
                rows["qemu"] = measure("qemu", config, tmp, args.full)
            print(f"\n== {config} ==")
            print(f"{'metric':34} {'cpuhot':>10} {'qemu 7.2':>10} {'ratio':>8}")
            for metric, value in rows["cpuhot"].items():
                q = rows.get("qemu", {}).get(metric)
                ratio = f"{value / q:8.3f}" if q else "       -"
                qtxt = f"{q:10.3f}" if q is not None else "         -"
                print(f"{metric:34} {value:10.3f} {qtxt} {ratio}")


if __name__ == "__main__":
    main()
