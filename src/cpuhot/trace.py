"""QMP traces: record every exchange of a server (``serve --trace FILE``) and replay the clients'
side against any QMP server (``python -m cpuhot replay FILE --against unix:PATH``).

A trace is JSON lines, one record per line::

    {"t": 1764151234.5, "dir": "meta", "argv": [...], "prog": "cpuhot", "cpuhot": "0.1.0"}
    {"t": 1764151234.6, "dir": "open", "client": 0}
    {"t": 1764151234.6, "dir": "out", "client": 0, "raw": "{\\"QMP\\": {...}}"}
    {"t": 1764151234.7, "dir": "in", "client": 0, "raw": "{\\"execute\\": \\"qmp_capabilities\\"}\\n"}
    {"t": 1764151234.7, "dir": "out", "client": 0, "raw": "{\\"return\\": {}}"}
    {"t": 1764151235.0, "dir": "close", "client": 0}

``in`` records hold the bytes the client sent exactly as they arrived (``raw``, or
``raw_base64`` when they are not UTF-8); ``out`` records hold each message the server
wrote, as it wrote it (without the final ``\\r\\n``).  ``t`` is the wall clock.

Replay opens one connection per traced client, sends the ``in`` bytes in the traced order
and timing, and compares every message received with the traced one, ignoring volatile
values (``timestamp``, ``thread-id``, ``package``, HMP ``thread_id=N``).  Events that
arrive in a different order relative to replies still match.  Exit status 0: no
difference; 1: differences (listed as a readable diff); 2: the trace or server could not
be used.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import json
import re
import sys
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, TextIO, cast

from .qmp.framing import encode

if TYPE_CHECKING:
    from .qmp.protocol import Session

#: one line of a trace file: a JSON object (``t``, ``dir``, ``client``, ``raw``/``raw_base64``, ...)
Record = dict[str, Any]

DEFAULT_VOLATILE_KEYS = ("timestamp", "thread-id", "package")
DEFAULT_VOLATILE_PATTERNS = (r"thread_id=\d+",)
PLACEHOLDER = "<volatile>"


# -- recording --------------------------------------------------------------------------------

class Tracer:
    """``QMPServer(tracer=Tracer(path))``: writes each exchange as one JSON line."""

    def __init__(self, path: str, *, argv: list[str] | None = None, prog: str | None = None):
        from . import __version__
        self.path = path
        # 0600 like the socket and the state file: a trace holds every command and reply
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)          # an existing file keeps its mode otherwise
        except OSError:
            pass
        self._f: TextIO | None = open(fd, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._write({"t": time.time(), "dir": "meta", "argv": list(argv or []), "prog": prog,
                     "cpuhot": __version__})

    def _write(self, record: Record) -> None:
        with self._lock:
            if self._f is None:
                return
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()

    def __call__(self, direction: str, session: Session | None, payload: object) -> None:
        number = session.number if session is not None else None
        record: Record = {"t": time.time()}
        if direction == "recv":
            record.update({"dir": "in", "client": number})
            data = cast(bytes, payload)      # "recv" carries the raw bytes (QMPServer.trace)
            try:
                record["raw"] = data.decode("utf-8")
            except UnicodeDecodeError:
                record["raw_base64"] = base64.b64encode(data).decode("ascii")
        elif direction == "out":
            record.update({"dir": "out", "client": number,
                           "raw": encode(payload).decode("ascii", "replace").rstrip("\r\n")})
        elif direction in ("open", "close"):
            record.update({"dir": direction, "client": number})
        else:
            return                       # "in" (parsed items): the raw bytes are already recorded
        self._write(record)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def load(path: str) -> list[Record]:
    records: list[Record] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line: {e}") from None
    return records


def input_bytes(record: Record) -> bytes:
    if "raw_base64" in record:
        return base64.b64decode(record["raw_base64"])
    raw: str = record["raw"]
    return raw.encode("utf-8")


def trace_argv(records: Iterable[Record]) -> list[str]:
    """The server command line a trace was recorded with (its ``meta`` record)."""
    for r in records:
        if r.get("dir") == "meta":
            return list(r.get("argv") or [])
    return []


# -- comparing --------------------------------------------------------------------------------

#: objects whose members are topology, never volatile (``props.thread-id`` is a thread number,
#: unlike the host TID ``thread-id`` of query-cpus-fast)
STABLE_PARENTS = frozenset({"props"})


def normalize(value: object, keys: frozenset[str], patterns: list[re.Pattern[str]],
              parent: str | None = None) -> object:
    if isinstance(value, dict):
        volatile = keys if parent not in STABLE_PARENTS else frozenset()
        return {k: (PLACEHOLDER if k in volatile else normalize(v, keys, patterns, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, keys, patterns, parent) for v in value]
    if isinstance(value, str):
        for p in patterns:
            value = p.sub(PLACEHOLDER, value)
    return value


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pretty(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return json.dumps(value, indent=2, sort_keys=False).splitlines()


def _is_event(msg: object) -> bool:
    return isinstance(msg, dict) and "event" in msg


def windows_match(expected: list[object], got: list[object]) -> bool:
    """Equal in order, or equal with events allowed to move relative to replies."""
    if expected == got:
        return True
    if len(expected) != len(got):
        return False
    if [m for m in expected if not _is_event(m)] != [m for m in got if not _is_event(m)]:
        return False
    rest = [m for m in got if _is_event(m)]
    for m in (m for m in expected if _is_event(m)):
        if m not in rest:
            return False
        rest.remove(m)
    return True


class Difference:
    def __init__(self, where: str, sent: str | None, expected: list[object], got: list[object]):
        self.where = where
        self.sent = sent
        self.expected = expected
        self.got = got

    def render(self) -> str:
        lines = [f"--- {self.where}"]
        if self.sent:
            sent = self.sent.strip()
            lines.append(f"    after sending: {sent if len(sent) <= 200 else sent[:200] + '...'}")
        exp = [line for m in self.expected for line in _pretty(m)]
        got = [line for m in self.got for line in _pretty(m)]
        if not self.got:
            lines.append("    the server sent nothing (timed out)")
        if not self.expected:
            lines.append("    the trace has no message here")
        diff = difflib.unified_diff(exp, got, "trace", "server", lineterm="", n=3)
        lines.extend("    " + d for d in diff)
        return "\n".join(lines)


# -- replaying --------------------------------------------------------------------------------

class _Conn:
    def __init__(self, address: str, timeout: float):
        from .client import LineReader, connect
        self.sock = connect(address, timeout)
        self.reader = LineReader(self.sock)

    def read(self, timeout: float) -> str | None:
        line = self.reader.read_line(timeout)
        return None if line is None else line.decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Replayer:
    def __init__(self, records: list[Record], address: str, *, timeout: float = 5.0, speed: float = 1.0,
                 volatile_keys: Iterable[str] = DEFAULT_VOLATILE_KEYS,
                 volatile_patterns: Iterable[str] = DEFAULT_VOLATILE_PATTERNS, quiet_wait: float = 0.1):
        self.records = records
        self.address = address
        self.timeout = timeout
        self.speed = speed
        self.keys = frozenset(volatile_keys)
        self.patterns = [re.compile(p) for p in volatile_patterns]
        self.quiet_wait = quiet_wait
        self.compared = 0
        self.differences: list[Difference] = []

    def _norm(self, text: str) -> object:
        return normalize(_parse(text), self.keys, self.patterns)

    def run(self) -> list[Difference]:
        conns: dict[int, _Conn] = {}
        pending: dict[int, list[Record]] = {}
        last_sent: dict[int, str] = {}
        clock_trace = None      # trace time of the previous input
        clock_real = 0.0        # set with clock_trace
        step = 0

        def flush_all() -> None:
            for client in list(pending):
                self._compare_window(client, conns.get(client), pending.pop(client), last_sent.get(client), step)

        try:
            for rec in self.records:
                kind = rec.get("dir")
                client: Any = rec.get("client")         # a client number (recorded JSON)
                if kind == "out":
                    pending.setdefault(client, []).append(rec)
                    continue
                if kind not in ("open", "in", "close"):
                    continue
                flush_all()
                step += 1
                if kind == "open":
                    conns[client] = _Conn(self.address, self.timeout)
                elif kind == "in":
                    t = rec.get("t")
                    if clock_trace is not None and t is not None and self.speed > 0:
                        wait = (t - clock_trace) / self.speed - (time.monotonic() - clock_real)
                        if wait > 0:
                            time.sleep(min(wait, 60.0))
                    clock_trace, clock_real = t, time.monotonic()
                    data = input_bytes(rec)
                    last_sent[client] = data.decode("utf-8", "replace")
                    conn = conns.get(client)
                    if conn is not None:
                        try:
                            conn.sock.sendall(data)
                        except OSError:
                            pass
                elif kind == "close":
                    conn = conns.pop(client, None)
                    if conn is not None:
                        conn.close()
            flush_all()
            for client, conn in conns.items():        # anything the trace does not have?
                extra = []
                while True:
                    line = conn.read(self.quiet_wait)
                    if line is None:
                        break
                    extra.append(self._norm(line))
                if extra:
                    self.differences.append(Difference(f"end of trace, client {client}: unexpected messages",
                                                       None, [], extra))
        finally:
            for conn in conns.values():
                conn.close()
        return self.differences

    def _compare_window(self, client: int, conn: _Conn | None, expected_recs: list[Record], sent: str | None,
                        step: int) -> None:
        expected = [self._norm(r["raw"]) for r in expected_recs]
        got: list[object] = []
        if conn is not None:
            for _ in expected:
                line = conn.read(self.timeout)
                if line is None:
                    break
                got.append(self._norm(line))
        self.compared += len(expected)
        if not windows_match(expected, got):
            self.differences.append(Difference(f"step {step}, client {client}", sent, expected, got))


def replay(path_or_records: str | Iterable[Record], address: str, **kw: Any) -> Replayer:
    """Replay a trace against ``address``; the returned :class:`Replayer` has ``differences``."""
    records = load(path_or_records) if isinstance(path_or_records, str) else list(path_or_records)
    r = Replayer(records, address, **kw)
    r.run()
    return r


def replay_main(argv: list[str]) -> int:
    """``python -m cpuhot replay FILE --against unix:PATH|tcp:HOST:PORT``"""
    ap = argparse.ArgumentParser(prog="python -m cpuhot replay",
                                 description="Replay the client side of a QMP trace against any QMP server "
                                             "(cpuhot or QEMU) and report where the replies differ.")
    ap.add_argument("trace", help="a trace written by 'serve --trace FILE'")
    ap.add_argument("--against", metavar="ADDRESS", help="unix:PATH or tcp:HOST:PORT (needed unless --show-argv)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each message (default 5)")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="replay this many times faster than recorded (0: no pauses; default 1)")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY",
                    help="another volatile key (repeatable); always ignored: " + ", ".join(DEFAULT_VOLATILE_KEYS))
    ap.add_argument("--show-argv", action="store_true", help="print the traced server's argv and exit")
    ns = ap.parse_args(argv)
    try:
        records = load(ns.trace)
    except (OSError, ValueError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    if ns.show_argv:
        print(" ".join(trace_argv(records)))
        return 0
    if ns.against is None:
        ap.error("the following arguments are required: --against")
    try:
        r = replay(records, ns.against, timeout=ns.timeout, speed=ns.speed,
                   volatile_keys=(*DEFAULT_VOLATILE_KEYS, *ns.ignore))
    except (OSError, ValueError) as e:
        print(f"replay: {ns.against}: {e}", file=sys.stderr)
        return 2
    for d in r.differences:
        print(d.render())
    verdict = "no difference" if not r.differences else f"{len(r.differences)} difference(s)"
    print(f"replay: {r.compared} messages compared against {ns.against}: {verdict}")
    return 1 if r.differences else 0
