"""Migration over a passed file descriptor (``fd:`` URIs): what libvirt uses for save and restore.

``virsh save`` (libvirt 9.0 with QEMU 7.2, as recorded): ``getfd {"fdname": "migrate"}``
(the file, or a pipe to libvirt's I/O helper, rides along with SCM_RIGHTS), then
``migrate {"uri": "fd:migrate", "detach": true, "resume": false}``; libvirt polls
``query-migrate`` until ``completed`` and kills the source.  ``virsh restore`` starts the
target with ``-incoming defer`` and an inherited fd, plugs the hot-plugged vCPUs with
``device_add``, then ``migrate-incoming {"uri": "fd:25"}``: QEMU reports
``MIGRATION setup``, ``active`` and ``completed`` (or ``failed``; it then prints why and
exits 1, as for a socket).

The fd may be a regular file, a pipe or a socket.  Files and pipes are read and written
in a worker thread (a pipe to a slow reader must not stall the monitor); sockets go
through asyncio, and with the ``return-path`` capability carry the target's verdict
back as over ``unix:``/``tcp:``.  The stream is cpuhot's own (:mod:`cpuhot.machine.migration`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import time

from ..machine.migration import MigrationError, apply_incoming, check_stream
from .migration_io import MigrationIO, socket_channel

#: the most an incoming fd stream may hold (cpuhot's streams are a few KiB); more fails the load
MAX_FD_STREAM = 16 << 20


def _is_socket(fd: int) -> bool:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, True)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_FD_STREAM:
            raise MigrationError(["load of migration failed: Input/output error"])
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    os.set_blocking(fd, True)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# -- target ------------------------------------------------------------------------------

def start_incoming(io: MigrationIO, fd: int) -> None:
    """Begin loading the stream from ``fd`` (``migrate-incoming fd:N``, ``-incoming fd:N``)."""
    vm = io.vm
    vm.migration.status = "setup"
    io._event("MIGRATION", {"status": "setup"})
    asyncio.get_running_loop().create_task(_incoming(io, fd))


async def _incoming(io: MigrationIO, fd: int) -> None:
    vm = io.vm
    loop = asyncio.get_running_loop()
    vm.migration.status = "active"
    io._event("MIGRATION", {"status": "active"})
    io._flush()
    writer = None
    try:
        if _is_socket(fd):
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            data = await reader.read(MAX_FD_STREAM + 1)
            rest = data
            while rest and len(data) <= MAX_FD_STREAM:
                rest = await reader.read(MAX_FD_STREAM + 1 - len(data))
                data += rest
            if len(data) > MAX_FD_STREAM:
                raise MigrationError(["load of migration failed: Input/output error"])
        else:
            data = await loop.run_in_executor(None, _read_all, fd)
            _close(fd)
        result = check_stream(vm, data)
    except (MigrationError, OSError) as e:
        lines = e.lines if isinstance(e, MigrationError) else ["load of migration failed: Input/output error"]
        vm.migration.status = "failed"
        io._event("MIGRATION", {"status": "failed"})
        io._flush()
        if writer is not None:
            if vm.migration.caps.get("return-path"):
                writer.write(json.dumps({"result": "failed", "error": "; ".join(lines)}).encode() + b"\n")
            await _drain_close(writer)
        vm.stderr.extend((True, line) for line in lines)
        io.server.model_changed()
        io.server.request_stop(exit_code=1)      # QEMU exits when the load fails
        return
    apply_incoming(vm, result, autostart=not io.server.start_paused)
    vm.migration.status = "completed"
    io._event("MIGRATION", {"status": "completed"})
    io._flush()
    if writer is not None:
        writer.write(json.dumps({"result": "ok"}).encode() + b"\n")
        await _drain_close(writer)


# -- source ------------------------------------------------------------------------------

def start_outgoing(io: MigrationIO, fd: int) -> None:
    io._task = asyncio.get_running_loop().create_task(_outgoing(io, fd))


async def _outgoing(io: MigrationIO, fd: int) -> None:
    """The source side: the same run as over ``unix:``/``tcp:`` (:meth:`MigrationIO.send`), on a
    socket fd through asyncio, on a file or pipe in a worker thread (no return path there)."""
    started = time.monotonic()
    if _is_socket(fd):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        await io.send(started, *socket_channel(reader, writer))
        return
    loop = asyncio.get_running_loop()

    async def write(stream: bytes) -> None:
        await loop.run_in_executor(None, _write_all, fd, stream)

    await io.send(started, write, None, lambda: _close(fd),
                  describe=lambda e: f"Unable to write to file: {e.strerror or e}")


async def _drain_close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except OSError:
        pass
    writer.close()
