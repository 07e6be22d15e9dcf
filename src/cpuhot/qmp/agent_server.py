"""The guest agent's chardev: a thin asyncio shell around :class:`cpuhot.machine.agent.GuestAgent`.

QEMU passes bytes between the host chardev (``-chardev socket,...,server=on,wait=off``) and the
guest's virtio-serial port.  While the guest does not read its port (qemu-ga not running, the VM
paused, a hung agent), QEMU stops reading the socket: requests wait in the kernel's buffer and
are answered once the agent reads again -- which is why clients begin with ``guest-sync``.  This
shell does the same: it parses what arrives (QEMU's JSON stream parser), hands each request to
the agent while it answers, and otherwise stops reading (so memory stays bounded by one read).
Replies end with ``\\n`` as qemu-ga's do; ``guest-sync-delimited`` replies start with 0xFF.
Late replies (``late:S``) are timers on the model's clock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from ..machine.agent import GuestAgent
from .framing import JSONStreamParser, ParseError, Parsed
from .server import QMPServer, fast_encode
from .sockets import bind_unix_socket

log = logging.getLogger("cpuhot.qmp.agent")

#: parsed requests one connection may hold while the agent does not read
MAX_QUEUED = 256
#: unsent replies above which the agent stops answering (and reading) until the client reads
WRITE_HIGH_WATER = 1 << 20


class AgentConnection(asyncio.Protocol):
    def __init__(self, endpoint: "AgentEndpoint"):
        self.endpoint = endpoint
        self.parser = JSONStreamParser()
        self.queue: deque[Parsed | ParseError] = deque()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        #: the client does not read its replies: answer nothing more until it does (back-pressure)
        self.write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)      # a stream server's connections are Transports
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        endpoint = self.endpoint
        endpoint.connections.add(self)
        if endpoint.active is None:
            endpoint.active = self
        else:
            # QEMU's socket chardev has one client at a time; the next one waits, unread
            endpoint.waiting.append(self)
        endpoint.update_filename()
        self.kick()

    def connection_lost(self, exc: Exception | None) -> None:
        endpoint = self.endpoint
        endpoint.connections.discard(self)
        if self in endpoint.waiting:
            endpoint.waiting.remove(self)
        if endpoint.active is self:
            endpoint.active = endpoint.waiting.pop(0) if endpoint.waiting else None
            if endpoint.active is not None:
                endpoint.active.kick()
        endpoint.update_filename()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.kick()

    def data_received(self, data: bytes) -> None:
        try:
            items = self.parser.feed(data)
        except Exception:      # never take the server down
            log.exception("agent: parser failure")
            assert self.transport is not None          # data arrives on a made connection only
            self.transport.abort()
            return
        self.queue.extend(items)
        self.kick()
        self.endpoint.after_input()

    def kick(self) -> None:
        """Answer what is queued while the agent answers; otherwise stop reading."""
        agent = self.endpoint.agent
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        serving = self.endpoint.active is self
        while self.queue and agent.answering and serving and not self.write_paused:
            item = self.queue.popleft()
            if isinstance(item, ParseError):
                self._schedule(agent.mode.delay, {"error": {"class": "GenericError", "desc": item.desc}}, False)
                continue
            reply = agent.handle(item.value)
            if reply.message is not None:
                self._schedule(reply.delay, reply.message, reply.sentinel)
        want_pause = not agent.answering or not serving or self.write_paused or len(self.queue) >= MAX_QUEUED
        if want_pause and not self.paused:
            self.paused = True
            transport.pause_reading()
        elif not want_pause and self.paused:
            self.paused = False
            transport.resume_reading()

    def _schedule(self, delay: float, message: dict[str, Any], sentinel: bool) -> None:
        data = (b"\xff" if sentinel else b"") + fast_encode(message)[:-2] + b"\n"
        if delay <= 0:
            self._send(data)
        else:
            self.endpoint.agent.vm.timers.call_later(delay, lambda: self._send(data))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class AgentEndpoint:
    """The host side of one guest agent channel: listening sockets and their connections."""

    def __init__(self, agent: GuestAgent, qmp_server: QMPServer | None = None):
        self.agent = agent
        self.qmp_server = qmp_server
        self.connections: set[AgentConnection] = set()
        #: the connection QEMU's chardev serves; later ones wait for it to close
        self.active: AgentConnection | None = None
        self.waiting: list[AgentConnection] = []
        self.servers: list[asyncio.Server] = []
        self._paths: list[str] = []
        #: the listening socket's path (what query-chardev shows)
        self.address = ""
        if qmp_server is not None:
            qmp_server.model_listeners.append(self.model_changed)

    async def listen_unix(self, path: str) -> None:
        sock = bind_unix_socket(path)
        self._paths.append(path)
        await self.adopt(sock)

    def update_filename(self) -> None:
        """``query-chardev``'s ``filename``, as QEMU 7.2 shows a server socket chardev:
        ``disconnected:unix:PATH,server=on`` until a client connects, then ``unix:PATH,server=on``."""
        prefix = "" if self.connections else "disconnected:"
        self.agent.chardev_filename = f"{prefix}unix:{self.address},server=on"

    async def adopt(self, sock: socket.socket) -> None:
        name = sock.getsockname()
        self.address = name if isinstance(name, str) else ""
        self.update_filename()
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            srv = await loop.create_unix_server(lambda: AgentConnection(self), sock=sock)
        else:
            srv = await loop.create_server(lambda: AgentConnection(self), sock=sock)
        self.servers.append(srv)

    def model_changed(self) -> None:
        if self.active is not None:
            self.active.kick()

    def after_input(self) -> None:
        """Requests may have changed the model: pass on events and arm the model's timers."""
        if self.qmp_server is not None:
            self.qmp_server.deliver_events()
            self.qmp_server.model_changed()

    async def close(self) -> None:
        import os
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for path in self._paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


async def serve_agent(qmp_server: QMPServer,
                      listeners: Sequence[tuple[str | None, socket.socket | None]]) -> AgentEndpoint | None:
    """Open the VM's guest agent chardev (``listeners``: (unix path or None, listening socket or
    None) pairs from :func:`cpuhot.cli.setup_agent`) next to ``qmp_server``; raises OSError."""
    agent = qmp_server.monitor.vm.agent
    if agent is None or not listeners:
        return None
    endpoint = AgentEndpoint(agent, qmp_server)
    qmp_server.closers.append(endpoint.close)
    for path, sock in listeners:
        if path is not None:
            await endpoint.listen_unix(path)
        elif sock is not None:
            await endpoint.adopt(sock)
    return endpoint
