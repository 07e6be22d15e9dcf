#!/usr/bin/env python3
"""Record which features of each x86 CPU model QEMU 7.2's TCG warns about.

Writes ``src/cpuhot/machine/data/tcg-warnings-x86_64.json``: model -> the warning texts
(``TCG doesn't support requested feature: CPUID.01H:ECX.x2apic [bit 21]``) one boot CPU
prints, in QEMU's order.  cpuhot prints them for ``-accel tcg`` as QEMU does (per CPU realised).
Needs ``qemu-system-x86_64``; takes about half a minute.

``python tools/record_tcg_cpu_warnings.py 5.2`` records another release's QEMU (through
``tools/qemus.py``) into ``data/5.2/`` instead, over that release's CPU models.
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/cpuhot/machine/data/tcg-warnings-x86_64.json"
DEFS = OUT.parent / "cpu-definitions-x86_64.json"
PREFIX = "qemu-system-x86_64: warning: "


LAUNCHER = ["qemu-system-x86_64"]


def warnings_for(model: str, tmp: str) -> list[str] | None:
    sock = os.path.join(tmp, "q.sock")
    p = subprocess.Popen([*LAUNCHER, "-S", "-nodefaults", "-display", "none", "-accel", "tcg",
                          "-machine", "pc", "-cpu", model, "-qmp", f"unix:{sock},server=on,wait=off"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 10
    import socket
    while time.time() < deadline and p.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            f = s.makefile("rwb")
            f.readline()
            f.write(b'{"execute":"query-status"}')     # answered once start-up is complete
            f.flush()
            f.readline()
            s.close()
            break
        except OSError:
            time.sleep(0.02)
    p.terminate()
    _, err = p.communicate()
    if p.returncode not in (0, -15):
        return None
    return [line[len(PREFIX):] for line in err.splitlines() if line.startswith(PREFIX + "TCG")]


def main() -> None:
    import sys
    global LAUNCHER, OUT, DEFS
    if len(sys.argv) > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import qemus
        LAUNCHER = qemus.launcher(sys.argv[1], "x86_64")
        OUT = OUT.parent / sys.argv[1] / OUT.name
        DEFS = OUT.parent / DEFS.name
    models = [d["name"] for d in json.loads(DEFS.read_text())]
    table = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for m in models:
            w = warnings_for(m, tmp)
            if w:
                table[m] = w
    OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{len(table)} of {len(models)} models warn under TCG -> {OUT}")


if __name__ == "__main__":
    main()
