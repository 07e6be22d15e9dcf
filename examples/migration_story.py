#!/usr/bin/env python3
"""The 2016 cpu_index story, replayed: why out-of-order CPU hotplug broke migration.

Up to QEMU 2.7 a new CPU's cpu_index was the number of CPUs that existed when it
was created, and migration keys each CPU's state by cpu_index (and the x86 APIC
state by APIC ID).  Plug with ``cpu-add`` 5 then 2 and the source has cpu_index
0,1,2,3 on APIC IDs 0,1,5,2; a target started "the way management did then"
(``-smp 4,maxcpus=8``: CPUs 0-3 on APIC IDs 0-3) agrees on cpu_index but not
on APIC IDs, and the load fails.  From QEMU 2.8 on (cpuhot's default rules)
cpu_index is the slot, so a target started with one ``-device`` per plugged CPU
accepts the stream whatever the plug order.

Run it from a clone after ``pip install -e .``:  ``python examples/migration_story.py``
(its expected output is ``examples/migration_story.expected``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time


class QMP:
    """A tiny blocking QMP client (standard library only)."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(500):
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.01)
        self.file = self.sock.makefile("rb")
        self.events: list[dict] = []
        json.loads(self.file.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args):
        msg = {"execute": name, **({"arguments": args} if args else {})}
        self.sock.sendall(json.dumps(msg).encode())
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("connection closed")
            reply = json.loads(line)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(reply["error"]["desc"])
            return reply["return"]

    def wait_event(self, name: str, pred=lambda data: True, timeout: float = 10.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e["event"] == name and pred(e.get("data", {})):
                    self.events.remove(e)
                    return e
            self.sock.settimeout(max(0.01, deadline - time.time()))
            line = self.file.readline()
            self.sock.settimeout(None)
            if not line:
                raise EOFError("connection closed")
            self.events.append(json.loads(line))
        raise TimeoutError(name)


def start(tmp: str, name: str, *args: str) -> tuple[subprocess.Popen, str]:
    path = os.path.join(tmp, f"{name}.qmp")
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", "-S", *args,
                             "-qmp", f"unix:{path},server=on,wait=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, path


def cpus_line(qmp: QMP) -> str:
    cpus = qmp.cmd("query-cpus")
    parts = []
    for c in cpus:
        a = qmp.cmd("qom-get", path=c["qom_path"], property="apic-id")
        parts.append(f"cpu_index {c['CPU']} -> APIC {a}")
    return ", ".join(parts)


def migrate(tmp: str, src: QMP, dst: QMP) -> str:
    for q in (src, dst):
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "events", "state": True}, {"capability": "return-path", "state": True}])
    src.cmd("migrate", uri=f"unix:{tmp}/mig.sock")
    return src.wait_event("MIGRATION", lambda d: d["status"] in ("completed", "failed"))["data"]["status"]


def act(title: str, compat: str, plug, target_args: list[str]) -> None:
    print(f"== {title} ==")
    with tempfile.TemporaryDirectory() as tmp:
        src_proc, src_path = start(tmp, "src", "--compat", compat, "-smp", "2,maxcpus=8")
        dst_proc = None
        try:
            src = QMP(src_path)
            plug(src)
            print("source:", cpus_line(src))
            dst_proc, dst_path = start(tmp, "dst", "--compat", compat, *target_args,
                                       "-incoming", f"unix:{tmp}/mig.sock")
            dst = QMP(dst_path)
            print("target:", cpus_line(dst))
            status = migrate(tmp, src, dst)
            print("migration:", status)
            if status == "completed":
                print("target after:", cpus_line(dst))
            else:
                dst_proc.wait(10)
                err = dst_proc.stderr.read().strip().splitlines()
                print(f"target exited with status {dst_proc.returncode}:")
                for line in err:
                    print("  ", line.split(": ", 1)[1] if ": " in line else line)
        finally:
            for p in (src_proc, dst_proc):
                if p is not None and p.poll() is None:
                    p.terminate()
                    p.wait(10)
                if p is not None:
                    p.stderr.close()
    print()


def main() -> None:
    # QEMU 2.7's world: cpu-add in any order; cpu_index is a count, so it hides the order
    act("qemu-2.7: cpu-add 5 then 2, target -smp 4,maxcpus=8", "qemu-2.7",
        lambda q: (q.cmd("cpu-add", id=5), q.cmd("cpu-add", id=2)),
        ["-smp", "4,maxcpus=8"])
    # cpuhot's (and QEMU 2.8+'s) world: cpu_index is the slot; the target names each plugged CPU
    act("cpuhot: device_add slot 5 then slot 2, target with -device for each", "cpuhot",
        lambda q: (q.cmd("device_add", driver="qemu64-x86_64-cpu", id="cpu5", **{"socket-id": 0, "core-id": 5, "thread-id": 0}),
                   q.cmd("device_add", driver="qemu64-x86_64-cpu", id="cpu2", **{"socket-id": 0, "core-id": 2, "thread-id": 0})),
        ["-smp", "2,maxcpus=8",
         "-device", "qemu64-x86_64-cpu,id=cpu5,socket-id=0,core-id=5,thread-id=0",
         "-device", "qemu64-x86_64-cpu,id=cpu2,socket-id=0,core-id=2,thread-id=0"])


if __name__ == "__main__":
    main()
