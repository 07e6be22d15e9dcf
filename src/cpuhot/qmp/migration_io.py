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
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..machine.errors import GenericError
from ..machine import migration_ram
from ..machine.migration import (MAX_LINE, IncomingCheck, IncomingResult, MigrationError, apply_incoming,
                                 encode_stream)
from ..machine.vm import VirtualMachine

#: (session, message) pairs to send, as ``Monitor.take_events`` gives them (sessions are
#: :class:`cpuhot.qmp.protocol.Session`, which this module cannot import: it imports this one)
Outgoing = list[tuple[Any, dict[str, Any]]]
#: :meth:`MigrationIO.send`'s channel: ``write``, ``read_verdict`` (or None), ``close``
Write = Callable[[bytes], Awaitable[None]]
ReadVerdict = Callable[[], Awaitable[str]]

SCHEMES = ("unix:", "tcp:")


def check_uri(uri: str) -> None:
    """Refuse what cpuhot will not do: running programs (``exec:``) or unknown transports."""
    if uri.startswith("exec:"):
        raise GenericError("cpuhot does not run programs: 'exec:' migration URIs are refused "
                           "(use unix:PATH or tcp:HOST:PORT)")
    if not uri.startswith(SCHEMES):
        raise GenericError("Parameter 'uri' expects a valid migration protocol")


def _split(uri: str) -> tuple[str, str, int]:
    """(kind, host or path, port) of a ``unix:``/``tcp:`` URI, refusing what QEMU 7.2 refuses
    synchronously, with its message (see :func:`parse_socket_uri`)."""
    address = parse_socket_uri(uri)
    return address.kind, address.where, address.port


class SocketURI:
    """A parsed ``unix:PATH`` or ``tcp:HOST:PORT[,opts]`` as QEMU's ``socket_parse`` leaves it."""

    def __init__(self, kind: str, where: str, port_text: str = ""):
        self.kind = kind
        self.where = where
        #: the port as written (at most 32 characters, as QEMU's sscanf keeps)
        self.port_text = port_text

    @property
    def port(self) -> int:
        """The port connected to: getaddrinfo's numeric service, truncated to 16 bits as glibc
        does (``tcp:127.0.0.1:70000`` connects to 4464 and is refused there); -1 if it is none."""
        text = self.port_text
        if text.isdigit() and text.isascii():
            value = int(text)
            return value & 0xFFFF if value < (1 << 64) else -1
        return -1

    @property
    def display(self) -> str:
        """How QEMU names the address in its errors (``HOST:PORT`` or the path)."""
        return self.where if self.kind == "unix" else f"{self.where}:{self.port_text}"


def _parse_inet_flag(name: str, optstr: str) -> None:
    """``inet_parse_flag`` (QEMU 7.2): empty, ``=on`` or ``=off``."""
    end = optstr.find(",")
    if end >= 0 and optstr[end + 1:end + 2] == ",":
        raise GenericError(f"error parsing '{name}' flag '{optstr}'")
    value = optstr[:end] if end >= 0 else optstr
    if value not in ("", "=on", "=off"):
        raise GenericError(f"error parsing '{name}' flag '{optstr}'")


def _parse_inet(text: str) -> SocketURI:
    """QEMU 7.2's ``inet_parse`` on what follows ``tcp:``, messages included (checked against
    qemu-system-x86_64 7.2: ``tcp:127.0.0.1`` -> ``error parsing address '127.0.0.1'``)."""
    head, comma, _ = text.partition(",")
    if text.startswith(":"):                            # ":%32[^,]" (any host)
        port = head[1:]
        if not port:
            raise GenericError(f"error parsing port in address '{text}'")
        host, rest = "", text[1 + min(len(port), 32):]
        port = port[:32]
    elif text.startswith("["):                          # "[%64[^]]]:%32[^,]"
        close = text.find("]")
        host = text[1:close] if close > 0 else ""
        port = head[close + 2:] if close > 0 else ""
        if (close <= 1 or close > 65 or text[close + 1:close + 2] != ":" or not port):
            raise GenericError(f"error parsing IPv6 address '{text}'")
        rest = text[close + 2 + min(len(port), 32):]
        port = port[:32]
    else:                                               # "%64[^:]:%32[^,]"
        colon = text.find(":")
        host = text[:colon] if colon >= 0 else text
        port = text[colon + 1:].partition(",")[0] if colon >= 0 else ""
        if colon <= 0 or colon > 64 or not port:
            raise GenericError(f"error parsing address '{text}'")
        rest = text[colon + 1 + min(len(port), 32):]
        port = port[:32]
    del comma
    to = rest.find(",to=")
    if to >= 0:
        digits = rest[to + 4:].partition(",")[0]
        sign = digits[:1] in ("-", "+")
        if not digits[sign:].isdigit():
            raise GenericError("error parsing to= argument")
    for flag in ("ipv4", "ipv6", "keep-alive", "mptcp"):
        at = rest.find("," + flag)
        if at >= 0:
            _parse_inet_flag(flag, rest[at + 1 + len(flag):])
    return SocketURI("tcp", host, port)


def parse_socket_uri(uri: str) -> SocketURI:
    """Parse a migration URI as QEMU 7.2 does before ``migrate`` returns; GenericError otherwise."""
    if uri.startswith("unix:"):
        if not uri[5:]:
            raise GenericError("invalid Unix socket address")
        return SocketURI("unix", uri[5:])
    if uri.startswith("tcp:"):
        return _parse_inet(uri[4:])
    raise GenericError("Parameter 'uri' expects a valid migration protocol")


def _strerror(e: OSError) -> str:
    """C's strerror for ``e`` (asyncio words some connect errors its own way)."""
    return os.strerror(e.errno) if e.errno else (e.strerror or str(e))


async def open_socket_uri(address: SocketURI) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect as QEMU's ``socket_connect`` does; OSError carries QEMU's ``error-desc`` text."""
    if address.kind == "unix":
        if len(address.where.encode()) > 108:              # sizeof(sun_path)
            raise OSError(f"UNIX socket path '{address.where}' is too long")
        try:
            return await asyncio.open_unix_connection(address.where)
        except OSError as e:
            raise OSError(f"Failed to connect to '{address.display}': {_strerror(e)}") from None
    loop = asyncio.get_running_loop()
    if address.port < 0:
        raise OSError(f"address resolution failed for {address.display}: Servname not supported for ai_socktype")
    try:
        infos = await loop.getaddrinfo(address.where or None, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OSError(f"address resolution failed for {address.display}: {e.strerror}") from None
    last: OSError | None = None
    for family, type_, proto, _, sockaddr in infos:
        try:
            host, port = str(sockaddr[0]), int(sockaddr[1])
            return await asyncio.open_connection(host, port, family=family, proto=proto)
        except OSError as e:
            last = e
    reason = _strerror(last) if last is not None else "Connection refused"
    raise OSError(f"Failed to connect to '{address.display}': {reason}")


class _Monitor(Protocol):
    @property
    def vm(self) -> VirtualMachine: ...

    def take_events(self) -> Outgoing: ...


class MigrationServer(Protocol):
    """What migration needs of the QMP server (:class:`cpuhot.qmp.server.QMPServer`, which imports
    this module)."""

    @property
    def monitor(self) -> _Monitor: ...

    @property
    def start_paused(self) -> bool: ...

    def deliver(self, out: Outgoing) -> None: ...

    def model_changed(self) -> None: ...

    def request_stop(self, exit_code: int = 0) -> None: ...


class MigrationIO:
    def __init__(self, server: MigrationServer):
        self.server = server
        self.monitor = server.monitor
        self.vm = server.monitor.vm
        self._incoming_server: asyncio.base_events.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # -- helpers -------------------------------------------------------------------
    def _event(self, name: str, data: dict[str, Any] | None = None) -> None:
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
            sock = bind_unix_socket(where)
            self.vm.migration.listening = [{"path": where, "type": "unix"}]
            return sock
        sock = socket.socket(socket.AF_INET6 if ":" in where else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where, port))
        sock.listen(1)
        sock.setblocking(False)
        host, bound = sock.getsockname()[:2]
        # as QEMU 5.2/7.2/10.0 list a tcp:127.0.0.1:0 listener (recorded): the bound port, as text
        family = "ipv6" if sock.family == socket.AF_INET6 else "ipv4"
        self.vm.migration.listening = [{"port": str(bound), family: True, "host": host, "type": "inet"}]
        return sock

    async def serve_incoming(self, sock: socket.socket) -> None:
        if sock.family == socket.AF_UNIX:
            self._incoming_server = await asyncio.start_unix_server(self._incoming, sock=sock, limit=MAX_LINE + 2)
        else:
            self._incoming_server = await asyncio.start_server(self._incoming, sock=sock, limit=MAX_LINE + 2)

    async def listen_incoming(self, uri: str) -> None:
        await self.serve_incoming(self.bind_incoming(uri))

    async def _incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        vm = self.vm
        if self._incoming_server is not None:
            self._incoming_server.close()
        vm.migration.status = "active"
        self._event("MIGRATION", {"status": "active"})
        self._flush()
        try:
            try:
                result = await self._read_stream(reader)
            except MigrationError:
                raise
            except Exception:      # whatever the stream holds, the load fails; it never hangs
                raise MigrationError(["load of migration failed: Invalid argument"]) from None
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
        vm.migration.listening = None          # migration_incoming_state_destroy
        vm.migration.status = "completed"
        self._event("MIGRATION", {"status": "completed"})
        self._flush()
        writer.write(json.dumps({"result": "ok"}).encode() + b"\n")
        await _drain_close(writer)

    async def _read_stream(self, reader: asyncio.StreamReader) -> IncomingResult:
        """Read and check the stream a line at a time, header first: at most one line of
        MAX_LINE is held, and the first bad line ends the load (nothing more is read)."""
        check = IncomingCheck(self.vm)
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial.strip():
                    check.feed(e.partial)
                check.eof()
            except asyncio.LimitOverrunError:
                raise MigrationError(["load of migration failed: Invalid argument"]) from None
            except OSError:
                raise MigrationError(["load of migration failed: Input/output error"]) from None
            result = check.feed(line)
            if result is not None:
                return result

    # -- source ----------------------------------------------------------------------
    def start(self, uri: str) -> None:
        self._task = asyncio.get_running_loop().create_task(self._outgoing(uri))

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _finish_early(self, status: str, error: str | None) -> None:
        """End a migration that never connected: ``failed`` (with QEMU's error-desc) or
        ``cancelled``; either way a new ``migrate`` may start."""
        mig = self.vm.migration
        mig.status, mig.error = status, error
        self._event("MIGRATION", {"status": status})
        self._flush()

    async def _outgoing(self, uri: str) -> None:
        started = time.monotonic()
        try:
            reader, writer = await open_socket_uri(parse_socket_uri(uri))
        except asyncio.CancelledError:
            self._finish_early("cancelled", None)
            raise
        except (OSError, GenericError, ValueError, OverflowError) as e:
            self._finish_early("failed", e.desc if isinstance(e, GenericError) else str(e))
            return
        await self.send(started, *socket_channel(reader, writer))

    async def send(self, started: float, write: Write, read_verdict: ReadVerdict | None, close: Callable[[], None],
                   describe: Callable[[OSError], str] = str) -> None:
        """Send the VM's stream on a connected channel, the same for every URI kind: ``write``
        (a coroutine taking the stream), ``read_verdict`` (a coroutine giving the target's answer
        on the return path, or None where the channel has none), ``close``, and ``describe``
        (an OSError as ``query-migrate``'s error-desc)."""
        vm = self.vm
        mig = vm.migration
        stream = b""
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
            await write(stream)
            verdict = "ok"
            if mig.caps.get("return-path") and read_verdict is not None:
                verdict = await read_verdict()
                if verdict != "ok" and vm.release_info.migration_rejected_error:
                    mig.error = vm.release_info.migration_rejected_error
            close()
        except asyncio.CancelledError:
            close()
            self._resume_source(was)
            mig.status = "cancelled"
            self._event("MIGRATION", {"status": "cancelled"})
            self._flush()
            raise
        except Exception as e:        # OSError, or anything else: the migration fails, never hangs
            verdict = "failed"
            mig.error = describe(e) if isinstance(e, OSError) else str(e)
            close()
        mig.total_time = int((time.monotonic() - started) * 1000)
        mig.ram = (migration_ram.completed(vm, return_path=bool(mig.caps.get("return-path")) and read_verdict is not None,
                                           total_time=mig.total_time) if verdict == "ok" else None)
        if verdict == "ok":
            vm.runstate = "postmigrate"
        elif vm.release_info.migration_failure_restores_runstate:
            vm.runstate = was          # 10.0 (recorded): the source goes back to its run state
        else:
            self._resume_source(was)
        mig.status = "completed" if verdict == "ok" else "failed"
        self._event("MIGRATION", {"status": mig.status})
        self._flush()

    def _resume_source(self, was: str) -> None:
        """After a failed or cancelled migration (``migration_iteration_finish``): a source that
        was running runs again, one that was not is ``postmigrate``."""
        vm = self.vm
        if was == "running" and vm.runstate == "paused":
            vm.cont()
        elif was != "running":
            vm.runstate = "postmigrate"


def socket_channel(reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> tuple[Write, ReadVerdict, Callable[[], None]]:
    """``write``, ``read_verdict`` and ``close`` of :meth:`MigrationIO.send` for a stream socket."""
    async def write(stream: bytes) -> None:
        writer.write(stream)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def read_verdict() -> str:
        return _verdict(await reader.readline())

    return write, read_verdict, writer.close


def _verdict(line: bytes) -> str:
    """The target's answer on the return path: ``ok`` or ``failed`` (anything unreadable)."""
    try:
        answer = json.loads(line) if line else None
    except (ValueError, UnicodeDecodeError):
        return "failed"
    return "ok" if isinstance(answer, dict) and answer.get("result") == "ok" else "failed"


async def _drain_close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except OSError:
        pass
    writer.close()
