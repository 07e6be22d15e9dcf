"""File descriptors passed to the monitor over its UNIX socket (SCM_RIGHTS): ``getfd``/``closefd``.

libvirt hands QEMU the file or socket a migration goes to by sending it with a
``getfd`` command (``{"fdname": "migrate"}``) and then naming it in a URI
(``migrate`` with ``fd:migrate``).  QEMU's behaviour, as QEMU 7.2 shows it:

* fds arrive with the bytes of a command; ``getfd`` takes the one that came
  last; without one it fails with ``No file descriptor supplied via SCM_RIGHTS``;
* a name starting with a digit is refused (``Parameter 'fdname' expects a name
  not starting with a digit``), and the fd is closed;
* ``getfd`` with a name already in use replaces (and closes) the old fd;
* ``closefd`` of an unknown name: ``File descriptor named 'X' not found``;
* ``fd:NAME`` in a URI takes the fd out of the table (``File descriptor named
  'X' has not been found`` when absent); ``fd:N`` (digits) is the process's own
  fd N, as for ``-incoming fd:N`` and ``migrate-incoming`` with ``fd:25``.

asyncio's socket transports read with ``recv``, which would drop (close) the
fds.  :func:`receive_fds` switches a connection's socket to a subclass whose
``recv`` is a ``recvmsg``; the fds it gets wait in :data:`_RECEIVED` until the
connection picks them up (:func:`take_received`) with the same bytes.
"""

from __future__ import annotations

import array
import asyncio
import os
import socket
import weakref
from collections.abc import Iterable

from ..machine.errors import GenericError

#: at most this many fds are taken from one read; more are closed by the kernel (MSG_CTRUNC)
MAX_FDS_PER_READ = 16
#: at most this many named fds per monitor (QEMU has no limit; cpuhot bounds what a client can pin)
MAX_NAMED_FDS = 64

_RECEIVED: "weakref.WeakKeyDictionary[socket.socket, list[int]]" = weakref.WeakKeyDictionary()


class _FdSocket(socket.socket):
    """A ``socket.socket`` whose ``recv`` also keeps the fds that come with the bytes."""

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancdata, _msg_flags, _addr = self.recvmsg(
            bufsize, socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize),
            flags | socket.MSG_CMSG_CLOEXEC)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                fds.extend(a)
        if fds:
            _RECEIVED.setdefault(self, []).extend(fds)
        return data


def receive_fds(transport: asyncio.BaseTransport) -> bool:
    """Make ``transport`` (an accepted UNIX connection) keep passed fds; False if it cannot."""
    sock = getattr(transport, "_sock", None)
    if type(sock) is socket.socket and sock.family == socket.AF_UNIX:
        sock.__class__ = _FdSocket
        return True
    return isinstance(sock, _FdSocket)


def take_received(transport: asyncio.BaseTransport) -> list[int]:
    """The fds that arrived on ``transport`` since the last call (the caller owns them)."""
    sock = getattr(transport, "_sock", None)
    if sock is None:
        return []
    return _RECEIVED.pop(sock, [])


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class FdTable:
    """A monitor's named fds (QEMU's ``mon->fds``)."""

    def __init__(self) -> None:
        self.named: dict[str, int] = {}

    def getfd(self, name: str, fd: int | None) -> None:
        if fd is None:
            raise GenericError("No file descriptor supplied via SCM_RIGHTS")
        if name[:1].isdigit():
            close_all([fd])
            raise GenericError("Parameter 'fdname' expects a name not starting with a digit")
        if name not in self.named and len(self.named) >= MAX_NAMED_FDS:
            close_all([fd])
            raise GenericError(f"cpuhot holds at most {MAX_NAMED_FDS} named file descriptors")
        old = self.named.get(name)
        self.named[name] = fd
        if old is not None:
            close_all([old])

    def closefd(self, name: str) -> None:
        fd = self.named.pop(name, None)
        if fd is None:
            raise GenericError(f"File descriptor named '{name}' not found")
        close_all([fd])

    def take(self, name: str) -> int:
        """The fd an ``fd:`` URI names; a named one leaves the table (the migration owns it)."""
        if name.isdigit():
            fd = int(name)
            try:
                os.fstat(fd)
            except OSError:
                raise GenericError(f"File descriptor named '{name}' has not been found") from None
            return fd
        named = self.named.pop(name, None)
        if named is None:
            raise GenericError(f"File descriptor named '{name}' has not been found")
        return named

    def close(self) -> None:
        close_all(self.named.values())
        self.named.clear()
