"""Start a simulated VM from Python, in-process or as a subprocess, ready to talk QMP.

>>> import cpuhot
>>> with cpuhot.launch(machine="q35", smp="4,maxcpus=16") as vm:   # doctest: +SKIP
...     print(vm.qmp_path)

In-process VMs run their asyncio server on a thread of their own, so the
caller may use blocking sockets or its own event loop; ``subprocess=True``
runs ``python -m cpuhot serve`` instead.  Both return once the monitor
socket accepts connections and clean up the socket (and process) on exit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Sequence

from .cli import prepare
from .machine.errors import CpuhotError


class LaunchError(CpuhotError):
    """The VM refused to start; ``stderr`` says why, as QEMU would."""

    def __init__(self, exit_code: int, stderr: str):
        super().__init__(stderr.strip())
        self.exit_code = exit_code
        self.stderr = stderr


def build_argv(machine=None, smp=None, cpu=None, memory=None, numa=(), devices=(), accel=None,
               paused=False, compat=None, arch=None, extra: Sequence[str] = ()) -> list[str]:
    argv: list[str] = []
    if machine:
        argv += ["-machine", machine]
    if smp:
        argv += ["-smp", smp]
    if cpu:
        argv += ["-cpu", cpu]
    if memory:
        argv += ["-m", memory]
    for n in numa:
        argv += ["-numa", n]
    for d in devices:
        argv += ["-device", d]
    if accel:
        argv += ["-accel", accel]
    if paused:
        argv += ["-S"]
    if compat:
        argv += ["--compat", compat]
    if arch:
        argv += ["--arch", arch]
    return argv + list(extra)


class RunningVM:
    """A VM serving QMP on ``qmp_path``; a context manager that stops it on exit."""

    def __init__(self, qmp_path: str, *, stderr: str = "", monitor=None, stop=None, tmpdir=None, process=None):
        self.qmp_path = qmp_path
        self.stderr = stderr
        self.monitor = monitor
        self.process = process
        self._stop = stop
        self._tmpdir = tmpdir

    @property
    def vm(self):
        """The in-process machine model (``None`` for a subprocess)."""
        return self.monitor.vm if self.monitor is not None else None

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> "RunningVM":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_argv(argv: Sequence[str], *, subprocess_: bool = False, prog: str = "cpuhot",
                qmp_path: str | None = None) -> RunningVM:
    """Start a VM from a QEMU-style argv (without ``-qmp``: a private socket is added)."""
    tmpdir = None
    if qmp_path is None:
        tmpdir = tempfile.mkdtemp(prefix="cpuhot-")
        qmp_path = os.path.join(tmpdir, "qmp.sock")
    argv = [*argv, "-qmp", f"unix:{qmp_path},server=on,wait=off"]
    if subprocess_:
        return _launch_subprocess(argv, qmp_path, tmpdir)
    prepared = prepare(argv, prog=prog)
    if prepared.exit_code is not None:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise LaunchError(prepared.exit_code, prepared.stderr)
    return _launch_thread(prepared, qmp_path, tmpdir)


def launch(*, subprocess: bool = False, qmp_path: str | None = None, **kw) -> RunningVM:
    """Start a VM: ``launch(machine="q35", smp="4,maxcpus=16", accel="kvm", paused=True)``."""
    return launch_argv(build_argv(**kw), subprocess_=subprocess, qmp_path=qmp_path)


def _launch_thread(prepared, qmp_path: str, tmpdir) -> RunningVM:
    from .qmp.server import QMPServer
    ready = threading.Event()
    state: dict = {}

    def run() -> None:
        async def main() -> None:
            server = QMPServer(prepared.monitor)
            state["server"] = server
            state["loop"] = asyncio.get_running_loop()
            try:
                for ep in prepared.endpoints:
                    await server.listen(ep)
            except BaseException as e:   # report bind failures to the caller
                state["error"] = e
                ready.set()
                return
            ready.set()
            await server.serve_until_stopped()
        asyncio.run(main())

    thread = threading.Thread(target=run, name="cpuhot-vm", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in state:
        raise state["error"]

    def stop() -> None:
        loop = state.get("loop")
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(state["server"].request_stop)
            except RuntimeError:
                pass
        thread.join(5)

    return RunningVM(qmp_path, stderr=prepared.stderr, monitor=prepared.monitor, stop=stop, tmpdir=tmpdir)


def _launch_subprocess(argv, qmp_path: str, tmpdir) -> RunningVM:
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read()
        code = proc.wait()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise LaunchError(code, err)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    return RunningVM(qmp_path, stop=stop, tmpdir=tmpdir, process=proc)
