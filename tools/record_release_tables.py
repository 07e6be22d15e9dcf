#!/usr/bin/env python3
"""Record a QEMU release's data tables into ``src/cpuhot/machine/data/<release>/``.

    python tools/record_release_tables.py 5.2

For each target (x86_64, ppc64) this starts that release's real QEMU (through
``tools/qemus.py``, paused, ``-machine none``) and writes its replies, exactly as sent:
``machines-ARCH.json`` (``query-machines``) and ``cpu-definitions-ARCH.json``
(``query-cpu-definitions``).  cpuhot reads them through ``cpuhot.machine.release.data_text``.
Every QEMU started is ended by PID; the socket directory is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qemus  # noqa: E402

DATA = HERE.parent / "src/cpuhot/machine/data"
ARCHES = ("x86_64", "ppc64")
COMMANDS = {"machines": "query-machines", "cpu-definitions": "query-cpu-definitions"}


def _ask(f, command: str):
    f.write(json.dumps({"execute": command}).encode() + b"\n")
    f.flush()
    while True:
        msg = json.loads(f.readline())
        if "return" in msg:
            return msg["return"]
        if "error" in msg:
            raise RuntimeError(f"{command}: {msg['error']}")


def record(release: str, arch: str) -> dict[str, list]:
    tmp = tempfile.mkdtemp(prefix="cpuhot-tables-", dir="/tmp")
    sock = os.path.join(tmp, "q.sock")
    argv = qemus.launcher(release, arch) + ["-S", "-nodefaults", "-display", "none", "-accel", "tcg",
                                            "-machine", "none", "-qmp", f"unix:{sock},server=on,wait=off"]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"QEMU {release} {arch} did not start: {p.stderr.read().decode()!r}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                break
            except OSError:
                s.close()
                time.sleep(0.02)
        with s, s.makefile("rwb") as f:
            f.readline()
            _ask(f, "qmp_capabilities")
            return {name: _ask(f, cmd) for name, cmd in COMMANDS.items()}
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    release = argv[0]
    out = DATA / release
    out.mkdir(exist_ok=True)
    for arch in ARCHES:
        for name, reply in record(release, arch).items():
            path = out / f"{name}-{arch}.json"
            path.write_text("[\n" + ",\n".join(json.dumps(e, indent=0) for e in reply) + "\n]\n")
            print(f"wrote {path.relative_to(HERE.parent)} ({len(reply)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
