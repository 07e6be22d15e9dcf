#!/usr/bin/env python3
"""Measure what real QEMU reports in ``query-migrate``'s ``ram`` for paused, guest-less VMs.

    python tools/record_migration_ram.py 7.2 [--out FILE] [--repeat 2] [--only pc ...]

For every configuration of :data:`CONFIGS` (machine type, ``-m``, ``-smp``, CPUs hot-plugged
before the migration) the release's QEMU is started ``-S`` and migrated to
``exec:cat > /dev/null``; the script keeps ``info ramblock`` (HMP) and the final
``query-migrate``.  Each configuration runs ``--repeat`` times: a ``ram`` field whose value
differs between runs is volatile.  The JSON written is the raw material of cpuhot's per-release
RAM block tables (``src/cpuhot/machine/data/<release>/migration-ram.json``, written by
``--tables``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import qemus  # noqa: E402

DATA = ROOT / "src/cpuhot/machine/data"
ARCH = {"pc": "x86_64", "q35": "x86_64", "pseries": "ppc64", "s390-ccw-virtio": "s390x"}


def _plug(machine: str, n: int, release: str) -> dict:
    if machine in ("pc", "q35"):
        return {"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": n, "thread-id": 0, "id": f"h{n}"}
    if machine == "pseries":
        core = {"5.2": "power9_v2.0-spapr-cpu-core", "7.2": "power9_v2.0-spapr-cpu-core"}.get(
            release, "power10_v2.0-spapr-cpu-core")
        return {"driver": core, "core-id": n, "id": f"h{n}"}
    return {"driver": "qemu-s390x-cpu", "core-id": n, "id": f"h{n}"}


def _smp(machine: str, cpus: int, maxcpus: int) -> str:
    if machine in ("pc", "q35"):
        return f"{cpus},sockets=1,cores={maxcpus},threads=1,maxcpus={maxcpus}"
    return f"{cpus},maxcpus={maxcpus}"


#: (machine, -m or None, boot cpus, maxcpus, hot-plugged core ids in plug order)
CONFIGS = (
    [(m, None, 1, n, ()) for m in ("pc", "q35") for n in range(1, 41)]
    + [(m, mem, c, 4, plugs) for m in ("pc", "q35") for mem, c, plugs in
       (("256M", 1, ()), ("1G", 1, ()), (None, 4, ()), (None, 1, (3, 2)), (None, 1, (2,)), (None, 2, (3,)))]
    + [("pseries", None, 1, n, ()) for n in range(1, 13)]
    + [("pseries", mem, c, 4, plugs) for mem, c, plugs in
       (("256M", 1, ()), ("1G", 1, ()), (None, 2, ()), (None, 4, ()), (None, 1, (2,)), (None, 1, (3, 2)))]
    + [("s390-ccw-virtio", None, 1, n, ()) for n in range(1, 9)]
    + [("s390-ccw-virtio", mem, c, 4, plugs) for mem, c, plugs in
       (("256M", 1, ()), ("1G", 1, ()), (None, 2, ()), (None, 1, (2,)), (None, 1, (3, 2)))]
)


class QMP:
    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        json.loads(self.f.readline())
        self.call("qmp_capabilities")

    def call(self, cmd: str, args: dict | None = None) -> dict:
        msg: dict = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode())
        while True:
            m = json.loads(self.f.readline())
            if "return" in m or "error" in m:
                return m

    def close(self) -> None:
        self.f.close()
        self.s.close()


def measure(release: str, machine: str, mem: str | None, cpus: int, maxcpus: int, plugs) -> dict:
    tmp = tempfile.mkdtemp(prefix="cpuhot-ram-")
    sock = os.path.join(tmp, "q.sock")
    argv = ["-machine", machine, "-smp", _smp(machine, cpus, maxcpus)] + (["-m", mem] if mem else [])
    p = subprocess.Popen(qemus.launcher(release, ARCH[machine]) + ["-S", "-nodefaults", "-display", "none",
                                                                  "-accel", "tcg", *argv,
                                                                  "-qmp", f"unix:{sock},server=on,wait=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        q = None
        deadline = time.monotonic() + 20
        while q is None:
            try:
                q = QMP(sock)
            except (OSError, ValueError):
                if time.monotonic() > deadline or p.poll() is not None:
                    raise RuntimeError(f"{argv}: no QMP")
                time.sleep(0.02)
        for n in plugs:
            r = q.call("device_add", _plug(machine, n, release))
            assert "return" in r, (argv, r)
        blocks = q.call("human-monitor-command", {"command-line": "info ramblock"})["return"]
        r = q.call("migrate", {"uri": "exec:cat > /dev/null"})
        assert "return" in r, r
        deadline = time.monotonic() + 30
        while True:
            st = q.call("query-migrate")["return"]
            if st.get("status") in ("completed", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        q.close()
        return {"machine": machine, "m": mem, "smp": _smp(machine, cpus, maxcpus), "plugs": list(plugs),
                "ramblock": blocks, "query-migrate": st}
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def compact(runs: list[dict]) -> str:
    """A JSON list, one measurement a line; ``info ramblock`` kept once per machine and -m."""
    seen = set()
    lines = []
    for r in runs:
        r = dict(r)
        if (r["machine"], r["m"]) in seen:
            r.pop("ramblock", None)
        seen.add((r["machine"], r["m"]))
        lines.append(json.dumps(r))
    return "[\n" + ",\n".join(lines) + "\n]\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release")
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", action="append", help="machine types to measure")
    ap.add_argument("--sweep", action="store_true",
                    help="instead: pc and q35 with maxcpus 41..255, once each (where the ACPI tables grow a page)")
    ap.add_argument("--tables", nargs="+", metavar="JSON",
                    help="instead: write the release's data table from these measurement files")
    ns = ap.parse_args(argv)
    if ns.tables:
        print(write_tables(ns.release, ns.tables))
        return 0
    runs = []
    configs = CONFIGS
    if ns.sweep:
        configs = [(m, None, 1, n, ()) for m in ("pc", "q35") for n in range(41, 256)]
    for cfg in configs:
        if ns.only and cfg[0] not in ns.only:
            continue
        for i in range(ns.repeat):
            t0 = time.monotonic()
            r = measure(ns.release, *cfg)
            r["run"] = i
            runs.append(r)
            ram = r["query-migrate"].get("ram", {})
            print(f"{cfg} #{i}: {r['query-migrate'].get('status')} total={ram.get('total')} "
                  f"normal={ram.get('normal')} transferred={ram.get('transferred')} ({time.monotonic() - t0:.1f}s)",
                  flush=True)
    text = compact(runs)
    if ns.out:
        Path(ns.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0



# -- tables ------------------------------------------------------------------------------------

def _ramblocks(text: str) -> list[list]:
    """``info ramblock`` -> [[name, used length], ...] in QEMU's order."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6:
            out.append([parts[0], int(parts[4], 16)])
    return out


def tables(release: str, measurements: list[dict]) -> dict:
    """The data table ``migration-ram.json`` of ``release`` from its measurements (see FORMAT of
    :mod:`cpuhot.machine.migration_ram`)."""
    def ram(r):
        return r["query-migrate"]["ram"]

    def plain(r):       # default -m, one boot CPU, nothing plugged: the maxcpus sweep
        return r["m"] is None and r["smp"].startswith("1,") and not r["plugs"]

    def maxcpus(r):
        return int(r["smp"].rsplit("maxcpus=", 1)[1])

    keys = list(ram(measurements[0]))
    machines: dict = {}
    for machine in ARCH:
        rs = [r for r in measurements if r["machine"] == machine and r["query-migrate"].get("status") == "completed"]
        if not rs:
            continue
        default_ram = min(ram(r)["total"] for r in rs if plain(r))
        blocks = _ramblocks(next(r["ramblock"] for r in rs if "ramblock" in r and r["m"] is None))
        guest = blocks[0][0]
        fixed = sum(size for name, size in blocks[1:])
        assert default_ram == blocks[0][1] + fixed, machine
        normal, last = [], None
        for r in sorted((r for r in rs if plain(r) and r["run"] == 0), key=maxcpus):
            n = ram(r)["normal"]
            if n != last:
                normal.append([maxcpus(r), n])
                last = n
        for r in rs:            # -m, boot CPUs and hot-plugged CPUs change nothing but the guest RAM
            expect = next(n for m, n in reversed(normal) if m <= maxcpus(r))
            assert ram(r)["normal"] == expect, (machine, r["m"], r["smp"], r["plugs"], ram(r)["normal"], expect)
        entry = {"blocks": [[guest, None]] + [[n, s] for n, s in blocks[1:]], "normal": normal}
        if "downtime-bytes" in ram(rs[0]) and ram(rs[0])["transferred"] != ram(rs[0])["downtime-bytes"]:
            def extra(r):
                return ram(r)["transferred"] - ram(r)["downtime-bytes"]
            one = [r for r in rs if r["m"] is None and r["smp"] == _smp(machine, 1, 4) and not r["plugs"]]
            two = [r for r in rs if r["m"] is None and r["smp"] == _smp(machine, 1, 4) and len(r["plugs"]) == 1]
            per_cpu = extra(two[0]) - extra(one[0])
            entry["stream"] = {"base": extra(one[0]) - per_cpu, "per_cpu": per_cpu}
        machines[machine] = entry
    return {"_source": f"tools/record_migration_ram.py {release} (QEMU {release}: info ramblock and query-migrate "
                       "of paused guest-less VMs migrated to exec:cat > /dev/null)",
            "keys": keys, "machines": machines}


def write_tables(release: str, files: list[str]) -> Path:
    measurements = [r for f in files for r in json.loads(Path(f).read_text())]
    out = DATA / ("" if release == "7.2" else release) / "migration-ram.json"
    out.write_text(json.dumps(tables(release, measurements), indent=1) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main())

