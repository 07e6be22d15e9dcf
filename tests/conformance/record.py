#!/usr/bin/env python3
"""Record QMP transcripts from a real QEMU 7.2 (stdlib only).

Usage:
    python tests/conformance/record.py [--qemu 5.2|7.2|10.0] [--only NAME_GLOB ...] [--out DIR] [--list]
    python tests/conformance/record.py --qemu 10.0 --only-file NAMES   # re-record the scenarios named there
    python tests/conformance/record.py --compare DIR_A DIR_B

Re-recording a subset writes only those transcripts (into ``transcripts/qemu-X.Y/`` unless
``--out``); a name that matches no scenario of that release is an error (exit 2).  After the
last step of every scenario the recorder waits a final settle and keeps late events (FORMAT.md).

For every scenario of ``scenarios.py`` this starts the scenario's VMs with the real
``qemu-system-ARCH``, drives them over raw QMP sockets and writes one JSON transcript per
scenario (format: FORMAT.md next to this file).  Every QEMU started is ended by PID
(SIGTERM, then SIGKILL) and every temporary directory is removed, also on errors.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent.parent / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import scenarios as S  # noqa: E402

DEFAULT_OUT = HERE / "transcripts"
STARTUP_TIMEOUT = 20.0
REPLY_TIMEOUT = 15.0
#: after a scenario's last step every connection still open is watched until this long passes
#: without input; what arrives meanwhile (late events, an EOF) is recorded as "late" steps and the
#: period as the transcript's ``final_settle`` (FORMAT.md)
FINAL_SETTLE = 0.5
#: the longest the final settle may go on while input keeps arriving (then the scenario fails)
FINAL_SETTLE_LIMIT = 10.0
#: runs again of a scenario whose run went a timing-dependent way (``retry_unless``)
RETRIES = 4


class RecordError(Exception):
    pass


class StartRefused(RecordError):
    """A scenario connects to a VM that this QEMU refused to start (e.g. an -smp another release
    accepts): the transcript is the refusal, with the steps recorded up to that connect."""


# --------------------------------------------------------------------------- helpers


#: which QEMU release records (``--qemu 5.2|7.2|10.0``): its launcher comes from tools/qemus.py
QEMU_RELEASE = "7.2"
ARCH_OF_BINARY = {"qemu-system-x86_64": "x86_64", "qemu-system-ppc64": "ppc64", "qemu-system-s390x": "s390x"}


def qemu_argv(binary: str) -> list[str]:
    """argv prefix that runs ``binary`` (a ``qemu-system-*`` name) of :data:`QEMU_RELEASE`."""
    import qemus
    return qemus.launcher(QEMU_RELEASE, ARCH_OF_BINARY[binary])


def qemu_version(binary: str) -> str:
    out = subprocess.run(qemu_argv(binary) + ["--version"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    m = re.match(r"QEMU emulator version (.*)$", first)
    return m.group(1).strip() if m else first.strip()


def is_reply(msg) -> bool:
    return isinstance(msg, dict) and ("return" in msg or "error" in msg)


def canonical(obj) -> str:
    return json.dumps(obj)


def replace_tmp(value, tmp: str):
    """Replace the per-run temp dir by the ``{tmp}`` placeholder (recursively)."""
    if isinstance(value, str):
        return value.replace(tmp, "{tmp}")
    if isinstance(value, list):
        return [replace_tmp(v, tmp) for v in value]
    if isinstance(value, dict):
        return {replace_tmp(k, tmp): replace_tmp(v, tmp) for k, v in value.items()}
    return value


def fill_tmp(value, tmp: str):
    """Substitute ``{tmp}`` by the real temp dir in everything sent to QEMU."""
    if isinstance(value, str):
        return value.replace("{tmp}", tmp)
    if isinstance(value, bytes):
        return value.replace(b"{tmp}", tmp.encode())
    if isinstance(value, list):
        return [fill_tmp(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: fill_tmp(v, tmp) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- VM / client


class VM:
    def __init__(self, name: str, spec: dict, tmp: str):
        self.name = name
        self.spec = spec
        self.tmp = tmp
        self.sock_path = os.path.join(tmp, f"{name}.sock")
        self.stderr_path = os.path.join(tmp, f"{name}.stderr")
        self.stdout_path = os.path.join(tmp, f"{name}.stdout")
        self.proc: subprocess.Popen | None = None
        self.refused = False
        self.exit_code = None
        self.final_stderr = None
        self.final_stdout = None

    def cmdline(self) -> list[str]:
        return (qemu_argv(self.spec["binary"]) + list(self.spec["prefix"]) + fill_tmp(list(self.spec["args"]), self.tmp)
                + ["-qmp", f"unix:{self.sock_path},server=on,wait=off"])

    def start(self):
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)

    def read_stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace").replace(self.tmp, "{tmp}")
        except FileNotFoundError:
            return ""

    def read_stdout(self) -> str:
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace").replace(self.tmp, "{tmp}")
        except FileNotFoundError:
            return ""

    def wait_ready(self):
        """Wait until QEMU finished start-up (main loop runs) or exited.

        QEMU's QMP greeting is sent by the monitor I/O thread *before* machine init
        has finished, so a greeting proves nothing.  A probe connection therefore sends
        one pre-negotiation command: its reply (CommandNotFound) is produced by the main
        loop, i.e. only after start-up succeeded.  The probe then disconnects; it leaves
        no state behind (negotiation is per connection).  A refused start-up shows as
        EOF / connection reset / process exit.
        """
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._mark_refused()
                return
            if time.monotonic() > deadline:
                raise RecordError(f"{self.name}: start-up timed out")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock_path)
            except OSError:
                s.close()
                time.sleep(0.003)
                continue
            try:
                ok = self._probe(s, deadline)
            finally:
                s.close()
            if ok:
                return
            # the connection died: QEMU is exiting (refused start-up)
            try:
                self.proc.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise RecordError(f"{self.name}: probe connection lost but QEMU did not exit")
            self._mark_refused()
            return

    def _probe(self, s: socket.socket, deadline: float) -> bool:
        buf = b""
        sent = False
        s.setblocking(False)
        while True:
            nl = buf.count(b"\n")
            if not sent and nl >= 1:
                try:
                    s.sendall(b'{"execute": "query-status"}\n')
                except OSError:
                    return False
                sent = True
            if sent and nl >= 2:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise RecordError(f"{self.name}: start-up probe timed out")
            r, _, _ = select.select([s], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    return False
                continue
            try:
                data = s.recv(65536)
            except OSError:
                return False
            if not data:
                return False
            buf += data

    def _mark_refused(self):
        self.refused = True
        self.exit_code = self.proc.returncode

    def poll_exit(self):
        if self.proc is not None and self.exit_code is None:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_code = rc

    def stop(self):
        """End QEMU by PID: SIGTERM, then SIGKILL.  Stderr is captured first."""
        if self.proc is None:
            return
        self.poll_exit()
        if self.final_stderr is None:
            self.final_stderr = self.read_stderr()
            self.final_stdout = self.read_stdout()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f:
                f.close()


class Client:
    def __init__(self, name: str, vm: VM):
        self.name = name
        self.vm = vm
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""
        self.eof = False
        self.closed = False

    def connect(self):
        self.sock.connect(self.vm.sock_path)
        self.sock.setblocking(False)

    def pop_line(self):
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line, self.buf = self.buf[: i + 1], self.buf[i + 1:]
        return line

    def fill(self, timeout: float) -> bool:
        """Read more bytes; False on timeout.  Sets self.eof at end of stream."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return True
        self.buf += data
        return True

    def send(self, data: bytes):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- runner


class Run:
    def __init__(self, sc: dict):
        self.sc = sc
        self.tmp = tempfile.mkdtemp(prefix="cpuhot-rec-")
        self.vms: dict[str, VM] = {}
        self.clients: dict[str, Client] = {}
        self.steps: list[dict] = []

    # -- recording primitives
    def step(self, client: Client, **kw):
        d = {"vm": client.vm.name, "client": client.name}
        d.update(kw)
        self.steps.append(d)

    def record_line(self, c: Client, line: bytes):
        body = line
        if body.endswith(b"\n"):
            body = body[:-1]
        eol_ok = line.endswith(b"\r\n")
        if body.endswith(b"\r"):
            body = body[:-1]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self.step(c, recv_unparsed_b64=base64.b64encode(body).decode())
            return None, True
        try:
            msg = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            self.step(c, recv_unparsed=replace_tmp(text, self.tmp))
            return None, ('"return"' in text or '"error"' in text)
        extra = {}
        if canonical(msg) != text:
            extra["raw"] = replace_tmp(text, self.tmp)
        if not eol_ok:
            extra["eol"] = line[len(body):].decode("latin-1")
        self.step(c, recv=replace_tmp(msg, self.tmp), **extra)
        return msg, is_reply(msg)

    def read_one(self, c: Client, deadline: float):
        """Return ('msg', obj, is_reply) | ('eof',) | ('timeout',)."""
        while True:
            line = c.pop_line()
            if line is not None:
                msg, rep = self.record_line(c, line)
                return ("msg", msg, rep)
            if c.eof:
                if c.buf:
                    # trailing partial line before EOF
                    msg, rep = self.record_line(c, c.buf)
                    c.buf = b""
                    return ("msg", msg, rep)
                return ("eof",)
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout",)
            c.fill(left)

    def mark_eof(self, c: Client):
        if not getattr(c, "eof_recorded", False):
            c.eof_recorded = True
            self.step(c, eof=True)

    def read_replies(self, c: Client, n: int, timeout: float = REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        got = 0
        while got < n:
            r = self.read_one(c, deadline)
            if r[0] == "eof":
                self.mark_eof(c)
                return
            if r[0] == "timeout":
                raise RecordError(f"client {c.name}: expected {n} replies, got {got} after {timeout}s")
            if r[2]:
                got += 1

    def read_messages(self, c: Client, n: int, timeout: float = REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        for i in range(n):
            r = self.read_one(c, deadline)
            if r[0] == "eof":
                self.mark_eof(c)
                return
            if r[0] == "timeout":
                raise RecordError(f"client {c.name}: expected {n} messages, got {i}")

    def settle(self, c: Client, quiet: float, limit: float = 10.0):
        """Record whatever arrives until `quiet` seconds pass without input."""
        end = time.monotonic() + limit
        while True:
            if c.eof:
                if c.buf:
                    self.read_one(c, time.monotonic())
                    continue
                self.mark_eof(c)
                return
            r = self.read_one(c, time.monotonic() + quiet)
            if r[0] == "timeout":
                self.step(c, recv_none=quiet)
                return
            if r[0] == "eof":
                self.mark_eof(c)
                return
            if time.monotonic() > end:
                raise RecordError(f"client {c.name}: no quiet period within {limit}s")

    def final_settle(self, quiet: float, limit: float = FINAL_SETTLE_LIMIT):
        """After the last step: watch every connection still open, all at once, until ``quiet``
        seconds pass with no input on any; record what arrives (events, lines, an EOF) as steps
        marked ``"late": true``."""
        self.settled = quiet
        end = time.monotonic() + limit
        first_late = len(self.steps)
        while True:
            open_ = [c for c in self.clients.values() if not c.closed and not getattr(c, "eof_recorded", False)]
            for c in open_:                       # whatever is already buffered
                while (line := c.pop_line()) is not None:
                    self.record_line(c, line)
                if c.eof:
                    if c.buf:
                        self.record_line(c, c.buf)
                        c.buf = b""
                    self.mark_eof(c)
            open_ = [c for c in open_ if not getattr(c, "eof_recorded", False)]
            if not open_:
                break
            r, _, _ = select.select([c.sock for c in open_], [], [], quiet)
            if not r:
                break
            for c in open_:
                if c.sock in r:
                    c.fill(0)
            if time.monotonic() > end:
                raise RecordError(f"input kept arriving for {limit}s after the last step")
        for st in self.steps[first_late:]:
            st["late"] = True

    def until(self, c: Client, pred, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            r = self.read_one(c, deadline)
            if r[0] == "eof":
                self.mark_eof(c)
                return
            if r[0] == "timeout":
                raise RecordError(f"client {c.name}: condition not met within {timeout}s")
            if r[1] is not None and pred(r[1]):
                return

    # -- actions
    def client_for(self, a: dict) -> Client:
        name = a.get("c", "c0")
        if name not in self.clients:
            raise RecordError(f"unknown client {name}")
        return self.clients[name]

    def do(self, a: dict):
        op = a["op"]
        if op == "connect":
            vm = self.vms[a.get("vm") or "vm0"]
            if vm.refused:
                raise StartRefused(f"connect to refused VM {vm.name}")
            c = Client(a.get("c", "c0"), vm)
            self.clients[c.name] = c
            c.connect()
            self.step(c, connect=True)
            if a.get("greeting", True):
                self.read_messages(c, 1)
            return
        if op == "wait_exit":
            vm = self.vms[a["vm"]]
            try:
                vm.proc.wait(timeout=a.get("timeout", 10.0))
            except subprocess.TimeoutExpired:
                raise RecordError(f"{vm.name} did not exit")
            vm.poll_exit()
            return
        c = self.client_for(a)
        if op in ("send", "raw"):
            if op == "send":
                obj = a["obj"]
                data = (json.dumps(fill_tmp(obj, self.tmp)) + "\n").encode()
                self.step(c, send=obj)
            else:
                data = a["data"]
                try:
                    text = data.decode("utf-8")
                    self.step(c, send_raw=text)
                except UnicodeDecodeError:
                    self.step(c, send_raw_b64=base64.b64encode(data).decode())
                data = fill_tmp(data, self.tmp)
            c.send(data)
            replies = a.get("replies", 1)
            if replies:
                self.read_replies(c, replies, a.get("timeout", REPLY_TIMEOUT))
            settle = a.get("settle")
            if settle is None and not replies:
                settle = S.QUIET
            if settle:
                self.settle(c, settle)
            return
        if op == "recv":
            self.read_messages(c, a.get("n", 1), a.get("timeout", REPLY_TIMEOUT))
            return
        if op == "settle":
            self.settle(c, a["t"])
            return
        if op == "until":
            self.until(c, a["pred"], a.get("timeout", 30.0))
            return
        if op == "poll":
            deadline = time.monotonic() + a.get("timeout", 30.0)
            while True:
                time.sleep(a.get("interval", 0.5))
                obj = a["obj"]
                self.step(c, send=obj)
                c.send((json.dumps(fill_tmp(obj, self.tmp)) + "\n").encode())
                last = []
                dl = time.monotonic() + REPLY_TIMEOUT
                while True:
                    r = self.read_one(c, dl)
                    if r[0] != "msg":
                        raise RecordError("poll: no reply")
                    if r[2]:
                        last = r[1]
                        break
                if a["pred"](last):
                    return
                if time.monotonic() > deadline:
                    raise RecordError("poll: condition not met")
        if op == "close":
            c.close()
            self.step(c, close=True)
            return
        if op == "eof":
            deadline = time.monotonic() + a.get("timeout", 10.0)
            while True:
                r = self.read_one(c, deadline)
                if r[0] == "eof":
                    self.mark_eof(c)
                    return
                if r[0] == "timeout":
                    raise RecordError(f"client {c.name}: no EOF")
        raise RecordError(f"unknown op {op}")

    # -- whole scenario
    def run(self) -> dict:
        sc = self.sc
        try:
            for name, spec in sc["vms"].items():
                vm = VM(name, spec, self.tmp)
                self.vms[name] = vm
                vm.start()
            for vm in self.vms.values():
                vm.wait_ready()
            try:
                for a in sc["steps"]:
                    # a start-up some releases refuse ("may_refuse"): the refusal is the transcript
                    if sc.get("may_refuse") and any(v.refused for v in self.vms.values()):
                        break
                    self.do(a)
            except StartRefused:
                self.refused_here = True
            else:
                self.final_settle(FINAL_SETTLE)
                # a VM that ended every connection during the settle (quit) is on its way out
                for vm in self.vms.values():
                    ended = [c for c in self.clients.values() if c.vm is vm]
                    if ended and all(getattr(c, "eof_recorded", False) for c in ended) and vm.proc is not None:
                        try:
                            vm.proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
            # let a VM that is on its way out (after quit / failed migration) finish
            for vm in self.vms.values():
                vm.poll_exit()
        finally:
            for c in self.clients.values():
                c.close()
            for vm in self.vms.values():
                vm.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

        vms_out = {}
        for name, vm in self.vms.items():
            spec = vm.spec
            d = {"binary": spec["binary"], "args": list(spec["args"]), "prefix": list(spec["prefix"])}
            if vm.refused:
                d["startup"] = {"refused": True, "exit_code": vm.exit_code, "stderr": vm.final_stderr}
            else:
                d["startup"] = {"refused": False}
            d["stderr"] = vm.final_stderr
            d["exit_code"] = vm.exit_code
            if vm.final_stdout:
                d["stdout"] = vm.final_stdout
            vms_out[name] = d
        first = next(iter(sc["vms"].values()))["binary"]
        t = {
            "name": sc["name"],
            "description": sc["description"],
            "tags": list(sc["tags"]) + (["startup-refusal"] if getattr(self, "refused_here", False)
                                        and "startup-refusal" not in sc["tags"] else []),
            "qemu_version": qemu_version(first),
            "volatile_keys": list(sc["volatile_keys"]),
        }
        if sc.get("volatile_patterns"):
            t["volatile_patterns"] = list(sc["volatile_patterns"])
        if getattr(self, "settled", None) is not None:
            t["final_settle"] = self.settled
        t["vms"] = vms_out
        t["steps"] = self.steps
        return t


def _reject_constant(name):
    # QEMU never emits NaN/Infinity; treat Python's extensions as unparsable
    raise ValueError(name)


# --------------------------------------------------------------------------- compare


def normalize(value, keys: set, pats: list):
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in keys else normalize(v, keys, pats)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, keys, pats) for v in value]
    if isinstance(value, str):
        for p in pats:
            value = re.sub(p, "<volatile>", value)
        return value
    return value


def normalized_transcript(t: dict) -> dict:
    keys = set(t.get("volatile_keys", []))
    pats = list(t.get("volatile_patterns", []))
    t = dict(t)
    steps = []
    # unparsed / raw text carries the same volatile values as text
    text_pats = pats + [r'"%s": (\{[^{}]*\}|"[^"]*"|[-+.\w]+)' % re.escape(k) for k in sorted(keys)]
    for s in t["steps"]:
        s = dict(s)
        if "recv" in s:  # compare the wire text, whether or not it needed a "raw" copy
            s["raw"] = s.get("raw", json.dumps(s["recv"]))
        for k in ("raw", "recv_unparsed"):
            if k in s:
                s[k] = normalize(s[k], set(), text_pats)
        steps.append(normalize(s, keys, pats))
    t["steps"] = steps
    t["vms"] = normalize(t["vms"], keys, pats)
    return t


def compare_dirs(a: Path, b: Path) -> int:
    names_a = {p.name for p in a.glob("*.json")}
    names_b = {p.name for p in b.glob("*.json")}
    bad = 0
    for n in sorted(names_a ^ names_b):
        print(f"only in one side: {n}")
        bad += 1
    for n in sorted(names_a & names_b):
        ta = normalized_transcript(json.loads((a / n).read_text()))
        tb = normalized_transcript(json.loads((b / n).read_text()))
        if ta != tb:
            bad += 1
            print(f"DIFF {n}")
            sa, sb = ta["steps"], tb["steps"]
            for i in range(max(len(sa), len(sb))):
                x = sa[i] if i < len(sa) else None
                y = sb[i] if i < len(sb) else None
                if x != y:
                    print(f"  step {i}:\n    A {json.dumps(x)[:300]}\n    B {json.dumps(y)[:300]}")
                    break
            if ta["vms"] != tb["vms"]:
                print(f"  vms differ:\n    A {json.dumps(ta['vms'])[:600]}\n    B {json.dumps(tb['vms'])[:600]}")
    print(f"{len(names_a & names_b)} compared, {bad} differ")
    return 1 if bad else 0


# --------------------------------------------------------------------------- main


_LAST_RUN = None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="NAME_GLOB",
                    help="record only scenarios whose name matches (repeatable)")
    ap.add_argument("--only-file", metavar="FILE",
                    help="record only the scenarios named in FILE (one name or glob a line, # comments)")
    ap.add_argument("--out", default=None, help="output directory (default: transcripts/qemu-VERSION/)")
    ap.add_argument("--qemu", default="7.2", metavar="VERSION",
                    help="which real QEMU records: 5.2, 7.2 (the host's) or 10.0 (tools/qemus.py)")
    ap.add_argument("--list", action="store_true", help="list scenario names and exit")
    ap.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="compare two transcript directories, ignoring volatile values")
    ns = ap.parse_args(argv)
    if ns.compare:
        return compare_dirs(Path(ns.compare[0]), Path(ns.compare[1]))
    scs = S.all_scenarios()
    names = [s["name"] for s in scs]
    dups = {n for n in names if names.count(n) > 1}
    if dups:
        print(f"duplicate scenario names: {sorted(dups)}", file=sys.stderr)
        return 2
    # a scenario that only makes sense on some releases says so: "only_versions": ["10.0", ...]
    scs = [s for s in scs if ns.qemu in s.get("only_versions", [ns.qemu])]
    globs = list(ns.only or [])
    if ns.only_file:
        globs += [ln.split("#", 1)[0].strip() for ln in Path(ns.only_file).read_text().splitlines()]
        globs = [g for g in globs if g]
    if globs:
        unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(s["name"], g) for s in scs)]
        if unmatched:
            print(f"no scenario of QEMU {ns.qemu} matches: {unmatched}", file=sys.stderr)
            return 2
        scs = [s for s in scs if any(fnmatch.fnmatchcase(s["name"], g) for g in globs)]
    if ns.list:
        for s in scs:
            print(s["name"])
        return 0
    global QEMU_RELEASE
    QEMU_RELEASE = ns.qemu
    out = Path(ns.out) if ns.out else DEFAULT_OUT / f"qemu-{ns.qemu}"
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    t_all = time.monotonic()
    for sc in scs:
        t0 = time.monotonic()
        global _LAST_RUN
        try:
            for attempt in range(RETRIES + 1):
                _LAST_RUN = Run(sc)
                t = _LAST_RUN.run()
                # a scenario whose QEMU run may take a timing-dependent path says which run it keeps
                if sc.get("retry_unless") is None or sc["retry_unless"](t):
                    break
                print(f"again {sc['name']}: the run was not the one the scenario records (attempt {attempt + 1})")
            else:
                raise RecordError(f"{RETRIES + 1} runs, none as the scenario records")
        except Exception as e:  # record the failure, go on with the next scenario
            if _LAST_RUN and _LAST_RUN.vms:
                tails = "; ".join(f"{n}: exit={v.exit_code} stderr={(v.final_stderr or '')[-300:]!r}"
                                  for n, v in _LAST_RUN.vms.items())
                last = "\n    ".join(json.dumps(x, default=repr)[:300] for x in _LAST_RUN.steps[-6:])
                e = RecordError(f"{e} [{tails}]\n  last steps:\n    {last}")
            failures.append((sc["name"], f"{type(e).__name__}: {e}"))
            print(f"FAIL {sc['name']}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        (out / f"{sc['name']}.json").write_text(json.dumps(t, indent=1) + "\n")
        print(f"ok   {sc['name']} ({time.monotonic() - t0:.2f}s)")
    print(f"{len(scs) - len(failures)}/{len(scs)} scenarios recorded in {time.monotonic() - t_all:.1f}s")
    if failures:
        for n, e in failures:
            print(f"  failed: {n}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
