"""The asyncio shell: sockets in, bytes out, everything else in :class:`Monitor`.

Each accepted connection gets a :class:`QMPConnection` (an ``asyncio.Protocol``)
with its own JSON stream parser and :class:`Session`; all connections of a VM
share one :class:`Monitor`, so they are served concurrently and every negotiated
client receives events (single-client profiles serve one client per socket at a
time, as QEMU serves each ``-qmp`` chardev; the ``cpuhot`` profile any number).
Because the model is only touched from the event loop thread and no handler
awaits, each command is atomic: two clients racing for one slot get exactly
one success.

Limits (all per :class:`QMPServer`, all logged when they bite):

* input: the parser keeps QEMU's own limits (64 MiB per message, nesting
  1024, ...) and answers like QEMU; on top of that a client whose unparsed
  input exceeds ``max_read_buffer``, or that pushes the server's total past
  ``max_input_total``, is dropped.
* input queue: like QEMU's monitor, which suspends reading a client while its
  request queue is full (monitor/qmp.c handle_qmp_command: ``QMP_REQ_QUEUE_LEN_MAX``
  = 8 requests with OOB, one without; monitor_can_read() then says 0, and 1 byte
  otherwise), a client's input is parsed at most ``QMP_REQ_QUEUE_LEN_MAX``
  commands ahead of execution; the rest stays unparsed (at most one socket
  read) and the client is not read while anything of it waits.
* output budget: a client's next command runs only while its unsent output
  (what the transport holds plus the current turn's) is at most
  ``write_high_water``; above that the client is not read and its commands
  wait until the transport drains (back-pressure), so a client that pipelines
  commands without reading holds at most ``write_high_water`` + one reply.
  QEMU instead executes on and appends every reply to an unbounded output
  buffer (monitor/monitor.c monitor_flush_locked: a GString, written as the
  socket takes it); cpuhot keeps memory bounded and loses nothing:
  the replies come, in order, as the client reads.  A client that reads nothing
  at all for ``write_stall_timeout`` seconds while output waits for it, or that
  has more than ``max_write_buffer`` unsent when more arrives for it (events keep
  coming), is dropped; one that reads slowly is never dropped.
* fairness: each ready client gets one turn in rotation (QEMU's dispatcher too
  takes one request per monitor in round robin:
  monitor_qmp_requests_pop_any_with_lock); a turn ends after
  ``batch_limit`` commands, or after the command that takes it past
  ``turn_slice`` seconds (cost-weighted: one expensive ``query-qmp-schema`` is a
  whole turn, cheap commands share one), so no client's burst delays another's
  command by more than one turn of each other ready client.
* at most ``max_connections`` clients at once; more are refused (closed); a client that
  does not negotiate within ``negotiation_timeout`` seconds of its greeting is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]  # typeshed omits it
from typing import Any, cast

from ..machine.errors import QMPError
from ..machine.vm import VirtualMachine
from .framing import MAX_TOKEN_SIZE, JSONStreamParser, ParseError, Parsed, encode
from . import fdpass
from .protocol import Monitor, Session
from .sockets import SocketInUse as SocketInUse, bind_unix_socket  # cli, fleet and tests import them from here

log = logging.getLogger("cpuhot.qmp.server")

#: a client whose unsent replies/events exceed this is dropped (it stopped reading)
MAX_WRITE_BUFFER = 32 << 20
#: the output budget: above this much unsent output a client's further commands wait until it
#: reads.  256 KiB is about as much again as the kernel's own socket buffer (net.core.wmem_default,
#: 208 KiB), so a client that reads keeps both full and loses no throughput, while 1,024 silent
#: clients (max_connections) hold at most 256 MiB plus one reply each
WRITE_HIGH_WATER = 256 << 10
#: a client that has read nothing of its waiting output for this long is dropped
WRITE_STALL_TIMEOUT = 60.0
#: commands of one client parsed ahead of execution: QEMU's QMP_REQ_QUEUE_LEN_MAX (monitor-internal.h)
QMP_REQ_QUEUE_LEN_MAX = 8
#: a client's turn ends after the command that takes it past this many seconds (cost-weighted fairness)
TURN_SLICE = 0.002
#: unparsed input one client may hold: QEMU's limits allow one whole 64 MiB message plus a 64 MiB token
MAX_READ_BUFFER = 2 * MAX_TOKEN_SIZE + (1 << 20)
#: unparsed input all clients of one server may hold together
MAX_INPUT_TOTAL = 256 << 20
#: commands of one client handled per turn of the event loop
BATCH_LIMIT = 64
#: clients connected (or waiting for their turn) at once
MAX_CONNECTIONS = 1024
#: a client that has not sent qmp_capabilities this long after its greeting is dropped (slots are finite)
NEGOTIATION_TIMEOUT = 30.0
#: input held for a client that waits for its turn (single-client profiles) before it is no longer read
HELD_INPUT_LIMIT = 1 << 20
#: list replies at least this long are encoded per element, with a cache (see QMPServer.encode)
_LIST_MEMO_MIN = 1


#: ``tracer(direction, session or None, payload)``: "open", "close", "recv" (bytes), "in" (parsed), "out"
Tracer = Callable[[str, Session | None, object], None]
#: (session, message) pairs to send
Outgoing = list[tuple[Session, dict[str, Any]]]


def _unencodable(obj: object) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__} as QMP JSON")


#: the stdlib's C encoder with QEMU's separators; its output is QEMU's whenever it holds no
#: \u escape (QEMU writes upper-case hex and U+FFFD for what it cannot hold), no DEL (QEMU
#: escapes it), no float (QEMU writes %.17g) and no integer of 19+ digits (QEMU writes a
#: double outside int64/uint64): fast_encode() checks that and otherwise uses framing.encode
_C_ENCODE = (c_make_encoder(None, _unencodable, encode_basestring_ascii, None, ": ", ", ", False, False, True)
             if c_make_encoder is not None else None)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_PLAIN = re.compile(r"[0-9][.eE]|Infinity|NaN|[0-9]{19}")


def fast_encode(msg: object, double: str = "%.17g") -> bytes:
    """``framing.encode(msg)``, byte for byte, about 1.5x faster for the usual messages.

    (The one liberty: a dict key that is not a string, which framing.encode refuses, is written
    as the stdlib writes it; no QMP message has one.)"""
    if _C_ENCODE is not None:
        try:
            text = "".join(_C_ENCODE(msg, 0))
        except (TypeError, ValueError, RecursionError):
            return encode(msg, double)
        if "\\u" not in text and "\x7f" not in text and not (
                _NOT_PLAIN.search(text) and _NOT_PLAIN.search(_JSON_STRING.sub("", text))):
            return (text + "\r\n").encode("ascii")
    return encode(msg, double)


@dataclass(frozen=True)
class Endpoint:
    """A monitor address: ``unix:PATH`` or ``tcp:HOST:PORT``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        spec = text.split(",", 1)[0]
        if spec.startswith("unix:"):
            return cls("unix", path=spec[5:])
        if spec.startswith("tcp:"):
            host, _, port = spec[4:].rpartition(":")
            if not port.isdigit():
                raise ValueError(f"invalid tcp address '{spec}'")
            return cls("tcp", host=host or "127.0.0.1", port=int(port))
        raise ValueError(f"unsupported monitor address '{spec}' (use unix:PATH or tcp:HOST:PORT)")

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


class QMPConnection(asyncio.Protocol):
    def __init__(self, server: "QMPServer", *, greeted: bool = False, listener: object = None):
        self.server = server
        #: the socket (monitor) this client came in on: single-client profiles serve one client per
        #: monitor, as QEMU serves each -qmp chardev
        self.listener = listener
        #: the greeting was sent before the server ran (cpuhot.early)
        self.greeted = greeted
        self.monitor = server.monitor
        self.parser = JSONStreamParser()
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        #: input that arrived while this client waited for its turn (single-client profiles)
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        #: parsed input not handled yet (back-pressure, fairness)
        self._queue: deque[Parsed | ParseError] = deque()
        #: output of the current turn, written at once when the server uncorks
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._write_paused = False
        self._reading_paused = False
        self._pump_scheduled = False
        self._eof = False
        self._stall_timer: asyncio.TimerHandle | None = None
        #: bytes handed to the transport so far, and how many of them had left it when the stall timer was armed
        self._written = 0
        self._sent_mark = 0
        #: the most output this client ever left unsent in the transport (tests, benchmarks)
        self.peak_unsent = 0
        self._negotiation_timer: asyncio.TimerHandle | None = None
        #: why the server dropped this client (None while it is served)
        self.dropped: str | None = None
        #: fds that came over SCM_RIGHTS and no getfd took yet (fdpass)
        self.passed_fds: list[int] = []

    def __repr__(self) -> str:
        number = self.session.number if self.session is not None else "-"
        return f"<client {number} of {self.server.name}>"

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)      # a stream server's connections are Transports
        self.transport = transport
        fdpass.receive_fds(transport)
        server = self.server
        if len(server.connections) + len(server.waiting) >= server.max_connections:
            log.warning("%s: refusing a connection: %d clients already connected (max_connections)",
                        server.name, server.max_connections)
            server.stats["refused"] += 1
            self.dropped = "too many connections"
            transport.abort()
            return
        server.stats["accepted"] += 1
        transport.set_write_buffer_limits(high=server.write_high_water)
        if self.monitor.profile.single_client and server.serving(self.listener):
            self._held = []                     # QEMU accepts, but says nothing until it is our turn
            server.waiting.append(self)
            return
        self.activate()

    @property
    def _transport(self) -> asyncio.Transport:
        """:attr:`transport`, for what runs only once ``connection_made`` has set it."""
        assert self.transport is not None
        return self.transport

    def activate(self) -> None:
        peer = self._transport.get_extra_info("peername") or ""
        self.session = self.monitor.open_session(peer=str(peer))
        self.server.connections[self.session] = self
        self.server.trace("open", self.session, None)
        log.debug("%s: client %s connected", self.server.name, self.session.number)
        if self.greeted:
            self.server.trace("out", self.session, self.monitor.greeting())
        else:
            self._write(self.monitor.greeting())
        timeout = self.server.negotiation_timeout
        if timeout is not None:
            self._negotiation_timer = asyncio.get_running_loop().call_later(timeout, self._negotiation_expired)
        held, self._held = self._held, None
        self._held_bytes = 0
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        for data in held or ():
            self.data_received(data)

    def take_passed_fds(self) -> list[int]:
        """The fds that came with the latest input (getfd); the caller owns them."""
        self._collect_fds()
        fds, self.passed_fds = self.passed_fds, []
        return fds

    def _collect_fds(self) -> None:
        fds = fdpass.take_received(self._transport)
        if fds:      # as QEMU's socket chardev: new fds replace those no command took
            fdpass.close_all(self.passed_fds)
            self.passed_fds = fds

    def data_received(self, data: bytes) -> None:
        self._collect_fds()
        if self._held is not None:
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes > HELD_INPUT_LIMIT and not self._reading_paused:
                self._reading_paused = True     # the kernel holds the rest, as for QEMU's waiting clients
                self._transport.pause_reading()
            return
        if self.session is None or self.session.closed or self.dropped:
            return
        self.server.trace("recv", self.session, data)     # the raw bytes, for traces that replay them
        if self._parse(data):
            self._pump()

    def _parse(self, data: bytes = b"") -> bool:
        """Parse input (``data``, then what an earlier call left) until a few commands are queued:
        at most QMP_REQ_QUEUE_LEN_MAX ahead of execution.  False: the client was dropped."""
        try:
            items = self.parser.feed(data, QMP_REQ_QUEUE_LEN_MAX - len(self._queue))
        except Exception:   # the parser must never take the server down
            log.exception("%s: parser failure on client %s", self.server.name,
                          self.session.number if self.session is not None else "?")
            self.drop("parser failure")
            return False
        if items:
            self._queue.extend(items)
        pending = self.parser.pending()
        if pending > HELD_INPUT_LIMIT and not self.server.input_within_limits(self, pending):
            return False
        return True

    def _input_waiting(self) -> bool:
        return bool(self._queue) or self.parser.unparsed() > 0

    def eof_received(self) -> bool | None:
        if self._input_waiting() and not self.dropped:
            self._eof = True    # answer what arrived before the EOF first, then close
            return True
        return None             # close: nothing is left to answer

    def _negotiation_expired(self) -> None:
        self._negotiation_timer = None
        if self.session is not None and not self.session.negotiated and not self.session.closed:
            self.drop(f"it did not negotiate (qmp_capabilities) within {self.server.negotiation_timeout:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        fdpass.close_all(self.passed_fds + fdpass.take_received(self._transport))
        self.passed_fds = []
        if self._negotiation_timer is not None:
            self._negotiation_timer.cancel()
            self._negotiation_timer = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._queue.clear()
        server = self.server
        if self in server.waiting:
            server.waiting.remove(self)
        if self.session is not None and server.connections.get(self.session) is self:
            server.trace("close", self.session, None)
            log.debug("%s: client %s disconnected", server.name, self.session.number)
            self.monitor.close_session(self.session)
            server.connections.pop(self.session, None)
            nxt = next((w for w in server.waiting if w.listener == self.listener), None)
            if nxt is not None and not server.serving(self.listener):
                server.waiting.remove(nxt)
                if nxt.transport is not None and not nxt.transport.is_closing():
                    nxt.activate()

    def pause_writing(self) -> None:
        self._write_paused = True
        timeout = self.server.write_stall_timeout
        if self._stall_timer is None and timeout is not None:
            self._sent_mark = self._sent()
            self._stall_timer = asyncio.get_running_loop().call_later(timeout, self._stalled)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._input_waiting():
            self._schedule_pump()
        else:
            self._flow_control()

    def _sent(self) -> int:
        """Bytes that left the transport for the socket (the client read them, or the kernel holds them)."""
        return self._written - (self.transport.get_write_buffer_size() if self.transport is not None else 0)

    def unsent(self) -> int:
        """Output of this client not handed to the socket yet: the transport's buffer and this turn's."""
        return (self.transport.get_write_buffer_size() if self.transport is not None else 0) + self._out_bytes

    # -- input -------------------------------------------------------------------
    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self._input_waiting():
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """One turn: handle queued commands in order, within the batch limit, the turn slice and the
        output budget; then let the other clients have theirs."""
        self._pump_scheduled = False
        queue = self._queue
        if self.dropped or self.transport is None or self.transport.is_closing():
            queue.clear()
            return
        server = self.server
        monitor = self.monitor
        session = self.session
        quit_now = False
        if self._input_waiting() and not self._write_paused:
            assert session is not None      # input is read for an open session only
            handled = 0
            limit = server.batch_limit
            high = server.write_high_water
            turn_end = time.perf_counter() + server.turn_slice
            server.cork()
            try:
                while True:
                    if not queue and not (self.parser.unparsed() and self._parse() and queue):
                        break
                    if handled and (handled >= limit or time.perf_counter() >= turn_end):
                        break       # the turn is over: the other clients have theirs first
                    if self.unsent() > high:
                        break       # over the output budget: wait for the client to read
                    item = queue.popleft()
                    server.trace("in", session, item)
                    try:
                        out = monitor.handle(session, item)
                    except Exception as exc:    # a bug in a command must not take the server down
                        out = server.internal_error(session, item, exc)
                    server.persist_if_changed()        # on disk before the client hears of it
                    server.deliver(out)
                    handled += 1
                    if monitor.quit_requested:
                        quit_now = True
                        queue.clear()
                        break
                    if self.dropped:
                        break
            finally:
                server.uncork()
        if quit_now:
            server.request_stop()
            return
        if self.dropped:
            return
        if self._eof and not self._input_waiting():
            self.transport.close()     # after the replies still buffered
        else:
            if not self._write_paused:
                self._schedule_pump()   # after every other ready client's turn (a no-op when nothing waits)
            self._flow_control()
        server.model_changed()

    def _flow_control(self) -> None:
        """Read-side flow control: read no more while commands wait or replies are not drained."""
        if self._input_waiting() or self._write_paused:
            if not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()
        elif self._reading_paused and self._held is None and not self._transport.is_closing():
            self._reading_paused = False
            self._transport.resume_reading()

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.transport is None:
            return
        sent = self._sent()
        timeout = self.server.write_stall_timeout
        assert timeout is not None          # the timer runs only with a timeout
        if sent > self._sent_mark and self._write_paused:
            # it reads, slowly: every reply still reaches it; look again after another period
            self._sent_mark = sent
            self._stall_timer = asyncio.get_running_loop().call_later(timeout, self._stalled)
            return
        pending = self.transport.get_write_buffer_size()
        self.drop(f"it has not read its replies for {self.server.write_stall_timeout:g} s "
                  f"({pending} bytes unsent)")

    # -- output ------------------------------------------------------------------
    def _write(self, msg: dict[str, Any]) -> None:
        if self.dropped or self.transport is None or self.transport.is_closing():
            return
        server = self.server
        server.trace("out", self.session, msg)
        data = server.encode(msg)
        corked = server._corked
        if corked is not None:
            if not self._out:
                corked.append(self)
            self._out.append(data)
            self._out_bytes += len(data)
            return
        self._send(data)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_bytes = 0
        if not self.dropped and self.transport is not None and not self.transport.is_closing():
            self._send(data)

    def _send(self, data: bytes) -> None:
        transport = self._transport
        backlog = transport.get_write_buffer_size()
        if backlog > self.server.max_write_buffer:
            # more output for a client that left more than the limit unread: it is not reading
            self.drop(f"it does not read its replies ({backlog} bytes unsent)")
            return
        transport.write(data)      # one message alone never exceeds what its request allowed
        self._written += len(data)
        unsent = transport.get_write_buffer_size()
        if unsent > self.peak_unsent:
            self.peak_unsent = unsent
        stats = self.server.stats
        if unsent > stats["peak_unsent"]:
            stats["peak_unsent"] = unsent

    def drop(self, reason: str) -> None:
        """Disconnect this client at once, saying why in the log."""
        if self.dropped:
            return
        self.dropped = reason
        number = self.session.number if self.session is not None else "-"
        log.warning("%s: dropping client %s: %s", self.server.name, number, reason)
        self.server.stats["dropped"] += 1
        self._queue.clear()
        self._out.clear()
        self._out_bytes = 0
        if self.transport is not None:
            self.transport.abort()

    close = drop


class QMPServer:
    """Serves one :class:`Monitor` on any number of endpoints."""

    #: the monitor's named fds (``getfd``), made on first use by ``commands_migration.fd_table``
    fd_table: fdpass.FdTable

    def __init__(self, monitor: Monitor, *, max_write_buffer: int = MAX_WRITE_BUFFER, tracer: Tracer | None = None,
                 stderr_sink: Callable[[list[tuple[bool, str]]], None] | None = None, name: str = "cpuhot", write_high_water: int = WRITE_HIGH_WATER,
                 write_stall_timeout: float | None = WRITE_STALL_TIMEOUT,
                 max_read_buffer: int = MAX_READ_BUFFER, max_input_total: int = MAX_INPUT_TOTAL,
                 batch_limit: int = BATCH_LIMIT, max_connections: int = MAX_CONNECTIONS,
                 negotiation_timeout: float | None = NEGOTIATION_TIMEOUT, turn_slice: float = TURN_SLICE):
        self.monitor = monitor
        #: how this server calls itself in the log
        self.name = name
        self.max_write_buffer = max_write_buffer
        self.write_high_water = min(write_high_water, max_write_buffer)
        self.write_stall_timeout = write_stall_timeout
        self.max_read_buffer = max_read_buffer
        self.max_input_total = max_input_total
        self.batch_limit = max(1, batch_limit)
        self.turn_slice = turn_slice
        self.max_connections = max_connections
        self.negotiation_timeout = negotiation_timeout
        #: counters: connections accepted/refused/dropped, the most output ever left unsent to one client
        self.stats = {"accepted": 0, "refused": 0, "dropped": 0, "peak_unsent": 0}
        self.connections: dict[Session, QMPConnection] = {}
        self.waiting: list[QMPConnection] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.endpoints: list[Endpoint] = []
        self._unix_paths: list[str] = []
        self._stopped: asyncio.Event | None = None
        #: the process exit status a CLI should use once serving stops (1 after a failed incoming migration)
        self.exit_code = 0
        self.start_paused = monitor.vm.runstate == "prelaunch"
        from .migration_io import MigrationIO
        self.migration = MigrationIO(self)
        monitor.io = self
        self.tracer = tracer
        #: called with the VM's new stderr lines ((prefixed, text) pairs) after each change
        self.stderr_sink = stderr_sink
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._persisted_key: tuple[object, ...] | None = None
        #: connections with output of the current turn (None: not corked, write at once)
        self._corked: list[QMPConnection] | None = None
        self._cork_depth = 0
        #: id(element) -> (element, its encoding): see encode()
        self._memo: dict[int, tuple[object, bytes]] = {}
        self._memo_cap = 4096
        #: called after every change of the model (the guest agent's endpoint re-checks its state)
        self.model_listeners: list[Callable[[], None]] = []
        #: coroutines run when the server closes (other endpoints of the VM: the guest agent)
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def trace(self, direction: str, session: Session | None, payload: object) -> None:
        if self.tracer is not None:
            self.tracer(direction, session, payload)

    # -- lifecycle -----------------------------------------------------------------
    async def listen(self, endpoint: Endpoint) -> Endpoint:
        loop = asyncio.get_running_loop()
        if endpoint.kind == "unix":
            sock = bind_unix_socket(endpoint.path)
            try:
                srv = await loop.create_unix_server(lambda: QMPConnection(self, listener=sock), sock=sock)
            except BaseException:
                sock.close()
                raise
            self._unix_paths.append(endpoint.path)
        else:
            key = object()
            srv = await loop.create_server(lambda: QMPConnection(self, listener=key), endpoint.host or "127.0.0.1",
                                           endpoint.port, reuse_address=True, backlog=socket.SOMAXCONN)
            port = srv.sockets[0].getsockname()[1]
            endpoint = Endpoint("tcp", host=endpoint.host, port=port)
        self.servers.append(srv)
        self.endpoints.append(endpoint)
        return endpoint

    async def adopt_listening_socket(self, sock: socket.socket) -> None:
        """Serve on an already listening socket (an inherited fd, as libvirt passes)."""
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            srv = await loop.create_unix_server(lambda: QMPConnection(self, listener=sock), sock=sock)
        else:
            srv = await loop.create_server(lambda: QMPConnection(self, listener=sock), sock=sock)
        self.servers.append(srv)

    async def adopt_early(self, endpoint: Endpoint | None, sock: socket.socket,
                          accepted: list[tuple[socket.socket, bool]]) -> None:
        """Serve on a socket :mod:`cpuhot.early` listened on before the server existed (``endpoint``
        None: an inherited fd, as :meth:`adopt_listening_socket`), with the connections it
        accepted (and greeted) meanwhile, in their order."""
        loop = asyncio.get_running_loop()
        for conn, greeted in accepted:
            conn.setblocking(False)
            await loop.connect_accepted_socket(
                functools.partial(QMPConnection, self, greeted=greeted, listener=sock), conn)
        if endpoint is None:
            await self.adopt_listening_socket(sock)
            return
        sock.setblocking(False)
        if endpoint.kind == "unix":
            srv = await loop.create_unix_server(lambda: QMPConnection(self, listener=sock), sock=sock)
            self._unix_paths.append(endpoint.path)
        else:
            srv = await loop.create_server(lambda: QMPConnection(self, listener=sock), sock=sock)
        self.servers.append(srv)
        self.endpoints.append(endpoint)

    async def serve_until_stopped(self) -> None:
        self._stopped = asyncio.Event()
        incoming = self.monitor.vm.migration.incoming
        if incoming is not None and incoming.startswith("fd:") and incoming[3:].isdigit():
            from .migration_fd import start_incoming      # -incoming fd:N: an inherited fd
            start_incoming(self.migration, int(incoming[3:]))
        elif incoming not in (None, "defer"):
            try:
                await self.migration.listen_incoming(incoming)
            except (QMPError, OSError) as e:      # e.g. exec: (refused) or an address in use
                reason = e.desc if isinstance(e, QMPError) else (e.strerror or str(e))
                log.debug("%s: -incoming %s: %s", self.name, incoming, reason)
                self.monitor.vm.stderr.append((True, f"-incoming {incoming}: {reason}"))
                self.exit_code = 1
                self.model_changed()
                await self.close()
                return
        self.model_changed()
        try:
            await self._stopped.wait()
        finally:
            await self.close()

    def request_stop(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code or self.exit_code
        if self._stopped is not None:
            self._stopped.set()

    async def close(self) -> None:
        for closer in self.closers:
            await closer()
        self.closers = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for srv in self.servers:
            srv.close()
        for conn in [*self.connections.values(), *self.waiting]:
            conn._flush()
            if conn.transport is not None:
                conn.transport.close()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        table = getattr(self, "fd_table", None)
        if table is not None:
            table.close()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._unix_paths.clear()

    def serving(self, listener: object) -> bool:
        """Whether a client of this socket (monitor) is being served."""
        return any(c.listener is listener for c in self.connections.values())

    # -- limits ------------------------------------------------------------------------
    def input_within_limits(self, conn: QMPConnection, pending: int) -> bool:
        """Check a client's unparsed input against the limits; drop it (False) when over."""
        if pending > self.max_read_buffer:
            conn.drop(f"{pending} bytes of unparsed input (max_read_buffer {self.max_read_buffer})")
            return False
        total = sum(c.parser.pending() for c in self.connections.values())
        if total > self.max_input_total:
            conn.drop(f"the server holds {total} bytes of unparsed input (max_input_total {self.max_input_total})")
            return False
        return True

    def internal_error(self, session: Session, item: Parsed | ParseError, exc: BaseException) -> Outgoing:
        """The reply to a command that failed with an unexpected exception (a bug): a GenericError."""
        msg = item.value if isinstance(item, Parsed) else None
        name = msg.get("execute", msg.get("exec-oob")) if isinstance(msg, dict) else None
        log.error("%s: internal error in command %r of client %s", self.name, name, session.number,
                  exc_info=exc)
        reply: dict[str, Any] = {}
        if isinstance(msg, dict) and "id" in msg:
            reply["id"] = msg["id"]
        reply["error"] = {"class": "GenericError",
                          "desc": f"cpuhot internal error: {type(exc).__name__}: {exc}"}
        out = self.monitor.take_events()
        out.append((session, reply))
        return out

    # -- output ----------------------------------------------------------------------
    def deliver(self, out: Outgoing) -> None:
        connections = self.connections
        for session, msg in out:
            conn = connections.get(session)
            if conn is not None:
                conn._write(msg)

    def cork(self) -> None:
        """Collect output instead of writing it, until :meth:`uncork` (one write per client per turn)."""
        if self._cork_depth == 0:
            self._corked = []
        self._cork_depth += 1

    def uncork(self) -> None:
        self._cork_depth -= 1
        if self._cork_depth == 0:
            corked, self._corked = self._corked, None
            assert corked is not None       # cork() made it
            for conn in corked:
                conn._flush()

    def encode(self, msg: object) -> bytes:
        """``framing.encode`` (see :func:`fast_encode`), with the elements of list replies cached by identity.

        The model hands out the same (never mutated) entry objects for CPUs that
        did not change (``query-hotpluggable-cpus``, ``query-cpus-fast``), so
        only the entries that changed since the last reply are encoded again.
        The output is byte for byte ``framing.encode(msg)``.
        """
        if type(msg) is dict:
            ret = msg.get("return")
            if type(ret) is list and len(ret) >= _LIST_MEMO_MIN:
                return self._encode_list_reply(msg, ret)
        return fast_encode(msg, self.monitor.vm.release_info.json_double)

    def _encode_list_reply(self, msg: dict[str, Any], ret: list[object]) -> bytes:
        memo = self._memo
        get = memo.get
        frags: list[bytes] = []
        append = frags.append
        for e in ret:
            hit = get(id(e))
            if hit is not None and hit[0] is e:
                append(hit[1])
            else:
                frag = fast_encode(e)[:-2]
                memo[id(e)] = (e, frag)
                append(frag)
        body = b"[" + b", ".join(frags) + b"]"
        if len(memo) > self._memo_cap:
            # forget entries no reply uses any more; keep room for a few lists of this size
            self._memo = {id(e): (e, f) for e, f in zip(ret, frags)}
            self._memo_cap = max(self._memo_cap, 4 * len(ret))
        parts = []
        for key, value in msg.items():
            parts.append(encode(key)[:-2] + b": " + (body if value is ret else fast_encode(value)[:-2]))
        return b"{" + b", ".join(parts) + b"}\r\n"

    def model_changed(self) -> None:
        """After input: pass on new stderr lines and (re)arm the timer for the model's next deadline."""
        vm = self.monitor.vm
        self.persist_if_changed()
        if self.stderr_sink is not None and vm.stderr:
            lines, vm.stderr[:] = list(vm.stderr), []
            self.stderr_sink(lines)
        for listener in self.model_listeners:
            listener()
        deadline = vm.next_deadline()
        if deadline is None or getattr(vm.clock, "virtual", False):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer_deadline == deadline:
                return
            self._timer.cancel()
        delay = max(0.0, deadline - vm.clock.now())
        self._timer_deadline = deadline
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def persist_if_changed(self) -> None:
        if self.monitor.persist is not None:
            key = _state_key(self.monitor.vm)
            if key != self._persisted_key:
                self.monitor.persist()
                self._persisted_key = key

    def _on_timer(self) -> None:
        self._timer = None
        self.monitor.vm.advance()
        self.persist_if_changed()
        out = self.monitor.take_events()
        if out:
            self.cork()
            try:
                self.deliver(out)
            finally:
                self.uncork()
        if self.monitor.vm.powered_off:
            # the machine powered itself off (s390x disabled-wait panic, no -no-shutdown): QEMU's process ends
            self.request_stop()
            return
        self.model_changed()


    def deliver_events(self) -> None:
        """Send the model's pending events now (changes made outside a QMP command)."""
        out = self.monitor.take_events()
        if out:
            self.cork()
            try:
                self.deliver(out)
            finally:
                self.uncork()


def _state_key(vm: VirtualMachine) -> tuple[object, ...]:
    """Cheap fingerprint of what --state persists (changes whenever a snapshot would)."""
    return (vm.runstate, vm.anon_counter, vm.unattached_counter, vm.guest.booted, len(vm.peripheral),
            tuple(getattr(d, "unplug_requested", False) for d in vm.peripheral.values()),
            tuple((d.qom_path, tuple(d.props.items()), d.unplug_requested) for d in vm.generic_devices()),
            tuple((v.cpu_index, v.qom_path, v.online, v.device.unplug_requested, v.device.guest_configured)
                  for v in vm.vcpus))
