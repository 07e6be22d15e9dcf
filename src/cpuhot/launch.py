"""Start a simulated VM from Python, in-process or as a subprocess, ready to talk QMP.

Blocking code::

    import cpuhot
    with cpuhot.launch(machine="q35", smp="4,maxcpus=16", guest="cooperative") as vm:
        with vm.client() as qmp:                       # a negotiated cpuhot.client.QMPClient
            free = [e for e in qmp.execute("query-hotpluggable-cpus") if "qom-path" not in e]
            qmp.execute("device_add", {"driver": free[-1]["type"], "id": "vcpu4", **free[-1]["props"]})
        print(vm.qmp_path, vm.vm.query_cpus_fast()[-1]["qom-path"])   # .vm: the model, in-process only

asyncio code::

    import asyncio, cpuhot
    from qemu.qmp import QMPClient

    async def main():
        async with cpuhot.launch_async(machine="pseries", smp="2,maxcpus=8") as vm:
            qmp = QMPClient("test")
            await qmp.connect(vm.qmp_path)
            print(await qmp.execute("query-hotpluggable-cpus"))
            await qmp.disconnect()

    asyncio.run(main())

In-process VMs (the default) run their asyncio server on a thread of their own, so the
caller may use blocking sockets or its own event loop; ``subprocess=True`` runs
``python -m cpuhot serve`` instead.  Both return once the monitor socket accepts
connections.  The socket, its temporary directory and the process are removed when the
``with``/``async with`` block ends, also when it ends with an exception, and (as a last
resort) when the :class:`RunningVM` is garbage collected or the interpreter exits.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Sequence, cast

from .cli import Prepared, prepare
from .machine.errors import CpuhotError

if TYPE_CHECKING:
    from .client import QMPClient
    from .machine.vm import VirtualMachine
    from .qmp.protocol import Monitor

#: seconds to wait for a VM to listen
START_TIMEOUT = 30.0


def terminate(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM a child, SIGKILL it if it has not exited after ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class LaunchError(CpuhotError):
    """The VM refused to start; ``stderr`` says why, as QEMU would."""

    def __init__(self, exit_code: int, stderr: str):
        super().__init__(stderr.strip())
        self.exit_code = exit_code
        self.stderr = stderr


def build_argv(machine: str | None = None, smp: str | int | None = None, cpu: str | None = None,
               memory: str | int | None = None, numa: Iterable[str] = (), devices: Iterable[str] = (),
               accel: str | None = None, paused: bool = False, compat: str | None = None, arch: str | None = None,
               guest: str | None = None, name: str | None = None, uuid: str | None = None, seed: int | None = None,
               clock: str | None = None, trace: str | os.PathLike[str] | None = None, objects: Iterable[str] = (),
               extra: Sequence[str] = (), guest_agent: str | os.PathLike[str] | None = None,
               agent_mode: str | None = None, guest_os: str | None = None,
               guest_onlining: str | None = None) -> list[str]:
    """The ``serve`` argv for :func:`launch`'s keywords (``extra`` is appended as is)."""
    argv: list[str] = []
    if machine:
        argv += ["-machine", machine]
    if smp:
        argv += ["-smp", str(smp)]
    if cpu:
        argv += ["-cpu", cpu]
    if memory:
        argv += ["-m", str(memory)]
    for o in objects:
        argv += ["-object", o]
    for n in numa:
        argv += ["-numa", n]
    for d in devices:
        argv += ["-device", d]
    if accel:
        argv += ["-accel", accel]
    if paused:
        argv += ["-S"]
    if name:
        argv += ["-name", name]
    if uuid:
        argv += ["-uuid", uuid]
    if compat:
        argv += ["--compat", compat]
    if arch:
        argv += ["--arch", arch]
    if guest:
        argv += ["--guest", guest]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if clock:
        argv += ["--clock", clock]
    if trace:
        argv += ["--trace", str(trace)]
    for option, value in (("--guest-agent", guest_agent), ("--agent-mode", agent_mode), ("--guest-os", guest_os),
                          ("--guest-onlining", guest_onlining)):
        if value is not None:
            argv += [option, str(value)]
    return argv + list(extra)


def _cleanup(stop: Callable[[], None] | None, tmpdir: str | None) -> None:
    try:
        if stop is not None:
            stop()
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


class RunningVM:
    """A VM serving QMP on ``qmp_path``; a context manager (sync and async) that stops it on exit.

    ``qmp_address`` is ``unix:PATH`` (what ``python -m cpuhot show/replay`` take);
    :meth:`client` opens a negotiated :class:`cpuhot.client.QMPClient`.
    """

    def __init__(self, qmp_path: str, *, stderr: str = "", monitor: Monitor | None = None,
                 stop: Callable[[], None] | None = None, tmpdir: str | None = None,
                 process: subprocess.Popen[str] | None = None, argv: Sequence[str] = ()):
        self.qmp_path = qmp_path
        self.stderr = stderr
        self.monitor = monitor
        self.process = process
        self.argv = list(argv)
        # stops the VM and removes the socket directory at stop(), at garbage collection or at exit
        self._finalizer = weakref.finalize(self, _cleanup, stop, tmpdir)

    @property
    def qmp_address(self) -> str:
        return f"unix:{self.qmp_path}"

    @property
    def vm(self) -> VirtualMachine:
        """The in-process machine model; a VM in a subprocess has none here (RuntimeError)."""
        if self.monitor is None:
            raise RuntimeError("this VM runs in a subprocess (subprocess=True or --cpuhot-subprocess): its "
                               "machine model is not in this process; talk to it over QMP (.client())")
        return self.monitor.vm

    @property
    def running(self) -> bool:
        return self._finalizer.alive and (self.process is None or self.process.poll() is None)

    def client(self, **kw: Any) -> QMPClient:
        """A new negotiated QMP connection (``cpuhot.client.QMPClient``); close it (or use ``with``)."""
        from .client import QMPClient
        return QMPClient(self.qmp_address, **kw)

    def stop(self) -> None:
        """Stop the VM, remove its socket (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "RunningVM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "RunningVM":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        how = f"pid {self.process.pid}" if self.process is not None else "in-process"
        return f"<RunningVM {self.qmp_address} ({how}{'' if self.running else ', stopped'})>"


def launch_argv(argv: Sequence[str], *, subprocess_: bool = False, prog: str = "cpuhot",
                qmp_path: str | None = None) -> RunningVM:
    """Start a VM from a QEMU-style argv (without ``-qmp``: a private socket is added).

    >>> with launch_argv(["-machine", "pc", "-smp", "1,maxcpus=4"]) as vm:   # doctest: +SKIP
    ...     vm.client().execute("query-status")
    """
    tmpdir = None
    if qmp_path is None:
        tmpdir = tempfile.mkdtemp(prefix="cpuhot-")
        qmp_path = os.path.join(tmpdir, "qmp.sock")
    full = [*argv, "-qmp", f"unix:{qmp_path},server=on,wait=off"]
    try:
        if subprocess_:
            return _launch_subprocess(full, qmp_path, tmpdir)
        prepared = prepare(full, prog=prog)
        if prepared.exit_code is not None:
            raise LaunchError(prepared.exit_code, prepared.stderr)
        return _launch_thread(prepared, qmp_path, tmpdir, full)
    except BaseException:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def launch(*, subprocess: bool = False, qmp_path: str | None = None, **kw: Any) -> RunningVM:
    """Start a VM; returns once its QMP socket listens.

    Keywords: ``machine``, ``smp``, ``cpu``, ``memory``, ``objects``, ``numa``, ``devices``,
    ``accel``, ``paused`` (``-S``), ``name``, ``uuid``, ``compat`` (``"qemu-7.2"``), ``arch``,
    ``guest`` (``"cooperative"``, ``"none"``, ...), ``seed``, ``clock``, ``trace`` (a file:
    every QMP exchange as JSON lines), ``guest_agent`` (a socket path for the guest agent),
    ``agent_mode``, ``guest_os``, ``guest_onlining``, ``extra`` (more argv).

    >>> with launch(machine="q35", smp="2,maxcpus=8", guest="cooperative") as vm:   # doctest: +SKIP
    ...     with vm.client() as qmp:
    ...         print(len(qmp.execute("query-hotpluggable-cpus")))
    8
    """
    return launch_argv(build_argv(**kw), subprocess_=subprocess, qmp_path=qmp_path)


class _AsyncLaunch:
    """What :func:`launch_async` returns: awaitable (``vm = await launch_async(...)``) and an
    async context manager (``async with launch_async(...) as vm``)."""

    def __init__(self, argv: list[str], subprocess_: bool, qmp_path: str | None):
        self._argv = argv
        self._subprocess = subprocess_
        self._qmp_path = qmp_path
        self._vm: RunningVM | None = None

    async def _start(self) -> RunningVM:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, lambda: launch_argv(self._argv, subprocess_=self._subprocess,
                                                              qmp_path=self._qmp_path))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # cancelled while starting: stop the VM once it is up, then re-raise
            def stop_when_up(f: asyncio.Future[RunningVM]) -> None:
                if f.exception() is None:
                    f.result().stop()
            fut.add_done_callback(stop_when_up)
            raise

    def __await__(self) -> Generator[Any, None, RunningVM]:
        return self._start().__await__()

    async def __aenter__(self) -> RunningVM:
        self._vm = await self._start()
        return self._vm

    async def __aexit__(self, *exc: object) -> None:
        if self._vm is not None:
            await self._vm.__aexit__(*exc)
            self._vm = None


def launch_async(*, subprocess: bool = False, qmp_path: str | None = None, **kw: Any) -> _AsyncLaunch:
    """:func:`launch` for asyncio code: ``async with cpuhot.launch_async(...) as vm:``.

    Starting and stopping run in the loop's default executor, so the event loop never
    blocks; the VM is stopped and its socket removed when the block ends, also on an
    exception or a cancellation.

    >>> async def main():                                                  # doctest: +SKIP
    ...     async with cpuhot.launch_async(machine="pseries", smp="2,maxcpus=8") as vm:
    ...         reader, writer = await asyncio.open_unix_connection(vm.qmp_path)
    ...         print(await reader.readline())        # the QMP greeting
    ...         writer.close()
    """
    return _AsyncLaunch(build_argv(**kw), subprocess, qmp_path)


def _launch_thread(prepared: Prepared, qmp_path: str, tmpdir: str | None, argv: Sequence[str] = ()) -> RunningVM:
    from .qmp.server import QMPServer
    monitor = cast("Monitor", prepared.monitor)      # prepare() builds one whenever exit_code is None
    ready = threading.Event()
    state: dict[str, Any] = {}
    tracer = None
    if prepared.args is not None and prepared.args.trace_file:
        from .trace import Tracer
        tracer = Tracer(prepared.args.trace_file, argv=list(argv), prog="cpuhot")

    def run() -> None:
        async def main() -> None:
            server = QMPServer(monitor, tracer=tracer)
            state["server"] = server
            state["loop"] = asyncio.get_running_loop()
            try:
                for ep in prepared.endpoints:
                    await server.listen(ep)
                if prepared.agent_listeners:
                    from .qmp.agent_server import serve_agent
                    await serve_agent(server, prepared.agent_listeners)
            except BaseException as e:   # report bind failures to the caller
                state["error"] = e
                await server.close()
                ready.set()
                return
            state["stop"] = asyncio.Event()
            ready.set()
            serving = asyncio.ensure_future(server.serve_until_stopped())
            await state["stop"].wait()
            server.request_stop()
            await serving
        try:
            asyncio.run(main())
        finally:
            if tracer is not None:
                tracer.close()
            ready.set()

    thread = threading.Thread(target=run, name=f"cpuhot-vm {qmp_path}", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT) or "error" in state or "stop" not in state:
        stop_thread(state, thread)
        raise state.get("error") or LaunchError(1, "cpuhot: the VM did not start listening\n")
    return RunningVM(qmp_path, stderr=prepared.stderr, monitor=monitor,
                     stop=lambda: stop_thread(state, thread), tmpdir=tmpdir, argv=argv)


def stop_thread(state: dict[str, Any], thread: threading.Thread) -> None:
    loop, stop = state.get("loop"), state.get("stop")
    if loop is not None and stop is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            pass
    thread.join(10)


def _launch_subprocess(argv: list[str], qmp_path: str, tmpdir: str | None) -> RunningVM:
    errfile = tempfile.TemporaryFile(mode="w+")      # a file, not a pipe: a chatty VM never blocks on it
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=errfile, text=True)
    assert proc.stdout is not None          # stdout=PIPE
    stdout = proc.stdout
    line = stdout.readline()
    if not line:
        code = proc.wait()
        errfile.seek(0)
        err = errfile.read()
        stdout.close()
        errfile.close()
        raise LaunchError(code, err)

    def stop() -> None:
        terminate(proc)
        stdout.close()
        errfile.close()

    errfile.seek(0)
    return RunningVM(qmp_path, stderr=errfile.read(), stop=stop, tmpdir=tmpdir, process=proc, argv=argv)
