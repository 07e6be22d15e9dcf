"""Listening UNIX sockets as QEMU makes them (mode 0600, a stale socket replaced, nothing else).

Used by the monitor server and by the incoming side of a migration.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

log = logging.getLogger("cpuhot.qmp.server")


class SocketInUse(OSError):
    pass


def bind_unix_socket(path: str) -> socket.socket:
    """Bind a listening UNIX socket with mode 0600, replacing a stale socket file.

    A socket file that still has a live server behind it is not stolen, nor is
    anything that is not a socket (a file, a symbolic link): :class:`SocketInUse`
    is raised instead.
    """
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketInUse(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("replacing the stale socket %s (nobody listens on it)", path)
            try:
                os.unlink(path)         # stale: nobody listens any more
            except FileNotFoundError:
                pass
        else:
            raise SocketInUse(errno.EADDRINUSE, f"{path} is in use by a running server")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
