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
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

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

pytestmark = pytest.mark.qemu


class Raw:
    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        json.loads(self.file.readline())
        self.call({"execute": "qmp_capabilities"})

    def call(self, msg: dict) -> list[dict]:
        """Send; return everything up to and including the reply (events first)."""
        self.sock.sendall(json.dumps(msg).encode())
        out = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError
            m = json.loads(line)
            out.append(m)
            if "return" in m or "error" in m:
                return out

    def close(self):
        self.file.close()
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
            return [client.call(op) for op in ops]
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
            return [client.call(op) for op in ops]
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
        for op, a, b in zip(ops[:n], ours[:n], theirs):
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
        for op, a, b in zip(ops, ours, theirs):
            assert same(normalize(a, VOLATILE, VOLATILE_TEXT), normalize(b, VOLATILE, VOLATILE_TEXT)), \
                f"{' '.join(args)}\n  command {json.dumps(op)}\n  cpuhot {json.dumps(a)}\n  QEMU   {json.dumps(b)}"

    check()
    with capsys.disabled():
        print(f"\n[live differential, s390x] {S390X_STATS['sequences']} random sequences "
              f"({S390X_STATS['commands']} commands) matched real QEMU 7.2")
    assert S390X_STATS["sequences"] >= S390X_EXAMPLES * 0.9
