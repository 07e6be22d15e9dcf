"""``-daemonize`` and ``-pidfile``: the double fork and QEMU's pid file, with nothing but ``os``.

Light on purpose: :mod:`cpuhot.early` forks and writes the pid file before the heavy imports, and
:mod:`cpuhot.dropin` uses the same two classes on the usual path.

What a client sees of a daemonizing QEMU (5.2, 7.2 and 10.0 alike, recorded by
``tools/record_daemonize.py`` in ``tests/tools/data/qemu-daemonize.json``): the pid file holds the
daemon's pid before its monitor socket accepts, the daemon itself greets (``SO_PEERCRED``) while
the original process still waits, and the original process exits 0 only once the start-up is
complete (some 25 ms after the greeting for 7.2 here).  cpuhot's early path does the same; its
usual path (:mod:`cpuhot.dropin`) listens, then writes the pid file, then lets the parent go.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False     # not typing's (enum, re): mypy knows the name
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal    # the C module: signal.py builds enums at import time

#: what QEMU's termsig_handler takes (``_signal``'s numbers: the ``signal`` module costs ``enum``)
TERMINATION_SIGNALS = (_signal.SIGINT, _signal.SIGHUP, _signal.SIGTERM)


class PidFile:
    """QEMU's ``qemu_write_pidfile``: create (0600), lock, check it is still the path, write ``PID\\n``.

    The lock is held (and the file removed by :meth:`remove`) for the life of the process.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.fd: int | None = None

    def write(self) -> None:
        import fcntl
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError as e:
                raise OSError(e.errno, f"Could not create '{self.path}': {e.strerror}") from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                raise OSError(e.errno, f"Cannot lock pid file: {e.strerror}") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)                 # removed under us: someone else raced; try again
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def remove(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None




class Daemon:
    """Double fork + ``setsid``; the grandchild reports readiness (or failure) through a pipe.

    >>> # d = Daemon(); if d.fork_and_wait_in_parent() is not None: sys.exit(it) ... (see cli.serve)
    """

    def __init__(self) -> None:
        self._w: int | None = None

    def start(self) -> int | None:
        """Fork.  In the original process: wait for the daemon and return the exit status for it
        (0: serving, 1: failed).  In the daemon: return None and carry on."""
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid > 0:
            os.close(w)
            # the original process only waits: a signal ends the wait as before
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, TERMINATION_SIGNALS)
            status = b""
            while True:
                try:
                    chunk = os.read(r, 1)
                except InterruptedError:
                    continue
                status = chunk
                break
            os.close(r)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return 0 if status == b"\0" else 1
        os.close(r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        self._w = w
        return None

    def ready(self) -> None:
        """In the daemon, once it serves: detach stdio, tell the parent, leave the directory."""
        devnull = os.open(os.devnull, os.O_RDWR)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        if self._w is not None:
            os.write(self._w, b"\0")
            os.close(self._w)
            self._w = None
        os.chdir("/")

    def failed(self) -> None:
        if self._w is not None:
            sys.stderr.flush()
            os.write(self._w, b"\1")
            os.close(self._w)
            self._w = None
