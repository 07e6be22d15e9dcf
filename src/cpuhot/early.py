"""Greet first: listen on the monitor sockets and send QMP's greeting before the heavy imports.

The console scripts and ``python -m cpuhot`` enter here.  For a ``serve`` command line whose
monitors :func:`plan` can take — ``-qmp unix:PATH`` and ``-qmp tcp:ADDR:PORT`` (``server=on,wait=off``),
``-chardev socket,id=ID,path=PATH|host=ADDR,port=PORT|fd=N,server=on,wait=off`` with
``-mon chardev=ID,mode=control`` — :func:`main` listens on them (an inherited ``fd=N``, libvirt's
way, is already listening) and starts a thread that accepts clients and sends each the greeting,
using nothing but the standard library's C modules (no asyncio, no VM model).  ``-pidfile`` is
written before the first greeting.  ``-daemonize`` forks first and the daemon writes the pid file,
then listens and greets, as QEMU 5.2, 7.2 and 10.0 do (``tests/tools/data/qemu-daemonize.json``:
the greeting comes from the daemon while the original process still waits, which exits 0 once
the daemon serves, :class:`cpuhot.daemon.Daemon`); in the daemon, what fails early is left to the
server, which tries again and reports it as the usual path does.
Then the usual start-up runs (the command line is read and checked, the VM built, asyncio
imported), and the server adopts the listening sockets and the greeted connections.  A client
that connected meanwhile has its greeting at once and its first command answered as soon as the
server runs.

A command line the usual start-up refuses closes the greeted connections, removes the sockets
and the pid file before the error is printed (a client that raced a refused start-up sees a
greeting and then EOF; the exit status and stderr are QEMU's.  QEMU 7.2, refusing ``-smp``, has
already created its ``-qmp`` socket and leaves the file behind, and removes the pid file it wrote,
a stale one included: cpuhot removes both).  Whatever the early path cannot decide — an address it cannot bind,
a path that exists, an fd that is not a listening socket, a pid file it cannot write, an option it
does not know — it leaves to the usual path, which reports it as before; informational options
and the default socket take the usual path too.

For ``serve`` command lines, SIGINT, SIGHUP and SIGTERM are blocked before any thread exists, so
that every thread inherits the mask and the server can take them with ``sigwaitinfo`` (which
tells the sender's pid: QEMU's ``terminating on signal N from pid P (NAME)``); see
:func:`block_termination_signals`.

This module must stay light: it imports only what the greeting needs (see
``tests/tools/test_startup.py``).
"""

from __future__ import annotations

import _socket      # the C module: socket.py builds its enums (and imports selectors) at import time
import _thread
import os
import select
import sys

from .argv_options import scan_options
from .daemon import TERMINATION_SIGNALS, Daemon, PidFile

TYPE_CHECKING = False     # not typing's: importing typing costs enum and re before the greeting
if TYPE_CHECKING:
    import signal as _signal
    import socket
else:
    import _signal    # the C module: signal.py builds enums at import time

class Plan:
    """What :func:`plan` found in a serve command line."""

    def __init__(self) -> None:
        #: (key, kind, address) of each monitor to listen on: kind "unix" (address: the absolute
        #: path), "tcp" (address: (host, port)) or "fd" (address: the inherited socket's number)
        self.listeners: list[tuple[str, str, object]] = []
        self.compat = "cpuhot"
        self.daemonize = False
        self.pidfile: str | None = None

    def __repr__(self) -> str:
        return (f"Plan(listeners={self.listeners!r}, compat={self.compat!r}, daemonize={self.daemonize!r}, "
                f"pidfile={self.pidfile!r})")


class EarlyGreeter:
    """Listening sockets made before start-up, and a thread that greets whoever connects.

    Keys: ``unix:PATH`` (PATH absolute), ``tcp:HOST:PORT`` (as given) and ``fd:N``.
    """

    def __init__(self, greeting: bytes, *, single_client: bool):
        self.greeting = greeting
        self.single_client = single_client
        self.sockets: dict[str, _socket.socket] = {}
        #: the UNIX socket files made here (removed by :meth:`abort`)
        self.files: dict[str, str] = {}
        #: accepted connections, in order: (the key it came in on, the connection, whether it was greeted)
        self.accepted: list[tuple[str, _socket.socket, bool]] = []
        #: the pid file written here (handed over to the server, removed by :meth:`abort`)
        self.pidfile: PidFile | None = None
        #: -daemonize: the daemon's channel to the waiting original process
        self.daemon: Daemon | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._done: _thread.LockType | None = None
        self._switch_interval = 0.005

    def listen(self, listeners: list[tuple[str, str, object]]) -> None:
        """Listen on every monitor of :attr:`Plan.listeners`; on an error none is left open."""
        try:
            for key, kind, address in listeners:
                self.sockets[key] = self._listen(key, kind, address)
        except OSError:
            self.abort()
            raise

    def _listen(self, key: str, kind: str, address) -> _socket.socket:
        if kind == "fd":
            sock = _socket.socket(fileno=address)
            try:
                listening = (sock.type == _socket.SOCK_STREAM
                             and sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN))
            except OSError:
                listening = False
            if not listening:
                sock.detach()            # not ours to close
                raise OSError("not a listening stream socket")
            return sock
        if kind == "tcp":
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            try:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)    # as asyncio's reuse_address
                sock.bind(address)
                sock.listen(_socket.SOMAXCONN)
            except OSError:
                sock.close()
                raise
            return sock
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        self.files[key] = address
        try:
            os.chmod(address, 0o600)
            sock.listen(_socket.SOMAXCONN)
        except OSError:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        # the main thread imports and builds meanwhile, holding the GIL: with the default 5 ms
        # switch interval each step of a greeting (select, accept, send) could wait that long
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
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
        by_fd = {s.fileno(): (k, s) for k, s in self.sockets.items()}
        while True:
            ready, _, _ = select.select([self._wake_r, *by_fd], [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                key, sock = by_fd[fd]
                try:
                    fd, _ = sock._accept()     # type: ignore[attr-defined]  # socket.accept() without socket.py
                except OSError:
                    continue
                conn = _socket.socket(sock.family, _socket.SOCK_STREAM, 0, fd)
                # each -qmp is a monitor of its own: one client at a time per socket, as in QEMU
                greet = not (self.single_client and any(g for k, _, g in self.accepted if k == key))
                if greet:
                    try:
                        conn.sendall(self.greeting)
                    except OSError:
                        conn.close()
                        continue
                self.accepted.append((key, conn, greet))

    def stop(self) -> None:
        """Stop greeting: from now on the server accepts (the sockets stay open)."""
        if self._done is not None:
            os.write(self._wake_w, b"x")
            self._done.acquire()           # the thread has returned
            self._done = None
            sys.setswitchinterval(self._switch_interval)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def key_of(self, kind: str, address: object) -> str | None:
        """The key of a monitor the server is about to serve (kind "unix": its path, "tcp":
        (host, port) as the command line gave them, "fd": the socket's number), if it is here."""
        if kind == "unix":
            key = f"unix:{os.path.abspath(str(address))}"
        elif kind == "tcp":
            host, port = address if isinstance(address, tuple) else ("", 0)
            key = f"tcp:{host}:{port}"
        else:
            key = f"fd:{address}"
        return key if key in self.sockets else None

    def take(self, key: str) -> tuple[socket.socket, list[tuple[socket.socket, bool]]]:
        """Hand over the listening socket of ``key`` and the connections accepted on it, in order,
        as :class:`socket.socket` objects (for asyncio), with whether each was greeted.  An
        inherited fd's listening socket is left to its owner: None stands for it."""
        import socket
        sock = self.sockets.pop(key)
        self.files.pop(key, None)
        fileno = sock.detach()
        listening = None if key.startswith("fd:") else socket.socket(fileno=fileno)
        conns = [(socket.socket(fileno=c.detach()), greeted) for k, c, greeted in self.accepted if k == key]
        self.accepted = [a for a in self.accepted if a[0] != key]
        return listening, conns  # type: ignore[return-value]

    def take_pidfile(self) -> PidFile | None:
        pid, self.pidfile = self.pidfile, None
        return pid

    def abort(self) -> None:
        """The start-up failed: close everything, remove the socket files and the pid file."""
        self.stop()
        for _, conn, _ in self.accepted:
            conn.close()
        self.accepted.clear()
        for key, sock in self.sockets.items():
            if key.startswith("fd:"):
                sock.detach()              # the inherited socket stays its owner's
            else:
                sock.close()
        self.sockets.clear()
        for path in self.files.values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.files.clear()
        if self.pidfile is not None:
            self.pidfile.remove()
            self.pidfile = None


def block_termination_signals() -> None:
    """Block SIGINT, SIGHUP and SIGTERM in this thread and in every thread it starts from now on:
    the server takes them with ``sigwaitinfo`` (cpuhot.cli).  One that arrives during start-up
    waits for the server, as QEMU's handler only flags it for its main loop."""
    _signal.pthread_sigmask(_signal.SIG_BLOCK, TERMINATION_SIGNALS)


def _serve_argv(argv: list[str], prog: str) -> list[str] | None:
    if prog.startswith("cpuhot-system-"):
        return argv[1:] if argv[:1] == ["serve"] else argv
    if argv[:1] == ["serve"]:
        return argv[1:]
    if not argv or argv[0].startswith("-"):
        return argv
    return None


def _ipv4(host: str) -> bool:
    """A dotted-quad address (never a host name: nothing here may look a name up)."""
    try:
        _socket.inet_pton(_socket.AF_INET, host)
    except OSError:
        return False
    return True


def _pairs(text: str) -> list[tuple[str, str | None]] | None:
    """``k=v,flag,...`` as (key, value or None); None where QemuOpts' escapes (``,,``) appear."""
    if ",," in text or not text:
        return None
    out: list[tuple[str, str | None]] = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        out.append((key, value if eq else None))
    return out


#: listening options a monitor may have on the early path (all mean server=on,wait=off)
_SERVER_OPTS = {("server", None), ("server", "on"), ("wait", "off"), ("nowait", None)}


def _qmp_listener(value: str) -> tuple[str, str, object] | None:
    spec, *opts = value.split(",")
    if any((o.partition("=")[0], o.partition("=")[2] if "=" in o else None) not in _SERVER_OPTS for o in opts):
        return None
    if spec.startswith("unix:"):
        return _unix_listener(spec[5:])
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        return _tcp_listener(host, port)
    return None


def _unix_listener(path: str) -> tuple[str, str, object] | None:
    if not path or os.path.lexists(path):
        return None                      # a stale or busy socket: the usual path decides
    path = os.path.abspath(path)
    return f"unix:{path}", "unix", path


def _tcp_listener(host: str, port: str) -> tuple[str, str, object] | None:
    if not _ipv4(host) or not port.isdigit() or int(port) > 65535:
        return None
    return f"tcp:{host}:{int(port)}", "tcp", (host, int(port))


def _chardev_listener(text: str) -> tuple[str | None, tuple[str, str, object] | None]:
    """(id, listener) of ``-chardev socket,...``; listener None where the early path cannot serve it."""
    pairs = _pairs(text)
    if pairs is None:
        return None, None
    first, *rest = pairs
    if first == ("backend", "socket") or first == ("socket", None):
        pass
    else:
        return None, None
    given = dict(rest)
    ident = given.get("id")
    if len(given) != len(rest) or any(k not in ("id", "path", "host", "port", "fd") and (k, v) not in _SERVER_OPTS
                                      for k, v in rest):
        return ident, None
    if not (("server", None) in rest or ("server", "on") in rest) or not (("wait", "off") in rest
                                                                          or ("nowait", None) in rest):
        return ident, None
    where = [k for k in ("path", "host", "fd") if k in given]
    if len(where) != 1 or not ident:
        return ident, None
    if where == ["path"]:
        return ident, _unix_listener(given["path"] or "")
    if where == ["host"]:
        return ident, _tcp_listener(given["host"] or "", given.get("port") or "")
    fd = given["fd"] or ""
    if not fd.isdigit() or "port" in given:
        return ident, None
    return ident, (f"fd:{int(fd)}", "fd", int(fd))


def plan(argv: list[str]) -> Plan | None:
    """The monitors of a serve command line the early path can listen on, its ``--compat``
    profile, ``-daemonize`` and ``-pidfile``; None where the usual path must be taken."""
    result = Plan()
    chardevs: dict[str, tuple[str, str, object] | None] = {}
    mons: list[str] = []
    options = scan_options(argv)
    if options is None or any(kind == "info" for _, _, _, kind in options):
        return None                      # informational (-version, -h) or unknown: the usual path
    for _raw, name, value, _kind in options:
        if value is not None and any(part in ("help", "?") or part.endswith("=help")
                                     for part in value.split(",")):
            return None                  # -machine help, -cpu help, -device help, ...: they print
        if name == "compat":
            result.compat = value or ""
        elif name == "qmp":
            listener = _qmp_listener(value or "")
            if listener is None:
                return None
            result.listeners.append(listener)
        elif name == "chardev":
            ident, listener = _chardev_listener(value or "")
            if ident is not None:
                if ident in chardevs:
                    return None          # a duplicate id: the usual path refuses it
                chardevs[ident] = listener
        elif name == "mon":
            mons.append(value or "")
        elif name == "daemonize":
            result.daemonize = True
        elif name == "pidfile":
            result.pidfile = value
    used: set[str] = set()
    for text in mons:
        pairs = _pairs(text)
        if pairs is None:
            return None
        opts: dict[str, str | None] = {}
        for n, (k, v) in enumerate(pairs):
            if v is None and n == 0:
                k, v = "chardev", k
            if k not in ("chardev", "mode", "pretty", "id") or v is None or k in opts:
                return None
            opts[k] = v
        ident = opts.get("chardev")
        if opts.get("mode") != "control" or opts.get("pretty", "off") != "off" or ident in used:
            return None
        listener = chardevs.get(ident or "")
        if listener is None:
            return None
        used.add(ident or "")
        result.listeners.append(listener)
    keys = [k for k, _, _ in result.listeners]
    if not keys or len(set(keys)) != len(keys):
        return None
    return result


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


def start(argv: list[str], prog: str) -> EarlyGreeter | int | None:
    """Take the early path for ``argv`` if it can: the greeter (in the daemon, with -daemonize),
    the exit status for the original process of a daemonizing start-up, or None."""
    serve_argv = _serve_argv(argv, prog)
    if serve_argv is None:
        return None
    planned = plan(serve_argv)
    if planned is None:
        return None
    made = greeting_bytes(planned.compat)
    if made is None:
        return None
    greeting, single = made
    greeter = EarlyGreeter(greeting, single_client=single)
    if planned.daemonize:
        # QEMU's order: fork, pid file, monitors.  In the daemon there is no usual path to fall back
        # to: what fails here is left to the server (cpuhot.cli), which tries again and reports it
        # as before, and nobody is greeted early
        daemon = Daemon()
        status = daemon.start()
        if status is not None:
            greeter.stop()
            return status           # the original process: 0 once the daemon serves, 1 if it failed
        greeter.daemon = daemon
        pid = PidFile(planned.pidfile) if planned.pidfile else None
        try:
            if pid is not None:
                pid.write()
                greeter.pidfile = pid
            greeter.listen(planned.listeners)
        except OSError:
            greeter.abort()         # (the pid file too: the server writes it again)
            return greeter
        greeter.start()
        return greeter
    try:
        greeter.listen(planned.listeners)
    except OSError:
        greeter.stop()
        return None                 # the usual path reports it as QEMU does
    if planned.pidfile:
        pid = PidFile(planned.pidfile)
        try:
            pid.write()             # once every monitor listens, as the usual path does
        except OSError:
            greeter.abort()
            return None             # the usual path writes it, and reports what stops it
        greeter.pidfile = pid
    greeter.start()
    return greeter


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "cpuhot"
    if _serve_argv(argv, prog) is not None:
        block_termination_signals()     # before any thread (the greeter's, vCPUs'): they inherit the mask
    greeter = start(argv, prog)
    if isinstance(greeter, int):
        return greeter
    from .cli import main as cli_main
    return cli_main(argv, early=greeter)
