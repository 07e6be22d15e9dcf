"""Shared pieces of the benchmarks: start cpuhot or QEMU, a raw-socket QMP client, a load driver.

Everything here talks to the monitor over plain sockets with the same code for cpuhot and
QEMU 7.2, so the two are measured alike.  Not a library: helpers for the scripts next to it.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time

from cpuhot.launch import terminate

BINARIES = {"x86_64": "qemu-system-x86_64", "ppc64": "qemu-system-ppc64"}


def qemu_binary(arch: str) -> str | None:
    return shutil.which(BINARIES[arch])


class RawClient:
    """A blocking QMP client: one request at a time, replies read line by line."""

    def __init__(self, path: str, *, negotiate: bool = True, timeout: float = 600.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = json.loads(self.file.readline())
        self.events: list[dict] = []
        self._next_id = 0
        if negotiate:
            self.call({"execute": "qmp_capabilities"})

    def call(self, msg: dict) -> dict:
        self.sock.sendall(json.dumps(msg).encode())
        return self.reply()

    def call_raw(self, data: bytes) -> bytes:
        """Send ``data``; return the raw reply line (events are skipped)."""
        self.sock.sendall(data)
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if not line.startswith(b'{"timestamp"'):
                return line

    def reply(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg
            self.events.append(msg)

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


class Target:
    """One monitored process (cpuhot or QEMU) and a client connected to it."""

    def __init__(self, kind: str, arch: str, args: list[str], sock: str, *, extra: list[str] = ()):
        self.kind = kind
        self.sock = sock
        if kind == "qemu":
            argv = [BINARIES[arch], "-S", "-nodefaults", "-display", "none", *args]
        else:
            argv = [sys.executable, "-m", "cpuhot", "serve", "-S", *args, *extra]
        argv += ["-qmp", f"unix:{sock},server=on,wait=off"]
        if os.path.exists(sock):
            os.unlink(sock)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                raise RuntimeError(f"{kind} {' '.join(args)} exited with {self.proc.returncode}: {err}")
            try:
                self.client = RawClient(sock, negotiate=False)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                time.sleep(0.0005)
        self.client.call({"execute": "qmp_capabilities"})
        #: seconds from exec to the first reply to a command (QEMU greets before its machine is ready)
        self.first_reply = time.perf_counter() - t0

    @property
    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.client.close()
        terminate(self.proc)
        self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def timed(client: RawClient, msg: dict, n: int, *, min_time: float = 0.0, batches: int = 1) -> float:
    """Round trip of ``msg`` in ms: the lowest of ``batches`` medians of ``n`` samples (a raw line
    is read, so both sides pay the same client costs; several batches damp background noise)."""
    if batches > 1:
        return min(timed(client, msg, n, min_time=min_time) for _ in range(batches))
    data = json.dumps(msg).encode()
    samples = []
    start = time.perf_counter()
    while len(samples) < n or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        line = client.call_raw(data)
        samples.append(time.perf_counter() - t)
        if b'"return"' not in line[:12]:
            raise RuntimeError(f"{msg}: {line[:300]!r}")
    return statistics.median(samples) * 1000


def free_slots(client: RawClient) -> list[dict]:
    entries = client.call({"execute": "query-hotpluggable-cpus"})["return"]
    return [e for e in reversed(entries) if "qom-path" not in e]


def plug(client: RawClient, slots: list[dict], prefix: str) -> list[float]:
    """device_add each slot; return the round trips in seconds."""
    samples = []
    for i, e in enumerate(slots):
        msg = json.dumps({"execute": "device_add",
                          "arguments": {"driver": e["type"], "id": f"{prefix}{i}", **e["props"]}}).encode()
        t = time.perf_counter()
        line = client.call_raw(msg)
        samples.append(time.perf_counter() - t)
        if not line.startswith(b'{"return"'):
            raise RuntimeError(f"device_add {e}: {line[:300]!r}")
    return samples


# ---------------------------------------------------------------------------------------------
# A closed-loop load driver: many connections, one process, non-blocking sockets
# ---------------------------------------------------------------------------------------------

#: a reply's id: last in a success (``{"return": ..., "id": N}``), first in an error (``{"id": N, "error": ...}``)
_ID_TAIL = re.compile(rb'"id": (\d+)\}\r$|^\{"id": (\d+), ')


class _Conn:
    __slots__ = ("sock", "buf", "sent", "next_id", "cmds", "k", "lat", "errors", "label", "due")

    def __init__(self, sock, cmds, label):
        self.sock = sock
        self.buf = b""
        self.sent: dict[int, float] = {}
        self.next_id = 0
        self.cmds = cmds
        self.k = 0
        self.lat: list[float] = []
        self.errors: list[bytes] = []
        self.label = label
        self.due = 0.0


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b'{"execute": "qmp_capabilities"}')
    f.readline()
    f.close()
    return sock


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def drive(paths: list[str], commands, *, duration: float = 2.0, window: int = 1, rate: float | None = None,
          warmup: float = 0.2, expect_error=lambda line: False) -> dict:
    """Load ``paths`` (one connection each) for ``duration`` seconds and measure.

    ``commands(i)`` gives connection i's request templates, sent round-robin; ``%(id)d`` in a
    template is the request's id, ``%(prev)d`` the previous one's.  Closed loop (``rate`` None):
    ``window`` requests outstanding per connection at all times.  Open loop: each connection
    sends ``rate`` requests per second on a fixed schedule (at most ``window`` outstanding;
    a late reply delays the schedule, which then shows in the latency).  Every reply must carry
    the id of the oldest outstanding request of its connection.  Latency is from send to reply."""
    sel = selectors.DefaultSelector()
    conns = []
    for i, p in enumerate(paths):
        s = connect(p)
        s.setblocking(False)
        c = _Conn(s, commands(i), p)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)

    def send(c: _Conn, now: float) -> None:
        ident = c.next_id
        c.next_id += 1
        tmpl = c.cmds[c.k]
        c.k = (c.k + 1) % len(c.cmds)
        c.sent[ident] = now
        c.sock.send(tmpl % {b"id": ident, b"prev": ident - 1})   # tiny, fits the socket buffer

    interval = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    for n, c in enumerate(conns):
        if rate:
            c.due = start + interval * n / len(conns)      # spread the clients over one interval
        else:
            for _ in range(window):
                send(c, time.perf_counter())
    measure_from = start + warmup
    end = measure_from + duration
    done = mismatches = errors = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        timeout = end - now
        if rate:
            for c in conns:
                while c.due <= now and len(c.sent) < window:
                    send(c, now)
                    c.due += interval
            timeout = min(timeout, max(0.0, min(c.due for c in conns) - time.perf_counter()))
        for key, _ in sel.select(timeout):
            c = key.data
            data = c.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"{c.label}: the server closed the connection")
            buf = c.buf + data
            lines = buf.split(b"\n")
            c.buf = lines.pop()
            t = time.perf_counter()
            for line in lines:
                if line.startswith(b'{"timestamp"'):
                    continue
                m = _ID_TAIL.search(line)
                oldest = next(iter(c.sent), None)
                ident = int(m.group(1) or m.group(2)) if m else None
                if ident != oldest:
                    mismatches += 1
                if ident not in c.sent:
                    continue
                t0 = c.sent.pop(ident)
                if line.startswith(b'{"error"') and not expect_error(line):
                    errors += 1
                    if len(c.errors) < 3:
                        c.errors.append(line)
                if t0 >= measure_from:
                    c.lat.append(t - t0)
                    done += 1
                if not rate:
                    send(c, t)
    elapsed = time.perf_counter() - measure_from
    for c in conns:
        sel.unregister(c.sock)
        c.sock.close()
    lat = sorted(x for c in conns for x in c.lat)
    per_conn_p99 = sorted(percentile(sorted(c.lat), 99) for c in conns if c.lat)
    return {"clients": len(paths), "window": window, "rate per client": rate, "commands": done,
            "seconds": elapsed, "rate": done / elapsed, "p50 ms": percentile(lat, 50) * 1000,
            "p90 ms": percentile(lat, 90) * 1000, "p99 ms": percentile(lat, 99) * 1000,
            "max ms": lat[-1] * 1000 if lat else float("nan"),
            "worst client p99 ms": per_conn_p99[-1] * 1000 if per_conn_p99 else float("nan"),
            "id mismatches": mismatches, "errors": errors,
            "error samples": [e for c in conns for e in c.errors][:3]}
