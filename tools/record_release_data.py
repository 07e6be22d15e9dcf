#!/usr/bin/env python3
"""Record a QEMU release's data tables into ``src/cpuhot/machine/data/<release>/``.

    python tools/record_release_data.py 10.0            # query-machines, query-cpu-definitions
    python tools/record_release_data.py 10.0 --tcg      # also the per-model TCG feature warnings (x86)
    python tools/record_release_data.py 10.0 --x2apic   # also which x86 models have x2apic under TCG
    python tools/record_release_data.py 10.0 --ht       # also which x86 models warn about threads > 1

Each table is the real QEMU's reply, unedited (``tools/qemus.py`` starts that release's binary),
so a new QEMU release gets its tables by running this; ``cpuhot.machine.release.data_text``
reads them (a table a release lacks falls back to 7.2's, directly under ``data/``: recording 7.2
writes there).  The TCG table maps every x86 CPU model (``host`` aside) to the warning lines one
boot CPU of it prints, in QEMU's order.
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

sys.path.insert(0, str(ROOT / "src"))
from cpuhot.machine.release import DEFAULT_RELEASE  # noqa: E402

DATA = ROOT / "src/cpuhot/machine/data"
ARCHES = ("x86_64", "ppc64")


def run(release: str, arch: str, args: list[str], commands: list) -> tuple[list, str]:
    """Start the release's QEMU paused, run ``commands``; return their replies and QEMU's stderr."""
    tmp = tempfile.mkdtemp(prefix="cpuhot-data-")
    sock = os.path.join(tmp, "q.sock")
    err = open(os.path.join(tmp, "err"), "w+")
    p = subprocess.Popen(qemus.launcher(release, arch) + ["-S", "-nodefaults", "-display", "none", "-accel", "tcg",
                                                          *args, "-qmp", f"unix:{sock},server=on,wait=off"],
                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                break
            except OSError:
                s.close()
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"QEMU {release} {arch} {args} did not start")
                time.sleep(0.02)
        f = s.makefile("rwb")
        f.readline()
        out = []
        for cmd in ["qmp_capabilities", *commands]:
            f.write(json.dumps(cmd if isinstance(cmd, dict) else {"execute": cmd}).encode() + b"\n")
            f.flush()
            while True:
                m = json.loads(f.readline())
                if "return" in m or "error" in m:
                    break
            out.append(m.get("return"))
        s.close()
        err.seek(0)
        return out[1:], err.read()
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


def write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=0 if isinstance(value, list) else 1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release", choices=list(qemus.RELEASES))
    ap.add_argument("--tcg", action="store_true", help="also record x86 TCG feature warnings per CPU model")
    ap.add_argument("--x2apic", action="store_true",
                    help="also record which x86 CPU models have x2apic once realized under TCG")
    ap.add_argument("--ht", action="store_true",
                    help="also record which x86 CPU models print the AMD hyperthreading warning (threads=2)")
    ns = ap.parse_args()
    out = DATA if ns.release == DEFAULT_RELEASE else DATA / ns.release
    for arch in ARCHES:
        machine = "pc" if arch == "x86_64" else "pseries"
        (machines, defs), _ = run(ns.release, arch, ["-machine", machine],
                                  ["query-machines", "query-cpu-definitions"])
        write(out / f"machines-{arch}.json", machines)
        write(out / f"cpu-definitions-{arch}.json", defs)
        if arch == "x86_64" and ns.tcg:
            prefix = "qemu-system-x86_64: warning: "
            table = {}
            for d in defs:
                if d["name"] in ("host",):
                    continue
                _, err = run(ns.release, arch, ["-machine", "pc", "-cpu", d["name"]], ["query-status"])
                table[d["name"]] = [line[len(prefix):] for line in err.splitlines() if line.startswith(prefix)]
            write(out / "tcg-warnings-x86_64.json", table)
        if arch == "x86_64" and ns.ht:
            # x86_cpu_realizefn: an AMD model without topoext warns once when threads > 1
            def warns(model: str) -> bool:
                _, err = run(ns.release, arch, ["-machine", "pc", "-smp", "2,threads=2", "-cpu", model], ["query-status"])
                return "doesn't support hyperthreading" in err
            write(out / "ht-warning-x86_64.json", sorted(d["name"] for d in defs if d["name"] != "host" and warns(d["name"])))
        if arch == "x86_64" and ns.x2apic:
            # the boot CPU's x2apic property once realized (TCG has filtered what it cannot do)
            get = {"execute": "qom-get", "arguments": {"path": "/machine/unattached/device[0]", "property": "x2apic"}}
            models = [d["name"] for d in defs if d["name"] != "host"]
            write(out / "x2apic-x86_64.json",
                  sorted(m for m in models if run(ns.release, arch, ["-machine", "pc", "-cpu", m], [get])[0][0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
