"""Live differential test: random topologies and random hot-plug sequences, real QEMU 7.2 vs cpuhot.

Hypothesis draws a machine (pc, q35, pseries) and a topology within TCG's limits, then a sequence
of device_add (valid props of a free or occupied slot, or broken ones: out of range, missing,
wrong type, wrong driver, duplicate id), device_del (hot-plugged, boot, unknown) and queries.  The
sequence runs on a real ``qemu-system-*`` and on ``cpuhot --compat qemu-7.2`` with the same argv;
every reply and event must be equal (thread ids and timestamps aside).

``CPUHOT_LIVE_EXAMPLES`` sets the number of sequences (default 200).  Without QEMU the test is
skipped with a loud reason; ``.ci/run`` installs QEMU from apt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from cpuhot.launch import LaunchError, launch_argv
from cpuhot.machine.cpu_models import model_from_type, resolve_cpu_model
from cpuhot.machine.machines import find_machine

from tests import qemu_versions

from .replay import _sorted_listing, corpora, normalize, same

EXAMPLES = int(os.environ.get("CPUHOT_LIVE_EXAMPLES", "200"))
#: CI replays the same pseudo-random sequences every run; set CPUHOT_LIVE_RANDOM=1 to explore new ones
RANDOM = os.environ.get("CPUHOT_LIVE_RANDOM") == "1"
BINARIES = {"pc": "qemu-system-x86_64", "q35": "qemu-system-x86_64", "pseries": "qemu-system-ppc64"}
ARCHES = {"pc": "x86_64", "q35": "x86_64", "pseries": "ppc64"}
#: every release whose corpus is recorded (transcripts/qemu-X.Y/) is compared live with its profile
LIVE_RELEASES = [c.split("-", 1)[1] for c in corpora()]
PREFIX = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg"]
VOLATILE = {"timestamp", "thread-id", "package"}
#: HMP ``info cpus`` shows host thread ids (FORMAT.md: volatile_patterns)
VOLATILE_TEXT = [re.compile(r"thread_id=\d+")]
STATS = {"sequences": 0, "commands": 0, "qemu_crashed": 0}
#: the "command" under which what arrived after the last reply is compared
AFTER_LAST = {"execute": "(nothing: what arrived after the last reply)"}
#: after a sequence's last reply both sides are watched this long for late events (the recorder's
#: final settle, FORMAT.md; shorter, as 640 sequences run in CI: 0.05 s on both sides adds about
#: a minute in all): they must be equal too
SEQ_SETTLE = float(os.environ.get("CPUHOT_LIVE_SETTLE", "0.05"))

pytestmark = pytest.mark.qemu


class Raw:
    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.readline()
        self.call({"execute": "qmp_capabilities"})

    def readline(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, msg: dict) -> list[dict]:
        """Send; return everything up to and including the reply (events first)."""
        self.sock.sendall(json.dumps(msg).encode())
        out = []
        while True:
            m = self.readline()
            out.append(m)
            if "return" in m or "error" in m:
                return out

    def settle(self, seconds: float) -> list:
        """What arrives after the last reply until ``seconds`` pass in silence (late events; an
        EOF as ``"<EOF>"``): FORMAT.md's final settle."""
        import select
        out: list = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if b"\n" not in self.buf:
                ready, _, _ = select.select([self.sock], [], [], seconds)
                if not ready:
                    return out
            try:
                out.append(self.readline())
            except (EOFError, ConnectionResetError):
                out.append("<EOF>")
                return out
        return out

    def close(self):
        self.sock.close()


class Refused(tuple):
    """A start-up refusal: (exit code, stderr without the program-name prefixes)."""


def _refusal(exit_code: int, stderr: str) -> Refused:
    lines = [re.sub(r"^[\w./-]+: ", "", line) for line in stderr.splitlines()]
    return Refused((exit_code, "\n".join(lines)))


def run_qemu(machine_args: list[str], launcher: list[str], ops: list[dict]) -> list[list[dict]] | Refused | None:
    tmp = tempfile.mkdtemp(prefix="cpuhot-live-")
    path = os.path.join(tmp, "q.sock")
    err = open(os.path.join(tmp, "stderr"), "w+")
    proc = subprocess.Popen([*launcher, *PREFIX, *machine_args, "-qmp", f"unix:{path},server=on,wait=off"],
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        client = None
        while client is None:
            if proc.poll() is not None:
                err.seek(0)
                return _refusal(proc.returncode, err.read())
            try:
                client = Raw(path)
            except (OSError, ValueError, EOFError):
                # not listening yet, or the greeting came and start-up then failed (QEMU greets early)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        try:
            return [*(client.call(op) for op in ops), client.settle(SEQ_SETTLE)]
        except (EOFError, ConnectionResetError, BrokenPipeError, ValueError):
            if proc.wait(timeout=10) is not None and proc.returncode == 1:
                err.seek(0)
                return _refusal(proc.returncode, err.read())   # start-up failed after the greeting
            return None           # QEMU itself died (a known QEMU defect); inconclusive
        finally:
            client.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run_cpuhot(machine_args: list[str], ops: list[dict], release: str = "7.2") -> list[list[dict]] | Refused:
    try:
        vm_cm = launch_argv([*PREFIX, *machine_args, "--compat", f"qemu-{release}"])
        vm = vm_cm.__enter__()
    except LaunchError as e:
        return _refusal(e.exit_code, e.stderr)
    try:
        client = Raw(vm.qmp_path)
        try:
            return [*(client.call(op) for op in ops), client.settle(SEQ_SETTLE)]
        finally:
            client.close()
    finally:
        vm_cm.__exit__(None, None, None)


# -- strategies -------------------------------------------------------------------------------

#: -cpu models drawn for x86 (TCG-safe, no host dependence); pseries uses its default or POWER9
X86_MODELS = ["qemu64", "Haswell-noTSX", "Skylake-Client", "EPYC", "Westmere"]


@st.composite
def machines(draw):
    machine = draw(st.sampled_from(["pc", "q35", "pseries"]))
    if machine == "pseries":
        sockets, dies, cores, threads = draw(st.integers(1, 2)), 1, draw(st.integers(1, 4)), 1
    else:
        sockets, dies = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        cores, threads = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    maxcpus = sockets * dies * cores * threads
    cpus = draw(st.integers(1, maxcpus))
    smp = f"{cpus},maxcpus={maxcpus},sockets={sockets},cores={cores},threads={threads}"
    if machine != "pseries":
        smp += f",dies={dies}"
    args = ["-machine", machine, "-smp", smp]
    model = draw(st.sampled_from([None, *X86_MODELS] if machine != "pseries" else [None, "POWER9"]))
    if model:
        args += ["-cpu", model]
    nodes = draw(st.integers(0, 2))
    if nodes:
        # cpus= per node (by cpu-index), the NUMA mapping clients must line up with the entries
        split = draw(st.integers(0, maxcpus))
        ranges = [(0, split - 1), (split, maxcpus - 1)] if nodes == 2 else [(0, maxcpus - 1)]
        args += ["-m", "512M"]
        for i, (lo, hi) in enumerate(ranges):
            size = 512 // len(ranges)
            args += ["-object", f"memory-backend-ram,id=m{i},size={size}M"]
            opt = f"node,nodeid={i},memdev=m{i}"
            if lo <= hi and draw(st.booleans()):
                opt += f",cpus={lo}" + (f"-{hi}" if hi > lo else "")
            args += ["-numa", opt]
    return machine, args, dict(sockets=sockets, dies=dies, cores=cores, threads=threads, maxcpus=maxcpus,
                               cpus=cpus, model=model, nodes=nodes)


def slot_props(machine, topo, draw):
    if machine == "pseries":
        return {"core-id": draw(st.integers(0, topo["maxcpus"] - 1))}
    props = {"socket-id": draw(st.integers(0, topo["sockets"] - 1)),
             "core-id": draw(st.integers(0, topo["cores"] - 1)),
             "thread-id": draw(st.integers(0, topo["threads"] - 1))}
    if topo["dies"] > 1:
        props["die-id"] = draw(st.integers(0, topo["dies"] - 1))
    return props


def default_driver(machine: str, release: str, model: str | None = None) -> str:
    """The plug type of the machine's CPU model in that release (POWER9 on 7.2, POWER10 on 10.0)."""
    if machine != "pseries":
        return f"{model or 'qemu64'}-x86_64-cpu"
    if model:
        return resolve_cpu_model("ppc64", model, None, release).plug_type
    m = find_machine("ppc64", "pseries", release)
    return model_from_type("ppc64", m.default_cpu_type, release).plug_type


@st.composite
def sequences(draw, release: str = "7.2"):
    machine, args, topo = draw(machines())
    driver = default_driver(machine, release, topo["model"])
    ops = []
    ids = []
    for n in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(["add", "add", "add", "bad-add", "del", "query", "query-fast",
                                     "hmp", "qom-list", "qom-get"]))
        if kind == "add":
            props = slot_props(machine, topo, draw)
            ident = draw(st.sampled_from([None, f"cpu{n}", *(ids[-1:] if ids else [])]))
            args_ = {"driver": driver, **props}
            if ident:
                args_["id"] = ident
                ids.append(ident)
            ops.append({"execute": "device_add", "arguments": args_})
        elif kind == "bad-add":
            props = slot_props(machine, topo, draw)
            key = draw(st.sampled_from(sorted(props)))
            broken = draw(st.sampled_from(["big", "negative", "missing", "string", "float", "driver", "type"]))
            if broken == "big":
                props[key] = 64
            elif broken == "negative":
                props[key] = -1
            elif broken == "missing":
                props.pop(key)
            elif broken == "string":
                props[key] = "x"
            elif broken == "float":
                props[key] = 0.5
            d = driver
            if broken == "driver":
                d = "nosuch-cpu"
            elif broken == "type":
                d = "Haswell-x86_64-cpu" if machine != "pseries" else "power8_v2.0-spapr-cpu-core"
            ops.append({"execute": "device_add", "arguments": {"driver": d, **props}})
        elif kind == "del":
            target = draw(st.sampled_from([*ids, "nosuch", "/machine/unattached/device[0]",
                                           "/machine/peripheral-anon/device[0]"]))
            ops.append({"execute": "device_del", "arguments": {"id": target}})
        elif kind == "hmp":
            line = draw(st.sampled_from(["info hotpluggable-cpus", "info cpus", "info numa", "device_del nosuch"]))
            ops.append({"execute": "human-monitor-command", "arguments": {"command-line": line}})
        elif kind == "qom-list":
            ops.append({"execute": "qom-list", "arguments": {
                "path": draw(st.sampled_from(["/machine/peripheral", "/machine/peripheral-anon"]))}})
        elif kind == "qom-get":
            target = draw(st.sampled_from([*(f"/machine/peripheral/{i}" for i in ids), "/machine/peripheral/nosuch"]))
            prop = draw(st.sampled_from(["node-id", "core-id", "hotplugged", "realized", "nosuch"]
                                        + (["socket-id", "thread-id", "apic-id"] if machine != "pseries"
                                           else ["nr-threads"])))
            ops.append({"execute": "qom-get", "arguments": {"path": target, "property": prop}})
        elif kind == "query":
            ops.append({"execute": "query-hotpluggable-cpus"})
        else:
            ops.append({"execute": "query-cpus-fast"})
    ops.append({"execute": "query-hotpluggable-cpus"})
    ops.append({"execute": "query-cpus-fast"})
    return machine, args, topo, ops


def _safe_prefix(machine: str, topo: dict, ops: list[dict], replies: list[list[dict]]) -> int:
    """QEMU 7.2 pseries/TCG aborts once more vCPUs were created in its lifetime than maxcpus:
    stop the sequence before that."""
    if machine != "pseries":
        return len(ops)
    created = topo["cpus"]
    for i, (op, reply) in enumerate(zip(ops, replies)):
        if op["execute"] == "device_add" and "return" in reply[-1]:
            created += 1
            if created > topo["maxcpus"]:
                return i
    return len(ops)


# -- the test ---------------------------------------------------------------------------------

@pytest.mark.parametrize("release", LIVE_RELEASES)
def test_random_sequences_match_real_qemu(release, capsys):
    launchers = {arch: qemu_versions.require(release, arch) for arch in ("x86_64", "ppc64")}
    stats = {"sequences": 0, "commands": 0, "qemu_crashed": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sequences(release))
    def check(case):
        machine, args, topo, ops = case
        ours = run_cpuhot(args, ops, release)
        n = len(ops) if isinstance(ours, Refused) else _safe_prefix(machine, topo, ops, ours)
        theirs = run_qemu(args, launchers[ARCHES[machine]], ops[:n])
        if isinstance(ours, Refused) or isinstance(theirs, Refused):
            assert ours == theirs, f"QEMU {release}: {' '.join(args)}\n  cpuhot {ours!r}\n  QEMU   {theirs!r}"
            stats["refused"] += 1
            return
        if theirs is None:
            stats["qemu_crashed"] += 1
            return
        stats["sequences"] += 1
        stats["commands"] += n
        pairs = list(zip(ops[:n], ours[:n], theirs[:n]))
        if n == len(ops):                   # what came after the last reply (the final settle)
            pairs.append((AFTER_LAST, ours[-1], theirs[-1]))
        for op, a, b in pairs:
            if op["execute"] == "qom-list":        # QEMU lists children in hash order
                a, b = [_sorted_listing(m) for m in a], [_sorted_listing(m) for m in b]
            assert same(normalize(a, VOLATILE, VOLATILE_TEXT), normalize(b, VOLATILE, VOLATILE_TEXT)), \
                f"QEMU {release}: {' '.join(args)}\n  command {json.dumps(op)}\n  cpuhot {json.dumps(a)}\n  QEMU   {json.dumps(b)}"

    check()
    with capsys.disabled():
        print(f"\n[live differential] {stats['sequences']} random sequences ({stats['commands']} commands) "
              f"matched real QEMU {release}, {stats['refused']} start-up refusals matched; "
              f"{stats['qemu_crashed']} inconclusive (QEMU itself died)")
    assert stats["sequences"] + stats["refused"] >= min(EXAMPLES, 200) * 0.9
    assert stats["sequences"] >= min(EXAMPLES, 200) * 0.7


# -- s390x (issue 12): the same comparison on s390-ccw-virtio ---------------------------------------

S390X_BINARY = "qemu-system-s390x"
S390X_EXAMPLES = int(os.environ.get("CPUHOT_LIVE_S390X_EXAMPLES", "40"))
S390X_STATS = {"sequences": 0, "commands": 0}


@st.composite
def s390x_sequences(draw):
    """-smp cpus,maxcpus (sockets x cores), then device_add of core-ids (free, taken, out of range,
    malformed, other models), device_del (always refused on s390x) and the queries."""
    sockets, cores = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    maxcpus = sockets * cores
    cpus = draw(st.integers(1, maxcpus))
    args = ["-machine", "s390-ccw-virtio", "-smp", f"{cpus},maxcpus={maxcpus},sockets={sockets},cores={cores}"]
    ops, ids = [], []
    for n in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(["add", "add", "add", "bad-add", "del", "query", "query-fast", "hmp"]))
        if kind == "add":
            a = {"driver": "qemu-s390x-cpu", "core-id": draw(st.integers(0, maxcpus - 1))}
            ident = draw(st.sampled_from([None, f"cpu{n}", *(ids[-1:] if ids else [])]))
            if ident:
                a["id"] = ident
                ids.append(ident)
            ops.append({"execute": "device_add", "arguments": a})
        elif kind == "bad-add":
            a = {"driver": "qemu-s390x-cpu", "core-id": draw(st.integers(0, maxcpus - 1))}
            broken = draw(st.sampled_from(["big", "negative", "missing", "string", "float", "driver", "abstract",
                                           "model", "prop"]))
            if broken == "big":
                a["core-id"] = maxcpus + draw(st.integers(0, 300))
            elif broken == "negative":
                a["core-id"] = -1
            elif broken == "missing":
                a.pop("core-id")
            elif broken == "string":
                a["core-id"] = "x"
            elif broken == "float":
                a["core-id"] = 0.5
            elif broken == "driver":
                a["driver"] = "nosuch-cpu"
            elif broken == "abstract":
                a["driver"] = "s390x-cpu"
            elif broken == "model":
                a["driver"] = draw(st.sampled_from(["z14-s390x-cpu", "max-s390x-cpu", "z900-s390x-cpu"]))
            else:
                a[draw(st.sampled_from(["socket-id", "thread-id", "node-id"]))] = 0
            ops.append({"execute": "device_add", "arguments": a})
        elif kind == "del":
            target = draw(st.sampled_from([*ids, "nosuch", "/machine/unattached/device[0]",
                                           "/machine/peripheral-anon/device[0]"]))
            ops.append({"execute": "device_del", "arguments": {"id": target}})
        elif kind == "query":
            ops.append({"execute": "query-hotpluggable-cpus"})
        elif kind == "hmp":
            ops.append({"execute": "human-monitor-command",
                        "arguments": {"command-line": draw(st.sampled_from(["info hotpluggable-cpus"]))}})
        else:
            ops.append({"execute": "query-cpus-fast"})
    ops += [{"execute": "query-hotpluggable-cpus"}, {"execute": "query-cpus-fast"}]
    return args, ops


def test_random_s390x_sequences_match_real_qemu(capsys):
    launcher = qemu_versions.require("7.2", "s390x")

    @settings(max_examples=S390X_EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(s390x_sequences())
    def check(case):
        args, ops = case
        ours = run_cpuhot(args, ops)
        theirs = run_qemu(args, launcher, ops)
        assert theirs is not None and not isinstance(theirs, Refused), f"qemu-system-s390x: {theirs!r}"
        S390X_STATS["sequences"] += 1
        S390X_STATS["commands"] += len(ops)
        for op, a, b in zip([*ops, AFTER_LAST], ours, theirs):
            assert same(normalize(a, VOLATILE, VOLATILE_TEXT), normalize(b, VOLATILE, VOLATILE_TEXT)), \
                f"{' '.join(args)}\n  command {json.dumps(op)}\n  cpuhot {json.dumps(a)}\n  QEMU   {json.dumps(b)}"

    check()
    with capsys.disabled():
        print(f"\n[live differential, s390x] {S390X_STATS['sequences']} random sequences "
              f"({S390X_STATS['commands']} commands) matched real QEMU 7.2")
    assert S390X_STATS["sequences"] >= S390X_EXAMPLES * 0.9


# -- two-process migration (issue 14): source -> target, both real QEMU vs both cpuhot ----------------

MIG_EXAMPLES = int(os.environ.get("CPUHOT_LIVE_MIGRATION_EXAMPLES", "8"))
#: what a migration adds to VOLATILE: query-migrate's durations and rates (FORMAT.md); every other
#: ram statistic is compared
MIG_VOLATILE = VOLATILE | {"total-time", "downtime", "setup-time", "expected-downtime", "mbps", "pages-per-second"}
#: how long both sides are watched after the last command (the recorder's FINAL_SETTLE)
SETTLE = 0.5
#: the quiet period after the migration's last events (the recorder's QUIET)
QUIET = 0.3
#: the QEMU run again when its RAM took a second pass (timing: MIGRATION_PASS 3), which cpuhot does not model
MIG_RETRIES = 2


class Wire:
    """A QMP connection that keeps everything received, in order (events, replies, an EOF)."""

    def __init__(self, path: str, log: list, timeout: float = 15.0):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.log = log
        self.read()                                   # the greeting

    def read(self, timeout: float | None = None) -> dict | None:
        """The next message (logged), None at EOF (logged once) or when ``timeout`` passes."""
        while b"\n" not in self.buf:
            if self.eof:
                return None
            self.sock.settimeout(timeout if timeout is not None else 15.0)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if timeout is not None:
                    return None
                raise
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                self.log.append("<EOF>")
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        self.log.append(msg)
        return msg

    def call(self, cmd: str, args: dict | None = None) -> dict | None:
        msg: dict = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        self.log.append({"sent": msg})
        try:
            self.sock.sendall(json.dumps(msg).encode())
        except OSError:
            return None
        while (m := self.read()) is not None:
            if "return" in m or "error" in m:
                return m
        return None

    def until(self, pred, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while (m := self.read(max(0.01, deadline - time.monotonic()))) is not None:
            if pred(m):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met")

    def close(self) -> None:
        self.sock.close()


def settle_all(wires: list[Wire], seconds: float) -> None:
    """Read every connection until ``seconds`` pass without input on any (late events, EOFs)."""
    import select
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = [w for w in wires if not w.eof]
        for w in live:
            while b"\n" in w.buf:
                w.read()
        if not live:
            return
        ready, _, _ = select.select([w.sock for w in live], [], [], seconds)
        if not ready:
            return
        for w in live:
            if w.sock in ready:
                w.read(0.01)


def _mig_done(m: dict) -> bool:
    return m.get("event") == "MIGRATION" and m.get("data", {}).get("status") in ("completed", "failed")


def migration_script(src: Wire, dst: Wire, case: dict) -> None:
    """What both pairs run: libvirt's order (the target started with the -device list, events on,
    the source plugs, checks, migrates), then everything both sides answer afterwards."""
    caps = [{"capability": "events", "state": True}]
    if case["return_path"]:
        caps.append({"capability": "return-path", "state": True})
    for w in (src, dst):
        w.call("qmp_capabilities")
        w.call("migrate-set-capabilities", {"capabilities": caps})
    for plug in case["plugs"]:
        src.call("device_add", plug)
    src.call("query-hotpluggable-cpus")
    src.call("query-migrate")
    dst.call("query-status")
    dst.call("query-migrate")
    dst.call("query-hotpluggable-cpus")
    src.call("migrate", {"uri": case["uri"]})
    src.until(_mig_done)
    dst.until(_mig_done)
    # QEMU's source leaves finish-migrate for postmigrate in its clean-up after the last MIGRATION
    # event (a bottom half): quiet first, as the recorder's scenarios are before their queries
    settle_all([src, dst], QUIET)
    src.call("query-migrate")
    src.call("query-status")
    if dst.call("query-status") is not None:
        dst.call("query-migrate")
        dst.call("query-hotpluggable-cpus")
        dst.call("query-cpus-fast")
    settle_all([src, dst], SETTLE)


def _one_pass(theirs: list, ours: list) -> bool:
    """QEMU's RAM went in one section, as cpuhot's does: no MIGRATION_PASS 3, and its RAM bytes
    are not cpuhot's plus whole 8-byte end markers (an extra iteration of its migration thread)."""
    if any(isinstance(m, dict) and m.get("event") == "MIGRATION_PASS" and m["data"].get("pass", 0) > 2
           for m in theirs):
        return False

    def sent(log):
        return [m["return"]["ram"].get("downtime-bytes", m["return"]["ram"]["transferred"]) for m in log
                if isinstance(m, dict) and isinstance(m.get("return"), dict) and "ram" in m["return"]]
    return not any(b > a and (b - a) % 8 == 0 for a, b in zip(sent(ours), sent(theirs)))


def run_qemu_pair(case: dict, launcher: list[str]) -> tuple[list, list]:
    tmp = tempfile.mkdtemp(prefix="cpuhot-livemig-")
    procs = []
    try:
        uri = f"unix:{tmp}/mig.sock"
        socks = {}
        for name, args in (("dst", [*case["dst"], "-incoming", uri]), ("src", case["src"])):
            socks[name] = os.path.join(tmp, f"{name}.sock")
            procs.append(subprocess.Popen([*launcher, *PREFIX, *args, "-qmp", f"unix:{socks[name]},server=on,wait=off"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        logs: dict[str, list] = {"src": [], "dst": []}
        wires = {n: _connect(socks[n], logs[n]) for n in ("src", "dst")}
        try:
            migration_script(wires["src"], wires["dst"], {**case, "uri": uri})
        finally:
            for w in wires.values():
                w.close()
        return _untmp(logs["src"], tmp), _untmp(logs["dst"], tmp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _untmp(log: list, tmp: str) -> list:
    return json.loads(json.dumps(log).replace(tmp, "{tmp}"))


def _connect(path: str, log: list) -> Wire:
    deadline = time.monotonic() + 20
    while True:
        try:
            return Wire(path, log)
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            log.clear()
            time.sleep(0.01)


def run_cpuhot_pair(case: dict, release: str) -> tuple[list, list]:
    tmp = tempfile.mkdtemp(prefix="cpuhot-livemig-")
    uri = f"unix:{tmp}/mig.sock"
    compat = ["--compat", f"qemu-{release}"]
    dst_cm = launch_argv([*PREFIX, *case["dst"], "-incoming", uri, *compat])
    src_cm = launch_argv([*PREFIX, *case["src"], *compat])
    try:
        dst, src = dst_cm.__enter__(), src_cm.__enter__()
        logs: dict[str, list] = {"src": [], "dst": []}
        wires = {"src": Wire(src.qmp_path, logs["src"]), "dst": Wire(dst.qmp_path, logs["dst"])}
        try:
            migration_script(wires["src"], wires["dst"], {**case, "uri": uri})
        finally:
            for w in wires.values():
                w.close()
        return _untmp(logs["src"], tmp), _untmp(logs["dst"], tmp)
    finally:
        src_cm.__exit__(None, None, None)
        dst_cm.__exit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)


@st.composite
def migration_cases(draw, release: str):
    """A pc or q35 VM (1 socket of 4 cores, or 2 of 2), CPUs hot-plugged out of order on the source,
    the target started with a -device list: the same CPUs (in another order, as libvirt lists them),
    one missing (the load fails), one extra, or one in another slot."""
    machine = draw(st.sampled_from(["pc", "q35"]))
    sockets = draw(st.sampled_from([1, 2]))
    cores = 4 // sockets
    boot = draw(st.integers(1, 2))
    smp = f"{boot},sockets={sockets},cores={cores},threads=1,maxcpus=4"
    args = ["-machine", machine, "-smp", smp]
    driver = default_driver(machine, release)
    free = [(s, c) for s in range(sockets) for c in range(cores)][boot:]
    chosen = draw(st.lists(st.sampled_from(free), min_size=1, max_size=len(free), unique=True))
    plugs = [{"driver": driver, "socket-id": s, "core-id": c, "thread-id": 0, "id": f"vcpu{s}{c}"} for s, c in chosen]
    kind = draw(st.sampled_from(["matching", "matching", "missing", "extra", "other-slot"]))
    listed = sorted(plugs, key=lambda p: (p["socket-id"], p["core-id"]))
    unused = [p for p in free if p not in chosen]
    if kind == "missing":
        listed = listed[:-1]
    elif kind == "extra" and unused:
        s, c = unused[0]
        listed = listed + [{"driver": driver, "socket-id": s, "core-id": c, "thread-id": 0, "id": "extra"}]
    elif kind == "other-slot" and unused:
        s, c = unused[0]
        listed = listed[:-1] + [{**listed[-1], "socket-id": s, "core-id": c}]
    devices = [a for p in listed for a in ("-device", ",".join(f"{k}={v}" for k, v in p.items()))]
    return {"src": args, "dst": args + devices, "plugs": plugs, "kind": kind,
            "return_path": kind in ("missing", "other-slot") or draw(st.booleans())}


def _explicit_case(kind: str) -> dict:
    """The failure cases every run covers: the target lacks the last CPU plugged (slot 1), or has
    it in another slot; pc, 1 socket of 4 cores, slots 3 then 1 plugged on the source."""
    args = ["-machine", "pc", "-smp", "1,sockets=1,cores=4,threads=1,maxcpus=4"]
    plugs = [{"driver": "qemu64-x86_64-cpu", "socket-id": 0, "core-id": c, "thread-id": 0, "id": f"vcpu0{c}"}
             for c in (3, 1)]
    listed = [plugs[0]] if kind == "missing" else [plugs[0], {**plugs[1], "core-id": 2}]
    devices = [a for p in listed for a in ("-device", ",".join(f"{k}={v}" for k, v in p.items()))]
    return {"src": args, "dst": args + devices, "plugs": plugs, "kind": kind, "return_path": True}


@pytest.mark.parametrize("release", LIVE_RELEASES)
def test_migration_sequences_match_real_qemu(release, capsys):
    launcher = qemu_versions.require(release, "x86_64")
    stats = {"migrations": 0, "messages": 0, "failed": 0, "retried": 0}

    @settings(max_examples=MIG_EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(migration_cases(release))
    @example(_explicit_case("missing"))
    @example(_explicit_case("other-slot"))
    def check(case):
        ours = run_cpuhot_pair(case, release)
        for _ in range(MIG_RETRIES + 1):
            theirs = run_qemu_pair(case, launcher)
            if _one_pass(theirs[0], ours[0]):
                break
            stats["retried"] += 1
        for side, a, b in zip(("source", "target"), ours, theirs):
            na, nb = normalize(a, MIG_VOLATILE, VOLATILE_TEXT), normalize(b, MIG_VOLATILE, VOLATILE_TEXT)
            for i in range(max(len(na), len(nb))):
                x = na[i] if i < len(na) else None
                y = nb[i] if i < len(nb) else None
                assert same(x, y), (f"QEMU {release} migration ({case['kind']}), {side} message {i}:\n"
                                    f"  source {' '.join(case['src'])}\n  target {' '.join(case['dst'])}\n"
                                    f"  plugs {case['plugs']}\n  cpuhot {json.dumps(x)}\n  QEMU   {json.dumps(y)}\n"
                                    f"  (QEMU's {side} so far: {json.dumps(nb[max(0, i - 3):i])})")
            stats["messages"] += len(nb)
        stats["migrations"] += 1
        stats["failed"] += any(isinstance(m, dict) and m.get("data", {}).get("status") == "failed" for m in theirs[1])

    t0 = time.monotonic()
    check()
    with capsys.disabled():
        print(f"\n[live differential, migration] {stats['migrations']} source->target migrations "
              f"({stats['failed']} failing on the target, {stats['messages']} messages) matched real QEMU {release} "
              f"in {time.monotonic() - t0:.1f}s; {stats['retried']} QEMU runs repeated (a second RAM pass)")
    assert stats["migrations"] >= MIG_EXAMPLES * 0.9
    assert stats["failed"] >= 2, "the failure cases (a target missing a CPU) were not compared"
