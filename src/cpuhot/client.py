"""A small blocking QMP client (standard library only), for cpuhot's tools, examples and tests.

It talks to any QMP server: cpuhot or a real QEMU.

>>> from cpuhot.client import QMPClient
>>> with QMPClient("unix:/tmp/q.sock") as qmp:                       # doctest: +SKIP
...     free = [e for e in qmp.execute("query-hotpluggable-cpus") if "qom-path" not in e]
...     qmp.execute("device_add", {"driver": free[-1]["type"], "id": "vcpu1", **free[-1]["props"]})
...     qmp.execute("device_del", {"id": "vcpu1"})
...     qmp.wait_event("DEVICE_DELETED", lambda e: e["data"].get("device") == "vcpu1", timeout=5)

Addresses are ``unix:PATH``, ``tcp:HOST:PORT`` or a bare path.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import time
from collections.abc import Callable
from typing import Any


class QMPError(Exception):
    """An error reply: ``error_class`` and ``desc`` as the server sent them."""

    def __init__(self, error_class: str, desc: str, reply: dict[str, Any] | None = None):
        super().__init__(f"{error_class}: {desc}")
        self.error_class = error_class
        self.desc = desc
        self.reply = reply


def parse_address(address: str) -> tuple[socket.AddressFamily, tuple[str, int] | str]:
    """``unix:PATH`` / ``tcp:HOST:PORT`` / ``PATH`` -> (socket family, sockaddr)."""
    if address.startswith("tcp:"):
        host, _, port = address[4:].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"invalid tcp address '{address}' (tcp:HOST:PORT)")
        return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, (host.strip("[]") or "127.0.0.1",
                                                                                  int(port))
    if address.startswith("unix:"):
        address = address[5:]
    return socket.AF_UNIX, address.split(",", 1)[0]


def connect(address: str, timeout: float = 10.0) -> socket.socket:
    """A connected stream socket, retried until ``timeout`` while the server is not listening yet."""
    family, sockaddr = parse_address(address)
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(sockaddr)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        except BaseException:
            sock.close()
            raise


class LineReader:
    """Reads ``\\n``-terminated lines from a socket with a timeout."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def read_line(self, timeout: float | None) -> bytes | None:
        """One line (without its terminator), or None on timeout/EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                self.eof = True
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")


class QMPClient:
    """A negotiated QMP connection: :meth:`execute`, events in :attr:`events`."""

    def __init__(self, address: str, *, timeout: float = 10.0, negotiate: bool = True):
        self.address = address
        self.timeout = timeout
        self.sock = connect(address, timeout)
        self.reader = LineReader(self.sock)
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self._ids = 0
        greeting = self._read(timeout)
        if greeting is None or "QMP" not in greeting:
            self.close()
            raise ConnectionError(f"{address}: no QMP greeting")
        self.greeting = greeting
        if negotiate:
            self.execute("qmp_capabilities")

    # -- messages ------------------------------------------------------------------
    def _read(self, timeout: float | None) -> dict[str, Any] | None:
        line = self.reader.read_line(timeout)
        msg: dict[str, Any] | None = None if line is None else json.loads(line)     # the server sends objects
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run a command; return its ``return`` value or raise :class:`QMPError`."""
        self._ids += 1
        ident = f"cpuhot-{self._ids}"
        msg: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            msg["arguments"] = arguments
        self.send(msg)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            reply = self._read(max(0.0, deadline - time.monotonic()))
            if reply is None:
                raise TimeoutError(f"{command}: no reply from {self.address}")
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") != ident:
                continue
            if "error" in reply:
                raise QMPError(reply["error"].get("class", "GenericError"), reply["error"].get("desc", ""), reply)
            return reply.get("return")

    def hmp(self, command_line: str) -> str:
        """An HMP command through ``human-monitor-command``."""
        text: str = self.execute("human-monitor-command", {"command-line": command_line})
        return text

    def get_event(self, timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next event (queued or arriving within ``timeout`` seconds), or None."""
        if self.events:
            return self.events.popleft()
        msg = self._read(timeout)
        while msg is not None and "event" not in msg:
            msg = self._read(timeout)
        return msg

    def wait_event(self, name: str, predicate: Callable[[dict[str, Any]], bool] | None = None, *,
                   timeout: float = 10.0) -> dict[str, Any]:
        """Wait for event ``name`` (matching ``predicate(event)``); earlier other events stay queued."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in list(self.events):
                if ev["event"] == name and (predicate is None or predicate(ev)):
                    self.events.remove(ev)
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} event within {timeout} s")
            msg = self._read(left)
            if msg is None:
                if self.reader.eof:
                    raise ConnectionError(f"{self.address} closed the connection")
                continue
            if "event" in msg:
                self.events.append(msg)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "QMPClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
