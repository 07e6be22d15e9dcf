"""The I/O half of migration: the target's incoming socket and the source's outgoing stream.

The model (``cpuhot.machine.migration``) builds and checks streams; this module
moves them between two cpuhot processes over ``unix:PATH`` or ``tcp:HOST:PORT``
and turns progress into the model's state changes and events, in QEMU's order:

source: ``MIGRATION setup`` (before the ``migrate`` reply), ``MIGRATION_PASS 1``,
``MIGRATION active``, (``STOP`` if it was running), ``MIGRATION_PASS 2``,
``MIGRATION completed`` or ``failed``; afterwards the source is ``postmigrate``.
target: ``MIGRATION active``, then ``completed`` (and the source's run state) or
``failed``, the two stderr lines QEMU prints, and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

from ..machine.errors import GenericError
from ..machine.migration import MigrationError, apply_incoming, check_stream, encode_stream

SCHEMES = ("unix:", "tcp:")


def check_uri(uri: str) -> None:
    """Refuse what cpuhot will not do: running programs (``exec:``) or unknown transports."""
    if uri.startswith("exec:"):
        raise GenericError("cpuhot does not run programs: 'exec:' migration URIs are refused "
                           "(use unix:PATH or tcp:HOST:PORT)")
    if not uri.startswith(SCHEMES):
        raise GenericError("Parameter 'uri' expects a valid migration protocol")


def _split(uri: str) -> tuple[str, str, int]:
    if uri.startswith("unix:"):
        return "unix", uri[5:], 0
    host, _, port = uri[4:].rpartition(":")
    if not port.isdigit():
        raise GenericError("Parameter 'uri' expects a valid migration protocol")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]            # tcp:[::]:49152, as libvirt asks a migration target to listen
    return "tcp", host or "127.0.0.1", int(port)


class MigrationIO:
    def __init__(self, server):
        self.server = server
        self.monitor = server.monitor
        self.vm = server.monitor.vm
        self._incoming_server: asyncio.base_events.Server | None = None
        self._task: asyncio.Task | None = None

    # -- helpers -------------------------------------------------------------------
    def _event(self, name: str, data: dict | None = None) -> None:
        if self.vm.migration.caps.get("events"):
            self.vm.emit(name, data)

    def _flush(self) -> None:
        out = self.monitor.take_events()
        if out:
            self.server.deliver(out)
        self.server.model_changed()

    # -- target ------------------------------------------------------------------------
    def bind_incoming(self, uri: str) -> socket.socket:
        """Bind and listen at once (as QEMU does before migrate-incoming returns)."""
        check_uri(uri)
        kind, where, port = _split(uri)
        if kind == "unix":
            from .sockets import bind_unix_socket     # 0600; a stale socket is replaced, nothing else
            return bind_unix_socket(where)
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in where else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((where, port))
        sock.listen(1)
        sock.setblocking(False)
        return sock

    async def serve_incoming(self, sock: socket.socket) -> None:
        if sock.family == socket.AF_UNIX:
            self._incoming_server = await asyncio.start_unix_server(self._incoming, sock=sock)
        else:
            self._incoming_server = await asyncio.start_server(self._incoming, sock=sock)

    async def listen_incoming(self, uri: str) -> None:
        await self.serve_incoming(self.bind_incoming(uri))

    async def _incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        vm = self.vm
        if self._incoming_server is not None:
            self._incoming_server.close()
        vm.migration.status = "active"
        self._event("MIGRATION", {"status": "active"})
        self._flush()
        data = await reader.read()
        try:
            result = check_stream(vm, data)
        except MigrationError as e:
            vm.migration.status = "failed"
            self._event("MIGRATION", {"status": "failed"})
            self._flush()
            if vm.migration.caps.get("return-path"):
                writer.write(json.dumps({"result": "failed", "error": str(e)}).encode() + b"\n")
                await _drain_close(writer)
            else:
                writer.close()
            vm.stderr.extend((True, line) for line in e.lines)
            self.server.model_changed()
            self.server.request_stop(exit_code=1)     # QEMU exits when the load fails
            return
        apply_incoming(vm, result, autostart=not self.server.start_paused)
        vm.migration.status = "completed"
        self._event("MIGRATION", {"status": "completed"})
        self._flush()
        writer.write(json.dumps({"result": "ok"}).encode() + b"\n")
        await _drain_close(writer)

    # -- source ----------------------------------------------------------------------
    def start(self, uri: str) -> None:
        self._task = asyncio.get_running_loop().create_task(self._outgoing(uri))

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _outgoing(self, uri: str) -> None:
        vm = self.vm
        mig = vm.migration
        started = time.monotonic()
        kind, where, port = _split(uri)
        try:
            if kind == "unix":
                reader, writer = await asyncio.open_unix_connection(where)
            else:
                reader, writer = await asyncio.open_connection(where, port)
        except OSError as e:
            mig.status = "failed"
            mig.error = f"Failed to connect to '{where}': {e.strerror}"
            self._event("MIGRATION", {"status": "failed"})
            self._flush()
            return
        was = vm.runstate
        try:
            self._event("MIGRATION_PASS", {"pass": 1})
            mig.status = "active"
            self._event("MIGRATION", {"status": "active"})
            self._flush()
            await asyncio.sleep(0)
            was = vm.runstate
            if vm.runstate == "running":
                vm.stop()
            stream = encode_stream(vm, runstate=was)
            if vm.release_info.migration_device_state:
                mig.status = "device"
                self._event("MIGRATION", {"status": "device"})
            self._event("MIGRATION_PASS", {"pass": 2})
            writer.write(stream)
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            verdict = "ok"
            if mig.caps.get("return-path"):
                line = await reader.readline()
                try:
                    verdict = json.loads(line).get("result", "failed") if line else "failed"
                except json.JSONDecodeError:
                    verdict = "failed"
                if verdict != "ok" and vm.release_info.migration_rejected_error:
                    mig.error = vm.release_info.migration_rejected_error
            writer.close()
        except asyncio.CancelledError:
            writer.close()
            mig.status = "cancelled"
            self._event("MIGRATION", {"status": "cancelled"})
            self._flush()
            raise
        except OSError as e:
            verdict = "failed"
            mig.error = str(e)
        mig.total_time = int((time.monotonic() - started) * 1000)
        mig.transferred = len(stream) if verdict == "ok" else 0
        vm.runstate = "postmigrate"
        if verdict != "ok" and vm.release_info.migration_failure_restores_runstate:
            vm.runstate = was
        mig.status = "completed" if verdict == "ok" else "failed"
        self._event("MIGRATION", {"status": mig.status})
        self._flush()


async def _drain_close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except OSError:
        pass
    writer.close()
