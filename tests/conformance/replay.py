"""Replay recorded QEMU 7.2 transcripts against cpuhot and compare, ignoring volatile values.

Used by ``test_replay.py``; also runnable by hand:
``python -m tests.conformance.replay transcripts/NAME.json`` prints the first difference.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from cpuhot.cli import prepare
from cpuhot.launch import _launch_thread

HERE = Path(__file__).parent
#: one corpus per real QEMU release: ``transcripts/qemu-X.Y/`` is replayed against ``--compat qemu-X.Y``
CORPORA = HERE / "transcripts"
TRANSCRIPTS = CORPORA / "qemu-7.2"
DEFAULT_COMPAT = "qemu-7.2"


def corpora() -> list[str]:
    """Names of the recorded corpora (= the profile each is replayed against), e.g. ``qemu-7.2``."""
    return sorted((p.name for p in CORPORA.iterdir() if p.is_dir() and p.name.startswith("qemu-")),
                  key=lambda n: tuple(int(x) for x in n.split("-", 1)[1].split(".")))


def known_gaps(corpus: str) -> dict[str, str]:
    """``transcripts/<corpus>/known-gaps*.json`` (``known-gaps.json`` and per-area files such as
    ``known-gaps-s390x.json``, merged): scenario name -> why cpuhot does not match it yet."""
    gaps: dict[str, str] = {}
    for f in sorted((CORPORA / corpus).glob("known-gaps*.json")):
        gaps.update(json.loads(f.read_text()))
    return gaps


def scenario_names(corpus: str) -> list[str]:
    return sorted(p.stem for p in (CORPORA / corpus).glob("*.json") if not p.name.startswith("known-gaps"))
PLACEHOLDER = "<volatile>"
#: how long a replay watches the connections still open after the last step for anything more:
#: the transcript's ``final_settle``, at most this long -- as long as the replay waits at a
#: ``recv_none`` step (``quiet_wait``).  cpuhot's late events are due within milliseconds (model
#: timers such as s390x's 2 ms disabled-wait, migration tasks), where QEMU's real ones needed the
#: recorder's full period; waiting 0.5 s on each of the ~1000 transcripts would add 8 minutes to
#: CI.  CPUHOT_REPLAY_SETTLE=0.5 waits the recorder's whole period.
REPLAY_SETTLE = float(os.environ.get("CPUHOT_REPLAY_SETTLE", "0.05"))


class Mismatch(AssertionError):
    pass


def typed(value):
    """``value`` with every scalar tagged by its JSON type, so that comparing two of them is
    type-strict: Python's ``True == 1`` and ``1.0 == 1`` would hide a reply whose types differ
    from QEMU's (``true`` is not ``1``, ``1.0`` is not ``1``)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def same(a, b) -> bool:
    """Type-strict equality of two JSON values (see :func:`typed`)."""
    return typed(a) == typed(b)


def load(name_or_path) -> dict:
    p = Path(name_or_path)
    if not p.exists():
        p = TRANSCRIPTS / f"{name_or_path}.json"
    return json.loads(p.read_text())


def normalize(value, keys: set[str], patterns: list[re.Pattern]):
    if isinstance(value, dict):
        return {k: (PLACEHOLDER if k in keys else normalize(v, keys, patterns)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, keys, patterns) for v in value]
    if isinstance(value, str):
        for p in patterns:
            value = p.sub(PLACEHOLDER, value)
    return value


class Client:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.eof = False
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> bool:
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_line(self, timeout: float = 5.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self._fill(left)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def nothing_within(self, timeout: float) -> bool:
        if self.buf:
            return False
        return not self._fill(timeout) and not self.buf

    def at_eof(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            if self.buf:
                return False
            self._fill(deadline - time.monotonic())
        return self.eof and not self.buf

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def final_settle(clients, seconds: float) -> None:
    """After the last step: nothing more may arrive on any connection still open within
    ``seconds`` (QEMU sent nothing more within the transcript's ``final_settle``)."""
    open_ = [(key, c) for key, c in clients.items() if not c.closed and not (c.eof and not c.buf)]
    deadline = time.monotonic() + seconds
    while True:
        for (vm, client), c in open_:
            if c.buf or c.eof:
                extra = c.buf.split(b"\n", 1)[0] if c.buf else b"<EOF>"
                raise Mismatch(f"after the last step ({vm}/{client}): QEMU sent nothing more within the "
                               f"final settle, cpuhot sent {extra!r}")
        left = deadline - time.monotonic()
        if left <= 0 or not open_:
            return
        ready, _, _ = select.select([c.sock for _, c in open_], [], [], left)
        for _, c in open_:
            if c.sock in ready:
                c._fill(0)


def replay(transcript: dict, *, compat: str = DEFAULT_COMPAT, quiet_wait: float = 0.05,
           settle_wait: float = REPLAY_SETTLE) -> dict:
    """Replay ``transcript`` against cpuhot; raise :class:`Mismatch` at the first difference.

    After the last step, when the transcript has a ``final_settle``, every connection still open is
    watched for ``min(final_settle, settle_wait)`` seconds: anything arriving is a mismatch (the
    late events QEMU did send are the transcript's ``late`` steps, compared like any other).

    Returns a small report (how many messages were compared)."""
    keys = set(transcript.get("volatile_keys", []))
    patterns = [re.compile(p) for p in transcript.get("volatile_patterns", [])]
    tmp = tempfile.mkdtemp(prefix="cpuhot-replay-")
    running, clients, compared = {}, {}, 0
    try:
        def subst(v):
            return json.loads(json.dumps(v).replace("{tmp}", tmp))

        for name, spec in transcript["vms"].items():
            prog = spec["binary"]
            argv = [*spec["prefix"], *subst(spec["args"]), "--compat", compat,
                    "-qmp", f"unix:{tmp}/{name}.sock,server=on,wait=off"]
            prepared = prepare(argv, prog=prog)
            startup = spec["startup"]
            if startup.get("refused"):
                if prepared.exit_code != startup["exit_code"]:
                    raise Mismatch(f"{name}: exit code {prepared.exit_code!r}, QEMU {startup['exit_code']!r}; "
                                   f"our stderr: {prepared.stderr!r}")
                if prepared.stderr != subst(startup["stderr"]):
                    raise Mismatch(f"{name}: stderr {prepared.stderr!r}\n      QEMU {startup['stderr']!r}")
                compared += 1
                continue
            if prepared.exit_code is not None:
                raise Mismatch(f"{name}: cpuhot refused to start: {prepared.stderr!r}")
            running[name] = _launch_thread(prepared, f"{tmp}/{name}.sock", None)
            running[name].prog = prog


        for i, step in enumerate(transcript["steps"]):
            where = f"step {i} ({step.get('client')})"
            key = (step["vm"], step["client"])
            if step.get("connect"):
                clients[key] = Client(f"{tmp}/{step['vm']}.sock")
                continue
            c = clients[key]
            if "send" in step:
                c.last_command = step["send"].get("execute") if isinstance(step["send"], dict) else None
                if c.last_command == "query-migrate":
                    _await_migration_state(c, transcript["steps"][i + 1:])
                c.send(json.dumps(subst(step["send"])).encode() + b"\n")
            elif "send_raw" in step:
                c.send(subst(step["send_raw"]).encode())
            elif "send_raw_b64" in step:
                c.send(base64.b64decode(step["send_raw_b64"]))
            elif "recv" in step:
                line = c.read_line()
                if line is None:
                    raise Mismatch(f"{where}: nothing received, QEMU sent {step['recv']}")
                if not line.endswith(b"\r"):
                    raise Mismatch(f"{where}: line not terminated by \\r\\n: {line!r}")
                got = json.loads(line[:-1])
                want = subst(step["recv"])
                if getattr(c, "last_command", None) == "qom-list":
                    got, want = _sorted_listing(got), _sorted_listing(want)   # QEMU lists in hash order
                if not same(normalize(got, keys, patterns), normalize(want, keys, patterns)):
                    raise Mismatch(f"{where}:\n  cpuhot {json.dumps(got)}\n  QEMU   {json.dumps(want)}")
                if "raw" in step and not (keys & _all_keys(want)):
                    if line[:-1].decode() != subst(step["raw"]):
                        raise Mismatch(f"{where}: raw text\n  cpuhot {line[:-1].decode()}\n  QEMU   {step['raw']}")
                compared += 1
            elif "recv_unparsed" in step:
                line = c.read_line()
                if line is None or line[:-1].decode(errors="replace") != step["recv_unparsed"]:
                    raise Mismatch(f"{where}: got {line!r}, QEMU sent {step['recv_unparsed']!r}")
                compared += 1
            elif step.get("recv_any_reply"):
                while True:
                    line = c.read_line()
                    if line is None:
                        raise Mismatch(f"{where}: cpuhot did not answer (QEMU crashed here; cpuhot must not)")
                    if "return" in json.loads(line) or "error" in json.loads(line):
                        break
                compared += 1
            elif "recv_none" in step:
                if not c.nothing_within(min(step["recv_none"], quiet_wait)):
                    raise Mismatch(f"{where}: QEMU stayed silent, cpuhot sent {c.read_line(0.1)!r}")
            elif step.get("close"):
                c.close()
            elif step.get("eof"):
                if not c.at_eof():
                    raise Mismatch(f"{where}: QEMU closed the connection, cpuhot did not")
                compared += 1
            else:
                raise Mismatch(f"{where}: unknown step {step}")
        if "final_settle" in transcript:
            final_settle(clients, min(transcript["final_settle"], settle_wait))
        for name, r in running.items():
            spec = transcript["vms"][name]
            if "migration" in transcript.get("tags", []):
                continue
            ours = r.stderr + "".join(f"{r.prog}: {line}\n" if prefixed else f"{line}\n"
                                      for prefixed, line in r.vm.stderr)
            want = subst(spec.get("stderr", ""))
            if ours != want:
                raise Mismatch(f"{name}: stderr {ours!r}\n      QEMU {want!r}")
            compared += 1
        return {"compared": compared}
    finally:
        for c in clients.values():
            try:
                c.close()
            except OSError:
                pass
        for r in running.values():
            r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _await_migration_state(c: Client, rest: list[dict]) -> None:
    """The recorder polled query-migrate until it saw a final state; a replayer that asks at once
    may see an earlier one.  Poll (bounded) until cpuhot is where QEMU was; events that arrive
    meanwhile are kept, in order, for the recorded steps that expect them."""
    want = next((s["recv"] for s in rest if "recv" in s and "return" in s["recv"]), None)
    status = want["return"].get("status") if want and isinstance(want.get("return"), dict) else None
    if status not in ("completed", "failed"):
        return
    kept: list[bytes] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c.send(b'{"execute": "query-migrate", "id": "__replay_poll"}')
        reached = False
        while True:
            line = c.read_line()
            if line is None:
                break
            msg = json.loads(line)
            if msg.get("id") == "__replay_poll":
                reached = isinstance(msg.get("return"), dict) and msg["return"].get("status") == status
                break
            kept.append(line)
        if reached:
            break
        time.sleep(0.01)
    c.buf = b"".join(k + b"\n" for k in kept) + c.buf


def _sorted_listing(msg):
    if isinstance(msg, dict) and isinstance(msg.get("return"), list):
        return {**msg, "return": sorted(msg["return"], key=lambda e: json.dumps(e, sort_keys=True))}
    return msg


def _all_keys(v) -> set[str]:
    if isinstance(v, dict):
        out = set(v)
        for x in v.values():
            out |= _all_keys(x)
        return out
    if isinstance(v, list):
        out = set()
        for x in v:
            out |= _all_keys(x)
        return out
    return set()


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        t = load(arg)
        try:
            print(t["name"], replay(t))
        except Mismatch as e:
            print(t["name"], "MISMATCH", e)
