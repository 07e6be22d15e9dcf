"""``python -m cpuhot fleet``: many independent simulated VMs served by one process.

    python -m cpuhot fleet --count 1000 --smp 4,maxcpus=16 --dir /tmp/fleet
    python -m cpuhot fleet --count 50 -machine pseries -smp 2,maxcpus=32 --dir DIR --summary

Every VM is built from the same serve options (QEMU's argv, as ``serve`` takes them, parsed
by :func:`cpuhot.cli.prepare`) and has its own machine model, monitor and QMP socket
``DIR/vm-0001.qmp``, ``DIR/vm-0002.qmp``, ...  (mode 0600; DIR is created with mode 0700 when
it does not exist).  Unless the options name the VM (``-name``), VM k is named ``vm-000k``
(``query-name`` tells clients which VM they reached).  All VMs share one event loop: a VM's
commands are as atomic as in ``serve``, and one VM's clients never see another VM's state.

Output: one ``unix:PATH`` line per socket once every VM serves (``--summary``: one line).
``SIGINT``/``SIGTERM`` stop every VM and remove the sockets; a VM that receives ``quit``
stops alone and the process exits when the last VM has stopped.

Options of the fleet itself (the rest goes to every VM):

``--count N``     how many VMs (default 1)
``--dir DIR``     where the sockets go (default: a new directory in the user's runtime directory)
``--summary``     print one summary line instead of one line per socket
``--first K``     number the VMs from K (default 1)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from .cli import Prepared, die_of_signal, prepare, program_name

if TYPE_CHECKING:
    from .qmp.protocol import Monitor
    from .qmp.server import QMPServer

log = logging.getLogger("cpuhot.fleet")

USAGE = """usage: python -m cpuhot fleet --count N [--dir DIR] [--summary] [--first K] [serve options]

Serves N independent simulated VMs from one process, VM k on DIR/vm-000k.qmp.
serve options: as for 'python -m cpuhot serve' (-machine, -smp, -cpu, --compat, --guest, ...),
except those that name a monitor, a state file, a PID file or daemonize: every VM gets its own socket.
"""

#: serve options a fleet cannot pass on to every VM
REFUSED = {
    "qmp": "every VM gets its own socket in --dir",
    "mon": "every VM gets its own socket in --dir",
    "chardev": "every VM gets its own socket in --dir",
    "monitor": "every VM gets its own socket in --dir",
    "state": "the VMs would share one state file",
    "pidfile": "the fleet is one process",
    "daemonize": "run the fleet in the foreground",
    "incoming": "migrate VMs one by one with 'serve'",
    "trace-file": "the VMs would share one trace file",
    "-trace": "the VMs would share one trace file; trace one VM with 'serve --trace FILE'",
}

MAX_COUNT = 100_000


class FleetUsageError(Exception):
    pass


def parse_args(argv: list[str]) -> tuple[int, str | None, bool, int, list[str]]:
    """Split the fleet's own options from the serve options: (count, dir, summary, first, serve argv)."""
    count: int | None = None
    directory, summary, first = None, False, 1
    rest: list[str] = []
    i = 0

    def value(name: str) -> str:
        nonlocal i
        if "=" in argv[i]:
            return argv[i].split("=", 1)[1]
        if i + 1 >= len(argv):
            raise FleetUsageError(f"{name} requires an argument")
        i += 1
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in ("--count", "-count"):
            text = value("--count")
            if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
                raise FleetUsageError(f"--count: '{text}' is not a number from 1 to {MAX_COUNT}")
            count = int(text)
        elif name in ("--first", "-first"):
            text = value("--first")
            if not text.isdigit():
                raise FleetUsageError(f"--first: '{text}' is not a non-negative number")
            first = int(text)
        elif name in ("--dir", "-dir"):
            directory = value("--dir")
        elif name in ("--summary", "-summary"):
            summary = True
        elif name in ("--help", "-h", "-help"):
            raise FleetUsageError("help")
        else:
            bare = name.lstrip("-")
            if name == "--trace":            # cpuhot's --trace (QEMU's -trace stays harmless)
                bare = "-trace"
            if arg.startswith("-") and bare in REFUSED:
                raise FleetUsageError(f"{arg}: not available in a fleet ({REFUSED[bare]})")
            rest.append(arg)
        i += 1
    if count is None:
        raise FleetUsageError("--count N is required (how many VMs)")
    return count, directory, summary, first, rest


def default_directory() -> str:
    from .rundir import runtime_dir      # refuses a /tmp/cpuhot-UID that is not ours
    return os.path.join(runtime_dir(), f"fleet-{os.getpid()}")


def ensure_directory(path: str) -> bool:
    """Create DIR with mode 0700 (True) or check that an existing DIR is a directory the user owns."""
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)       # whatever the umask (a umask of 0177 made it 0600: unusable)
        return True
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} exists and is not a directory")
    if st.st_uid != os.getuid():
        raise OSError(f"{path} belongs to another user")
    return False


def _has_name(argv: list[str]) -> bool:
    return any(a.lstrip("-").split("=", 1)[0] == "name" for a in argv if a.startswith("-"))


def raise_fd_limit(needed: int) -> None:
    """Each VM holds a listening socket and each client one more: lift the soft limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Fleet:
    """N prepared VMs and their servers, on one event loop."""

    def __init__(self, prepared: list[Prepared], names: list[str], directory: str, prog: str):
        self.prepared = prepared
        self.names = names
        self.directory = directory
        self.prog = prog
        self.servers: list[QMPServer] = []
        self.paths: list[str] = []

    def _sink(self, name: str) -> Callable[[list[tuple[bool, str]]], None]:
        prog = self.prog

        def sink(lines: list[tuple[bool, str]]) -> None:
            sys.stderr.write("".join(f"{prog}: {name}: {text}\n" if prefixed else f"{name}: {text}\n"
                                     for prefixed, text in lines))
            sys.stderr.flush()
        return sink

    async def start(self) -> None:
        from .qmp.server import Endpoint, QMPServer
        for prepared, name in zip(self.prepared, self.names):
            monitor = cast("Monitor", prepared.monitor)     # prepare() builds one whenever exit_code is None
            server = QMPServer(monitor, name=name, stderr_sink=self._sink(name))
            path = os.path.join(self.directory, f"{name}.qmp")
            self.servers.append(server)
            await server.listen(Endpoint("unix", path=path))
            self.paths.append(path)

    def stop(self) -> None:
        for server in self.servers:
            server.request_stop()

    async def run(self) -> int:
        results = await asyncio.gather(*(s.serve_until_stopped() for s in self.servers),
                                       return_exceptions=True)
        for server, result in zip(self.servers, results):
            if isinstance(result, BaseException):
                log.error("%s stopped with an error", server.name, exc_info=result)
        return max([s.exit_code for s in self.servers] + [0])

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers), return_exceptions=True)


def build(count: int, first: int, serve_argv: list[str],
          prog: str) -> tuple[list[str], list[Prepared], str, str, int | None]:
    """Prepare every VM; returns (names, prepared list, stderr of the first, exit code or None)."""
    width = max(4, len(str(first + count - 1)))
    names = [f"vm-{k:0{width}d}" for k in range(first, first + count)]
    named = _has_name(serve_argv)
    prepared: list[Prepared] = []
    for name in names:
        argv = serve_argv if named else [*serve_argv, "-name", name]
        p = prepare(argv, prog=prog, default_endpoint=False)
        if p.exit_code is not None:
            return names, prepared, p.stdout, p.stderr, p.exit_code
        prepared.append(p)
    return names, prepared, "", prepared[0].stderr if prepared else "", None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = program_name()
    try:
        count, directory, summary, first, serve_argv = parse_args(argv)
    except FleetUsageError as e:
        if str(e) == "help":
            print(USAGE, end="")
            return 0
        print(f"{prog} fleet: {e}", file=sys.stderr)
        print(USAGE.splitlines()[0], file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    try:
        names, prepared, stdout, stderr, code = build(count, first, serve_argv, prog)
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)            # the same warnings for every VM: printed once
    sys.stderr.flush()
    if code is not None and code < 0:
        die_of_signal(-code)            # a start-up QEMU aborts on: every VM would (cli.die_of_signal)
    if code is not None:
        return code
    for p in prepared:
        if getattr(p, "sockets", None) or p.endpoints:
            print(f"{prog} fleet: monitors are not available in a fleet (every VM gets its own socket)",
                  file=sys.stderr)
            return 1
    try:
        directory = directory or default_directory()
    except OSError as e:           # rundir.RuntimeDirError: a runtime directory that is not ours
        print(f"{prog} fleet: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        created = ensure_directory(directory)
    except OSError as e:
        print(f"{prog} fleet: --dir {directory}: {e.strerror or e}", file=sys.stderr)
        return 1
    raise_fd_limit(count + 256)
    try:
        return asyncio.run(_main(prepared, names, directory, prog, summary=summary, started=t0))
    finally:
        if created:
            try:
                os.rmdir(directory)     # ours, and empty once the sockets are gone
            except OSError:
                pass


async def _main(prepared: list[Prepared], names: list[str], directory: str, prog: str, *, summary: bool,
                started: float) -> int:
    fleet = Fleet(prepared, names, directory, prog)
    try:
        await fleet.start()
    except OSError as e:
        from .qmp.server import SocketInUse
        path = os.path.join(directory, f"{names[len(fleet.paths)]}.qmp")
        reason = e.strerror if isinstance(e, SocketInUse) else os.strerror(e.errno) if e.errno else str(e)
        print(f"{prog} fleet: {path}: {reason}", file=sys.stderr)
        await fleet.close()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet.stop)
    if summary:
        print(f"serving {len(fleet.paths)} VMs: unix:{fleet.paths[0]} ... unix:{fleet.paths[-1]} "
              f"(ready in {time.perf_counter() - started:.2f} s)", flush=True)
    else:
        sys.stdout.write("".join(f"unix:{p}\n" for p in fleet.paths))
        sys.stdout.flush()
    # Everything built so far lives as long as the fleet: keep it out of the collector's way,
    # so that full collections stay short however many VMs there are, and collect the young
    # generation less often (what a command allocates is freed by reference counting anyway).
    gc.collect()
    gc.freeze()
    threshold, *older = gc.get_threshold()
    gc.set_threshold(max(threshold, 20_000), *older)
    try:
        return await fleet.run()
    finally:
        await fleet.close()
