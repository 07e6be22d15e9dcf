"""The asyncio shell: sockets in, bytes out, everything else in :class:`Monitor`.

Each accepted connection gets a :class:`QMPConnection` (an ``asyncio.Protocol``)
with its own JSON stream parser and :class:`Session`; all connections of a VM
share one :class:`Monitor`, so they are served concurrently (unlike QEMU's
one-client-at-a-time socket) and every negotiated client receives events.
Because the model is only touched from the event loop thread and no handler
awaits, each command is atomic: two clients racing for one slot get exactly
one success.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass

from .framing import JSONStreamParser, encode
from .protocol import Monitor, Session

log = logging.getLogger("cpuhot.qmp.server")

#: a client whose unsent replies/events exceed this is dropped (it stopped reading)
MAX_WRITE_BUFFER = 32 << 20


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
    def __init__(self, server: "QMPServer"):
        self.server = server
        self.monitor = server.monitor
        self.parser = JSONStreamParser()
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        #: input that arrived while this client waited for its turn (single-client profiles)
        self._held: list[bytes] | None = None

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.monitor.profile.single_client and self.server.connections:
            self._held = []                     # QEMU accepts, but says nothing until it is our turn
            self.server.waiting.append(self)
            return
        self.activate()

    def activate(self) -> None:
        peer = self.transport.get_extra_info("peername") or ""
        self.session = self.monitor.open_session(peer=str(peer))
        self.server.connections[self.session] = self
        self.server.trace("open", self.session, None)
        self._write(self.monitor.greeting())
        held, self._held = self._held, None
        for data in held or ():
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        if self.session is None or self.session.closed:
            return
        try:
            items = self.parser.feed(data)
        except Exception:   # the parser must never take the server down
            log.exception("parser failure on client %s", self.session.number)
            self.close("parser failure")
            return
        for item in items:
            self.server.trace("in", self.session, item)
            out = self.monitor.handle(self.session, item)
            self.server.persist_if_changed()        # on disk before the client hears of it
            self.server.deliver(out)
            if self.monitor.quit_requested:
                self.server.request_stop()
                return
        self.server.model_changed()

    def connection_lost(self, exc) -> None:
        if self in self.server.waiting:
            self.server.waiting.remove(self)
        if self.session is not None:
            self.server.trace("close", self.session, None)
            self.monitor.close_session(self.session)
            self.server.connections.pop(self.session, None)
            if not self.server.connections and self.server.waiting:
                nxt = self.server.waiting.pop(0)
                if nxt.transport is not None and not nxt.transport.is_closing():
                    nxt.activate()

    # -- output ------------------------------------------------------------------
    def _write(self, msg: dict) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.server.trace("out", self.session, msg)
        self.transport.write(encode(msg))
        if self.transport.get_write_buffer_size() > self.server.max_write_buffer:
            log.warning("dropping client %s: it does not read its replies (%d bytes pending)",
                        self.session.number, self.transport.get_write_buffer_size())
            self.close("slow reader")

    def close(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()


class QMPServer:
    """Serves one :class:`Monitor` on any number of endpoints."""

    def __init__(self, monitor: Monitor, *, max_write_buffer: int = MAX_WRITE_BUFFER, tracer=None,
                 stderr_sink=None):
        self.monitor = monitor
        self.max_write_buffer = max_write_buffer
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
        self._persisted_key = None

    def trace(self, direction: str, session, payload) -> None:
        if self.tracer is not None:
            self.tracer(direction, session, payload)

    # -- lifecycle -----------------------------------------------------------------
    async def listen(self, endpoint: Endpoint) -> Endpoint:
        loop = asyncio.get_running_loop()
        if endpoint.kind == "unix":
            sock = bind_unix_socket(endpoint.path)
            srv = await loop.create_unix_server(lambda: QMPConnection(self), sock=sock)
            self._unix_paths.append(endpoint.path)
        else:
            srv = await loop.create_server(lambda: QMPConnection(self), endpoint.host, endpoint.port,
                                           reuse_address=True)
            port = srv.sockets[0].getsockname()[1]
            endpoint = Endpoint("tcp", host=endpoint.host, port=port)
        self.servers.append(srv)
        self.endpoints.append(endpoint)
        return endpoint

    async def adopt_listening_socket(self, sock: socket.socket) -> None:
        """Serve on an already listening socket (an inherited fd, as libvirt passes)."""
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            srv = await loop.create_unix_server(lambda: QMPConnection(self), sock=sock)
        else:
            srv = await loop.create_server(lambda: QMPConnection(self), sock=sock)
        self.servers.append(srv)

    async def serve_until_stopped(self) -> None:
        self._stopped = asyncio.Event()
        incoming = self.monitor.vm.migration.incoming
        if incoming not in (None, "defer"):
            await self.migration.listen_incoming(incoming)
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
        if self._timer is not None:
            self._timer.cancel()
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._unix_paths.clear()

    # -- output ----------------------------------------------------------------------
    def deliver(self, out: list[tuple[Session, dict]]) -> None:
        for session, msg in out:
            conn = self.connections.get(session)
            if conn is not None:
                conn._write(msg)

    def model_changed(self) -> None:
        """After input: pass on new stderr lines and (re)arm the timer for the model's next deadline."""
        vm = self.monitor.vm
        self.persist_if_changed()
        if self.stderr_sink is not None and vm.stderr:
            lines, vm.stderr[:] = list(vm.stderr), []
            self.stderr_sink(lines)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = vm.next_deadline()
        if deadline is None or getattr(vm.clock, "virtual", False):
            return
        delay = max(0.0, deadline - vm.clock.now())
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
            self.deliver(out)
        self.model_changed()


def _state_key(vm) -> tuple:
    """Cheap fingerprint of what --state persists (changes whenever a snapshot would)."""
    return (vm.runstate, vm.anon_counter, vm.unattached_counter, vm.guest.booted,
            tuple((v.cpu_index, v.qom_path, v.online, v.device.unplug_requested, v.device.guest_configured)
                  for v in vm.vcpus))


class SocketInUse(OSError):
    pass


def bind_unix_socket(path: str) -> socket.socket:
    """Bind a listening UNIX socket with mode 0600, replacing a stale socket file.

    A socket file that still has a live server behind it is not stolen:
    :class:`SocketInUse` is raised instead.
    """
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketInUse(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)         # stale: nobody listens any more
        else:
            raise SocketInUse(errno.EADDRINUSE, f"{path} is in use by a running server")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock
