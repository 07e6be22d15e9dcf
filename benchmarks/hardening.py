#!/usr/bin/env python3
"""Issue 11's figures, cpuhot next to QEMU 7.2 in the same run.

    python benchmarks/hardening.py            # device_add with 5,000 .. 80,000 properties, then the load
    python benchmarks/hardening.py --no-qemu
    python benchmarks/hardening.py --only load --clients 8 --commands 1000

Load (issue 11, item 7): ``--clients`` clients each pipeline ``--commands`` expensive commands
(query-qmp-schema, query-cpu-definitions, query-hotpluggable-cpus on maxcpus=255) and read
nothing; a probe client meanwhile sends ``query-status`` every 20 ms.  Then the silent clients
read everything as fast as they can (every reply must come, in order), and finally a few clients
pipeline and read slowly (64 KiB per 20 ms).  Printed for each phase: the probe's worst and
median latency, the server's RSS growth, and (cpuhot) the most output one connection held.
QEMU serves one client per monitor, so it gets one ``-qmp`` socket per client (its dispatcher
takes one request per monitor in round robin); cpuhot is measured in its multi-client
``cpuhot`` profile on one socket, and in the ``qemu-7.2`` profile with QEMU's sockets.

Figures of one run here (2 shared cores; 8 clients x 1,000, probe latency max / median; "before"
is the code before the output budget and turns, measured right after in the same way):

    query-qmp-schema      silent 5 s             drain (all read fast)          held per silent client
    cpuhot before          3354 / 1600 ms         2317 / 347 ms                  1862 KiB, 888 parsed ahead
    cpuhot (cpuhot)         144 /  0.6 ms          316 /  56 ms, 8000 in 43 s     260 KiB (budget 256 + 1 reply), 7
    cpuhot (qemu-7.2)       208 /  0.6 ms          282 /  87 ms, 8000 in 52 s
    QEMU 7.2                926 / 692 ms          1148 / 713 ms, 701 in 60 s     (executes on, unbounded)
    query-hotpluggable-cpus, maxcpus=255: cpuhot 78 / 0.6 ms silent, 108 / 4.6 ms drain, RSS +0.3 MiB per
    silent client; QEMU 7.2 38 / 3.1 ms, 69 / 5.0 ms, RSS +6.2 MiB per silent client (every reply kept).
    Slow readers got every reply in order on both.  QEMU 7.2 takes about 85 ms per query-qmp-schema
    and 40 ms per query-cpu-definitions under TCG; cpuhot (in process) 10 ms per schema in the
    cpuhot profile, 1.8 ms in qemu-7.2, 1.8 ms per query-cpu-definitions.

For each size: the round trip of one ``device_add`` carrying that many (unknown) properties,
which both refuse with ``Property '...' not found``.  The target (issue 11, item 1) is that
cpuhot's time grows linearly and stays under QEMU's (QEMU 7.2 answered 80,000 keys in under 3 s;
cpuhot took about 30 s before the fix).  Also the RSS of each after the largest request.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpbench import BINARIES, Target, qemu_binary, rss_mib  # noqa: E402
from cpuhot.launch import terminate  # noqa: E402

SIZES = (5_000, 20_000, 80_000)


def device_add_seconds(target: Target, n: int) -> float:
    args = {"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": 1, "thread-id": 0}
    args.update({f"x{i}": "1" for i in range(n)})
    data = json.dumps({"execute": "device_add", "arguments": args}).encode()
    start = time.perf_counter()
    reply = json.loads(target.client.call_raw(data))
    elapsed = time.perf_counter() - start
    assert "error" in reply and "not found" in reply["error"]["desc"], reply
    return elapsed


def device_add_figures(kinds: list[str]) -> None:
    results: dict[str, dict[int, float]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cpuhot-bench-") as tmp:
        for kind in kinds:
            extra = ["-accel", "tcg"] if kind == "qemu" else []
            with Target(kind, "x86_64", ["-machine", "pc", "-smp", "1,maxcpus=4", *extra],
                        os.path.join(tmp, f"{kind}.sock")) as target:
                results[kind] = {n: device_add_seconds(target, n) for n in SIZES}
                rss[kind] = target.rss
    print(f"{'device_add properties':>22}  " + "  ".join(f"{k:>10}" for k in kinds))
    for n in SIZES:
        print(f"{n:>22}  " + "  ".join(f"{results[k][n]:>9.3f}s" for k in kinds))
    print(f"{'RSS after (MiB)':>22}  " + "  ".join(f"{rss[k]:>10.1f}" for k in kinds))
    c = results["cpuhot"]
    growth = c[SIZES[-1]] / max(c[SIZES[0]], 1e-6)
    print(f"cpuhot growth {SIZES[0]} -> {SIZES[-1]} properties: {growth:.1f}x "
          f"(linear: {SIZES[-1] / SIZES[0]:.0f}x, quadratic: {(SIZES[-1] / SIZES[0]) ** 2:.0f}x)")
    if "qemu" in results:
        ratio = c[SIZES[-1]] / results["qemu"][SIZES[-1]]
        print(f"cpuhot/QEMU at {SIZES[-1]}: {ratio:.2f}x  target <= 1x: {'met' if ratio <= 1 else 'NOT met'}")


# -- load: clients that pipeline expensive commands without reading (issue 11, item 7) -------

#: seconds the readers get to read everything (QEMU 7.2 takes ~0.1 s per query-qmp-schema, so
#: 8,000 of them would take it over 10 minutes: the figure printed is how many came meanwhile)
DRAIN_DEADLINE = 60.0
LOAD_COMMANDS = ("query-qmp-schema", "query-cpu-definitions", "query-hotpluggable-cpus")
#: maxcpus=288 on q35 needs KVM's x2apic (QEMU refuses it under TCG, the only accelerator here): 255, the most TCG takes
LOAD_ARGS = ["-machine", "q35", "-smp", "1,maxcpus=255", "-accel", "tcg"]


class Server:
    """A QEMU or cpuhot process with ``sockets`` QMP sockets (one client each, or all on the first)."""

    def __init__(self, kind: str, tmp: str, sockets: int):
        self.kind = kind
        self.paths = [os.path.join(tmp, f"{kind}-{i}.sock") for i in range(sockets)]
        if kind == "qemu":
            argv = [BINARIES["x86_64"], "-S", "-nodefaults", "-display", "none", *LOAD_ARGS]
        else:
            profile = "cpuhot" if kind == "cpuhot" else "qemu-7.2"
            argv = [sys.executable, "-m", "cpuhot", "serve", "-S", "--compat", profile, *LOAD_ARGS]
        for path in self.paths:
            argv += ["-qmp", f"unix:{path},server=on,wait=off"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not all(os.path.exists(p) for p in self.paths):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start")
            time.sleep(0.01)

    def path(self, i: int) -> str:
        return self.paths[i % len(self.paths)]

    @property
    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        terminate(self.proc)


def _negotiated(path: str, timeout: float = 30.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            break
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    f = sock.makefile("rb")
    json.loads(f.readline())
    sock.sendall(b'{"execute": "qmp_capabilities"}')
    while (msg := json.loads(f.readline())) != {"return": {}}:
        STRAY.append(msg)       # a reply meant for the socket's previous client (see _load_one)
    f.close()
    return sock


#: replies that reached a new client of a socket but answered its previous client's commands
STRAY: list = []


class Probe(threading.Thread):
    """``query-status`` every 20 ms; latencies (s) collected per phase."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.sock = _negotiated(path)
        self.file = self.sock.makefile("rb")
        self._phase = "idle"
        self.latency: dict[str, list[float]] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        #: when the request in flight was sent, and in which phase
        self.inflight: tuple[float, str] | None = None

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        """Start a phase; a request still unanswered counts for the phase it was sent in (a lower bound)."""
        with self.lock:
            if self.inflight is not None:
                t, old = self.inflight
                self.latency.setdefault(old, []).append(time.perf_counter() - t)
                self.inflight = (time.perf_counter(), name)
            self._phase = name

    def run(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                self.inflight = (time.perf_counter(), self._phase)
            try:
                self.sock.sendall(b'{"execute": "query-status"}')
                while b'"return"' not in self.file.readline():
                    pass
            except OSError:
                return
            with self.lock:
                t, phase = self.inflight
                self.inflight = None
                self.latency.setdefault(phase, []).append(time.perf_counter() - t)
            self.stopping.wait(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(120)
        self.sock.close()


class Loader:
    """One client that pipelines ``n`` commands at once and reads its replies only when told to."""

    def __init__(self, path: str, command: str, n: int, k: int):
        self.sock = _negotiated(path)
        self.n = n
        self.data = b"".join(b'{"execute": "%s", "id": %d}' % (command.encode(), i) for i in range(n))
        self.sock.setblocking(False)
        self.sent = 0
        self.buf = b""
        self.ids: list[int] = []
        self.k = k

    def send_some(self) -> None:
        try:
            while self.sent < len(self.data):
                self.sent += self.sock.send(self.data[self.sent:self.sent + 65536])
        except BlockingIOError:
            pass

    def read_some(self, limit: int = 1 << 20) -> bool:
        """Read what is there (at most ``limit`` bytes); False once every reply came."""
        try:
            chunk = self.sock.recv(limit)
        except BlockingIOError:
            return True
        if not chunk:
            raise ConnectionError(f"client {self.k} was disconnected after {len(self.ids)} replies")
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.startswith(b'{"return"') or line.startswith(b'{"id"') or b'"id": ' in line[-20:]:
                self.ids.append(json.loads(line)["id"])
        return len(self.ids) < self.n


def _pump_loaders(loaders: list[Loader], *, read: bool, until: float, chunk: int = 1 << 20,
                  pace: float = 0.0) -> None:
    sel = selectors.DefaultSelector()
    for c in loaders:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    live = set(loaders)
    while live and time.monotonic() < until:
        for key, events in sel.select(0.05):
            c = key.data
            if events & selectors.EVENT_WRITE:
                c.send_some()
                if c.sent >= len(c.data):
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if read and events & selectors.EVENT_READ and c in live:
                if not c.read_some(chunk):
                    live.discard(c)
                    sel.unregister(c.sock)
        if not read:
            if all(c.sent >= len(c.data) for c in loaders):
                time.sleep(0.05)
        elif pace:
            time.sleep(pace)
    sel.close()


def _stats(lat: list[float]) -> str:
    if not lat:
        return "no reply"
    return f"max {max(lat) * 1e3:8.1f} ms  median {statistics.median(lat) * 1e3:6.1f} ms  ({len(lat)})"


def held_in_process(tmp: str, command: str, clients: int, commands: int, seconds: float) -> str:
    """Output a cpuhot server holds for each silent client (read inside the server: in process)."""
    import asyncio
    from cpuhot.cli import prepare
    from cpuhot.qmp.server import Endpoint, QMPServer

    prepared = prepare(["--compat", "cpuhot", *LOAD_ARGS], prog="cpuhot", default_endpoint=False)
    path = os.path.join(tmp, "inproc.sock")
    box: dict = {}
    ready = threading.Event()

    async def serve() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["server"] = server = QMPServer(prepared.monitor, name="inproc")
        await server.listen(Endpoint("unix", path=path))
        ready.set()
        await server.serve_until_stopped()
    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    ready.wait(30)
    loop, server = box["loop"], box["server"]

    def on_loop(fn):
        done = threading.Event()
        out: list = []
        loop.call_soon_threadsafe(lambda: (out.append(fn()), done.set()))
        done.wait(30)
        return out[0]
    loaders = [Loader(path, command, commands, k) for k in range(clients)]
    _pump_loaders(loaders, read=False, until=time.monotonic() + seconds)
    held = on_loop(lambda: [c.transport.get_write_buffer_size() + c._out_bytes for c in server.connections.values()])
    queued = on_loop(lambda: [len(c._queue) for c in server.connections.values()])
    peak = on_loop(lambda: server.stats["peak_unsent"])
    for c in loaders:
        c.sock.close()
    loop.call_soon_threadsafe(server.request_stop)
    thread.join(30)
    budget = getattr(server, "write_high_water", 0)
    return (f"server-side unsent output per silent client: max {max(held) / 1024:.0f} KiB, peak "
            f"{peak / 1024:.0f} KiB (budget {budget / 1024:.0f} KiB); commands parsed ahead: max {max(queued)}")


def load_figures(kinds: list[str], clients: int, commands: int, silent_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="cpuhot-bench-") as tmp:
        for command in LOAD_COMMANDS:
            print(f"\n{clients} clients x {commands} pipelined {command} (q35, maxcpus=255), probe: query-status")
            if "cpuhot" in kinds:
                print(f"  cpuhot, in process: {held_in_process(tmp, command, clients, commands, silent_seconds)}")
            for kind in kinds:
                srv = Server(kind, tmp, 1 if kind == "cpuhot" else clients + 1 + max(1, clients // 4))
                try:
                    _load_one(srv, command, clients, commands, silent_seconds)
                finally:
                    srv.stop()


def _load_one(srv: Server, command: str, clients: int, commands: int, silent_seconds: float) -> None:
    label = {"cpuhot": "cpuhot (cpuhot profile)", "cpuhot-7.2": "cpuhot (qemu-7.2 profile)", "qemu": "QEMU 7.2"}[srv.kind]
    probe = Probe(srv.path(clients))
    for _ in range(3):      # warm up (first-use allocations are not per-client costs)
        probe.sock.sendall(b'{"execute": "%s"}' % command.encode())
        while b'"return"' not in probe.file.readline():
            pass
    base = srv.rss
    loaders = [Loader(srv.path(k), command, commands, k) for k in range(clients)]
    probe.start()
    probe.phase = "silent"
    peak = base
    end = time.monotonic() + silent_seconds
    while time.monotonic() < end:
        _pump_loaders(loaders, read=False, until=min(end, time.monotonic() + 0.2))
        peak = max(peak, srv.rss)
    silent_rss = peak - base
    probe.phase = "drain"
    t = time.perf_counter()
    _pump_loaders(loaders, read=True, until=time.monotonic() + DRAIN_DEADLINE)
    drain = time.perf_counter() - t
    ok = all(c.ids == list(range(len(c.ids))) for c in loaders)
    got = sum(len(c.ids) for c in loaders)
    peak = max(peak, srv.rss)
    for c in loaders:
        c.sock.close()
    # slow readers: a quarter of the clients, 100 commands each, 64 KiB read per 20 ms
    probe.phase = "slow"
    slow = [Loader(srv.path(clients + 1 + k), command, 100, k) for k in range(max(1, clients // 4))]
    t = time.perf_counter()
    _pump_loaders(slow, read=True, until=time.monotonic() + DRAIN_DEADLINE, chunk=64 << 10, pace=0.02)
    slow_time = time.perf_counter() - t
    slow_ok = all(c.ids == list(range(len(c.ids))) for c in slow)
    slow_got = sum(len(c.ids) for c in slow)
    for c in slow:
        c.sock.close()
    probe.phase = "end"
    probe.stop()
    # a new client of a socket whose previous client left commands unanswered (drain deadline)
    stray_before = len(STRAY)
    if got < clients * commands:
        _negotiated(srv.path(0)).close()
    print(f"  {label}")
    print(f"    silent {silent_seconds:g} s: probe {_stats(probe.latency.get('silent', []))}; "
          f"RSS +{silent_rss:.1f} MiB ({silent_rss / clients:.2f} MiB per silent client)")
    print(f"    drain:    probe {_stats(probe.latency.get('drain', []))}; {got}/{clients * commands} replies "
          f"{'in order' if ok else 'MISSING OR OUT OF ORDER'} in {drain:.1f} s; peak RSS +{peak - base:.1f} MiB")
    print(f"    slow:     probe {_stats(probe.latency.get('slow', []))}; {slow_got}/{len(slow) * 100} replies "
          f"to slow readers {'in order' if slow_ok else 'MISSING OR OUT OF ORDER'} in {slow_time:.1f} s")
    if got < clients * commands:
        print(f"    a new client of a socket whose client left with commands unanswered got "
              f"{len(STRAY) - stray_before} reply(ies) meant for its predecessor before its own")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--only", choices=("device_add", "load"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--commands", type=int, default=1000)
    ap.add_argument("--silent-seconds", type=float, default=5.0)
    ap.add_argument("--targets", default="cpuhot,cpuhot-7.2,qemu",
                    help="load: which of cpuhot (cpuhot profile), cpuhot-7.2 (qemu-7.2 profile), qemu")
    opts = ap.parse_args()
    qemu = [] if opts.no_qemu or not qemu_binary("x86_64") else ["qemu"]
    if opts.only in (None, "device_add"):
        device_add_figures(["cpuhot", *qemu])
    if opts.only in (None, "load"):
        targets = [t for t in opts.targets.split(",") if t in ("cpuhot", "cpuhot-7.2") or t in qemu]
        load_figures(targets, max(1, min(opts.clients, 64)),
                     max(1, min(opts.commands, 10_000)), min(opts.silent_seconds, 60.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
