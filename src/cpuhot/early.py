"""Greet first: listen on the monitor sockets and send QMP's greeting before the heavy imports.

The console scripts and ``python -m cpuhot`` enter here.  For a ``serve`` command line whose
monitors are all ``-qmp unix:PATH[,server=on][,wait=off]`` on paths that do not exist yet,
:func:`main` binds and listens on those paths and starts a thread that accepts clients and
sends each the greeting, using nothing but the standard library's ``socket`` (no asyncio, no
VM model).  Then the usual start-up runs (the command line is read and checked, the VM built,
asyncio imported), and the server adopts the listening sockets and the greeted connections.
A client that connected meanwhile has its greeting at once and its first command answered as
soon as the server runs.

A command line the usual start-up refuses closes the greeted connections and removes the
sockets before the error is printed (QEMU listens only after its checks: a client that raced
a refused start-up sees a greeting and then EOF where QEMU's client sees no socket; the exit
status and stderr are QEMU's).  Every other command line (``-daemonize``, ``-chardev``/``-mon``,
TCP monitors, the default socket, informational options) takes the usual path unchanged.

This module must stay light: it imports only what the greeting needs (see
``tests/tools/test_startup.py``).
"""

from __future__ import annotations

import _socket      # the C module: socket.py builds its enums (and imports selectors) at import time
import _thread
import os
import select
import sys
TYPE_CHECKING = False     # not typing's: importing typing costs enum and re before the greeting
if TYPE_CHECKING:
    import socket

#: options after which the usual path is taken: they daemonize, write a PID file once listening,
#: name other monitors, keep state, or print and exit
_USUAL_PATH = frozenset({"daemonize", "pidfile", "chardev", "mon", "monitor", "h", "help", "version", "state"})


class EarlyGreeter:
    """Listening sockets bound before start-up, and a thread that greets whoever connects."""

    def __init__(self, paths: list[str], greeting: bytes, *, single_client: bool):
        self.greeting = greeting
        self.single_client = single_client
        self.sockets: dict[str, _socket.socket] = {}
        #: accepted connections, in order: (the path it came in on, the connection, whether it was greeted)
        self.accepted: list[tuple[str, _socket.socket, bool]] = []
        self._wake_r, self._wake_w = os.pipe()
        self._done: _thread.LockType | None = None
        old = os.umask(0o177)
        try:
            for path in paths:
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    sock.bind(path)
                except OSError:
                    sock.close()
                    raise
                self.sockets[path] = sock
                os.chmod(path, 0o600)
                sock.listen(_socket.SOMAXCONN)
        except OSError:
            self.abort()
            raise
        finally:
            os.umask(old)

    def start(self) -> None:
        self._done = _thread.allocate_lock()
        self._done.acquire()
        _thread.start_new_thread(self._main, ())

    def _main(self) -> None:
        try:
            self._run()
        finally:
            assert self._done is not None
            self._done.release()

    def _run(self) -> None:
        by_fd = {s.fileno(): (p, s) for p, s in self.sockets.items()}
        while True:
            ready, _, _ = select.select([self._wake_r, *by_fd], [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                path, sock = by_fd[fd]
                try:
                    fd, _ = sock._accept()     # type: ignore[attr-defined]  # socket.accept() without socket.py
                except OSError:
                    continue
                conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
                # each -qmp is a monitor of its own: one client at a time per socket, as in QEMU
                greet = not (self.single_client and any(g for p, _, g in self.accepted if p == path))
                if greet:
                    try:
                        conn.sendall(self.greeting)
                    except OSError:
                        conn.close()
                        continue
                self.accepted.append((path, conn, greet))

    def stop(self) -> None:
        """Stop greeting: from now on the server accepts (the sockets stay open)."""
        if self._done is not None:
            os.write(self._wake_w, b"x")
            self._done.acquire()           # the thread has returned
            self._done = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def take(self, path: str) -> tuple[socket.socket, list[tuple[socket.socket, bool]]]:
        """Hand over the listening socket of ``path`` and the connections accepted on it, in order,
        as :class:`socket.socket` objects (for asyncio), with whether each was greeted."""
        import socket
        sock = self.sockets.pop(path)
        listening = socket.socket(fileno=sock.detach())
        conns = [(socket.socket(fileno=c.detach()), greeted) for p, c, greeted in self.accepted if p == path]
        self.accepted = [a for a in self.accepted if a[0] != path]
        return listening, conns

    def abort(self) -> None:
        """The start-up failed: close everything and remove the socket files."""
        self.stop()
        for _, conn, _ in self.accepted:
            conn.close()
        self.accepted.clear()
        for path, sock in self.sockets.items():
            sock.close()
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.sockets.clear()


def _serve_argv(argv: list[str], prog: str) -> list[str] | None:
    if prog.startswith("cpuhot-system-"):
        return argv[1:] if argv[:1] == ["serve"] else argv
    if argv[:1] == ["serve"]:
        return argv[1:]
    if not argv or argv[0].startswith("-"):
        return argv
    return None


def plan(argv: list[str]) -> tuple[list[str], str] | None:
    """The UNIX monitor paths of a serve command line and its ``--compat`` profile, or None
    where the usual path must be taken."""
    paths: list[str] = []
    compat = "cpuhot"
    for n, raw in enumerate(argv):
        if not raw.startswith("-"):
            continue
        name = raw.lstrip("-").split("=", 1)[0]
        if name in _USUAL_PATH:
            return None
        if raw.startswith("--") and "=" in raw:
            value = raw.split("=", 1)[1]
        else:
            value = argv[n + 1] if n + 1 < len(argv) else ""
        if name == "compat":
            compat = value
        elif name == "qmp":
            if not value.startswith("unix:"):
                return None
            path, *opts = value[5:].split(",")
            if any(o not in ("server", "server=on", "wait=off", "nowait") for o in opts):
                return None
            if not path or os.path.lexists(path) or path in paths:
                return None         # a stale or busy socket: the usual path decides
            paths.append(path)
    return (paths, compat) if paths else None


#: what the greeting of each profile needs: (version, oob, single_client).  A copy of
#: cpuhot.profiles.PROFILES (importing it costs dataclasses and inspect before the greeting);
#: tests/tools/test_startup.py checks every entry against it.  A profile missing here takes
#: the usual path.
GREETING_PROFILES: dict[str, tuple[tuple[int, int, int], bool, bool]] = {
    "cpuhot": ((7, 2, 22), True, False),
    "qemu-7.2": ((7, 2, 22), True, True),
    "qemu-5.2": ((5, 2, 0), True, True),
    "qemu-10.0": ((10, 0, 13), True, True),
    "qemu-5.1": ((5, 1, 0), True, True),
    "qemu-2.7": ((2, 7, 1), False, True),
}


def greeting_bytes(compat: str) -> tuple[bytes, bool] | None:
    """The greeting of profile ``compat``, byte for byte as Monitor.greeting() through
    qmp.framing.encode, and whether the profile serves one client at a time."""
    from . import __version__
    entry = GREETING_PROFILES.get(compat)
    if entry is None:
        return None
    (major, minor, micro), oob, single = entry
    caps = '"oob"' if oob else ""
    text = (f'{{"QMP": {{"version": {{"qemu": {{"micro": {micro}, "minor": {minor}, "major": {major}}}, '
            f'"package": "cpuhot {__version__}"}}, "capabilities": [{caps}]}}}}\r\n')
    return text.encode("ascii"), single


def start(argv: list[str], prog: str) -> EarlyGreeter | None:
    serve_argv = _serve_argv(argv, prog)
    if serve_argv is None:
        return None
    planned = plan(serve_argv)
    if planned is None:
        return None
    paths, compat = planned
    made = greeting_bytes(compat)
    if made is None:
        return None
    greeting, single = made
    try:
        greeter = EarlyGreeter(paths, greeting, single_client=single)
    except OSError:
        return None                 # the usual path reports it as QEMU does
    greeter.start()
    return greeter


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "cpuhot"
    greeter = start(argv, prog)
    from .cli import main as cli_main
    return cli_main(argv, early=greeter)
