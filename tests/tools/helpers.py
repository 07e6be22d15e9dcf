"""Shared helpers of the tools tests: the console scripts, real QEMU (skipped loudly when absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cpuhot.client import QMPClient
from cpuhot.launch import terminate

BIN = Path(sys.executable).parent
QEMU = {"x86_64": "qemu-system-x86_64", "ppc64": "qemu-system-ppc64"}


def script(name: str) -> str:
    """The installed console script ``name`` (cpuhot, cpuhot-system-x86_64, ...)."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}: pip install -e . installs it"
    return str(path)


def require_qemu(arch: str = "x86_64") -> str:
    binary = shutil.which(QEMU[arch])
    if binary is None:
        pytest.skip(f"!!! {QEMU[arch]} (QEMU 7.2) is not installed: this comparison with real QEMU is SKIPPED "
                    "(apt-get install -y --no-install-recommends qemu-system-x86 qemu-system-ppc) !!!")
    return binary


def run_both(argv: list[str], arch: str = "x86_64", timeout: float = 20.0, in_process: bool = False) -> tuple:
    """Run a refused command line with QEMU and with cpuhot-system-ARCH: ((rc, stderr), (rc, stderr)),
    ``{tmp}`` in argv stands for a scratch directory, program names replaced by ``PROG``.

    ``in_process``: cpuhot's side is ``cli.prepare`` (what the console script runs before any I/O)
    instead of a process, for speed."""
    qemu = require_qemu(arch)
    out = []
    for binary, name in ((qemu, QEMU[arch]), (script(f"cpuhot-system-{arch}"), f"cpuhot-system-{arch}")):
        tmp = tempfile.mkdtemp(prefix="cpuhot-parity-")
        try:
            args = [a.replace("{tmp}", tmp) for a in argv]
            if in_process and binary != qemu:
                from cpuhot.cli import prepare
                r = prepare(args, prog=name, default_arch=arch, default_endpoint=False)
                rc, err = r.exit_code, r.stderr
            else:
                r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                                   stdin=subprocess.DEVNULL)
                rc, err = r.returncode, r.stderr
            out.append((rc, err.replace(tmp, "{tmp}").replace(name, "PROG")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tuple(out)


class Server:
    """A QMP server process (QEMU or cpuhot) on ``{dir}/qmp.sock``, stopped by PID."""

    def __init__(self, binary: str, argv: list[str], *, pass_fds=(), sock: str | None = None):
        self.dir = tempfile.mkdtemp(prefix="cpuhot-srv-")
        self.path = sock or os.path.join(self.dir, "qmp.sock")
        extra = [] if sock else ["-qmp", f"unix:{self.path},server=on,wait=off"]
        self.proc = subprocess.Popen([binary, *argv, *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, pass_fds=pass_fds)

    def client(self, timeout: float = 20.0) -> QMPClient:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not listen")
            time.sleep(0.01)
        return QMPClient(f"unix:{self.path}", timeout=timeout)

    def stop(self) -> str:
        terminate(self.proc)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return err


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
