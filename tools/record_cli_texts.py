#!/usr/bin/env python3
"""Record what QEMU 7.2 prints for its informational command lines and HMP ``help``.

Writes, under ``src/cpuhot/machine/data/`` (QEMU 7.2's tables; another release's go in
``data/<release>/``, found by :func:`cpuhot.machine.release.data_text`):

``version.txt``                  ``qemu-system-x86_64 -version``
``qemu-help-<arch>.txt``         ``-h`` (the usage line names the binary; cpuhot puts its own name there)
``machine-help-<arch>.txt``      ``-machine help``
``cpu-help-<arch>.txt``          ``-cpu help``
``accel-help-<arch>.txt``        ``-accel help``
``device-help-<arch>.txt``       ``-device help``
``hmp-help-<arch>.txt``          HMP ``help`` through ``human-monitor-command``
``qom-list-machine.json``        ``qom-list /machine`` of pc, q35 and pseries (QEMU's hash order)

Needs ``qemu-system-x86_64`` and ``qemu-system-ppc64``; takes a few seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/cpuhot/machine/data"
ARCHES = ("x86_64", "ppc64")
BASE = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg"]


def stdout_of(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def qmp_session(binary: str, machine: str, commands: list[dict]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "q.sock")
        p = subprocess.Popen([binary, *BASE, "-machine", machine, "-smp", "1,maxcpus=4",
                              "-qmp", f"unix:{path},server=on,wait=off"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(path)
                    break
                except OSError:
                    s.close()
                    if time.monotonic() > deadline or p.poll() is not None:
                        raise RuntimeError(f"{binary} did not listen")
                    time.sleep(0.02)
            f = s.makefile("rwb")
            f.readline()
            replies = []
            for cmd in [{"execute": "qmp_capabilities"}, *commands]:
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "event" not in reply:
                        break
                replies.append(reply["return"])
            s.close()
            return replies[1:]
        finally:
            p.terminate()
            p.wait(timeout=10)


def main() -> None:
    (OUT / "version.txt").write_text(stdout_of(["qemu-system-x86_64", "-version"]))
    for arch in ARCHES:
        binary = f"qemu-system-{arch}"
        (OUT / f"qemu-help-{arch}.txt").write_text(stdout_of([binary, "-h"]))
        for option in ("machine", "cpu", "accel", "device"):
            (OUT / f"{option}-help-{arch}.txt").write_text(stdout_of([binary, f"-{option}", "help"]))
        machine = "pc" if arch == "x86_64" else "pseries"
        (hmp_help,) = qmp_session(binary, machine, [{"execute": "human-monitor-command",
                                                     "arguments": {"command-line": "help"}}])
        (OUT / f"hmp-help-{arch}.txt").write_bytes(hmp_help.encode())
    table = {}
    for machine, binary in (("pc", "qemu-system-x86_64"), ("q35", "qemu-system-x86_64"),
                            ("pseries", "qemu-system-ppc64")):
        (listing,) = qmp_session(binary, machine, [{"execute": "qom-list", "arguments": {"path": "/machine"}}])
        table[machine] = listing
    (OUT / "qom-list-machine.json").write_text(json.dumps(table, indent=1) + "\n")
    print(f"recorded into {OUT}")


if __name__ == "__main__":
    main()
