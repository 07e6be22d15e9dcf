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
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from cpuhot.launch import launch_argv

from .replay import normalize

EXAMPLES = int(os.environ.get("CPUHOT_LIVE_EXAMPLES", "200"))
#: CI replays the same pseudo-random sequences every run; set CPUHOT_LIVE_RANDOM=1 to explore new ones
RANDOM = os.environ.get("CPUHOT_LIVE_RANDOM") == "1"
BINARIES = {"pc": "qemu-system-x86_64", "q35": "qemu-system-x86_64", "pseries": "qemu-system-ppc64"}
PREFIX = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg"]
VOLATILE = {"timestamp", "thread-id", "package"}
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


def run_qemu(machine_args: list[str], binary: str, ops: list[dict]) -> list[list[dict]] | None:
    tmp = tempfile.mkdtemp(prefix="cpuhot-live-")
    path = os.path.join(tmp, "q.sock")
    proc = subprocess.Popen([binary, *PREFIX, *machine_args, "-qmp", f"unix:{path},server=on,wait=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        client = None
        while client is None:
            if proc.poll() is not None:
                raise AssertionError(f"QEMU refused {machine_args}")
            try:
                client = Raw(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        try:
            return [client.call(op) for op in ops]
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return None           # QEMU itself died (a known QEMU defect); inconclusive
        finally:
            client.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run_cpuhot(machine_args: list[str], ops: list[dict]) -> list[list[dict]]:
    with launch_argv([*PREFIX, *machine_args, "--compat", "qemu-7.2"]) as vm:
        client = Raw(vm.qmp_path)
        try:
            return [client.call(op) for op in ops]
        finally:
            client.close()


# -- strategies -------------------------------------------------------------------------------

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
    return machine, ["-machine", machine, "-smp", smp], dict(sockets=sockets, dies=dies, cores=cores,
                                                               threads=threads, maxcpus=maxcpus, cpus=cpus)


def slot_props(machine, topo, draw):
    if machine == "pseries":
        return {"core-id": draw(st.integers(0, topo["maxcpus"] - 1))}
    props = {"socket-id": draw(st.integers(0, topo["sockets"] - 1)),
             "core-id": draw(st.integers(0, topo["cores"] - 1)),
             "thread-id": draw(st.integers(0, topo["threads"] - 1))}
    if topo["dies"] > 1:
        props["die-id"] = draw(st.integers(0, topo["dies"] - 1))
    return props


@st.composite
def sequences(draw):
    machine, args, topo = draw(machines())
    driver = "power9_v2.0-spapr-cpu-core" if machine == "pseries" else "qemu64-x86_64-cpu"
    ops = []
    ids = []
    for n in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(["add", "add", "add", "bad-add", "del", "query", "query-fast"]))
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

def _qemu_missing() -> str | None:
    missing = [b for b in set(BINARIES.values()) if shutil.which(b) is None]
    return ", ".join(missing) if missing else None


@pytest.mark.skipif(_qemu_missing() is not None,
                    reason=f"!!! LIVE DIFFERENTIAL TEST SKIPPED: QEMU not installed ({_qemu_missing()}); "
                           "apt-get install -y --no-install-recommends qemu-system-x86 qemu-system-ppc !!!")
def test_random_sequences_match_real_qemu(capsys):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sequences())
    def check(case):
        machine, args, topo, ops = case
        ours = run_cpuhot(args, ops)
        n = _safe_prefix(machine, topo, ops, ours)
        theirs = run_qemu(args, BINARIES[machine], ops[:n])
        if theirs is None:
            STATS["qemu_crashed"] += 1
            return
        STATS["sequences"] += 1
        STATS["commands"] += n
        for op, a, b in zip(ops[:n], ours[:n], theirs):
            assert normalize(a, VOLATILE, []) == normalize(b, VOLATILE, []), \
                f"{' '.join(args)}\n  command {json.dumps(op)}\n  cpuhot {json.dumps(a)}\n  QEMU   {json.dumps(b)}"

    check()
    with capsys.disabled():
        print(f"\n[live differential] {STATS['sequences']} random sequences ({STATS['commands']} commands) "
              f"matched real QEMU 7.2; {STATS['qemu_crashed']} inconclusive (QEMU itself died)")
    assert STATS["sequences"] >= min(EXAMPLES, 200) * 0.9
