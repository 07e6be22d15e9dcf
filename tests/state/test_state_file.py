"""--state FILE: every acknowledged change survives kill -9 (state written atomically before the reply)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from tests.integration.qmpsync import SyncQMP

CORE = "power9_v2.0-spapr-cpu-core"


def start(tmp, state, *args):
    sock = os.path.join(tmp, f"s-{time.monotonic_ns()}.sock")
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", "--state", state, *args,
                             "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == f"unix:{sock}", proc.stderr.read()
    return proc, SyncQMP(sock)


def stop(proc) -> None:
    """End a server started by :func:`start` (if still running) and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdout, proc.stderr):
        if not f.closed:
            f.close()


def view(q):
    fast = [{k: v for k, v in c.items() if k != "thread-id"} for c in q.cmd("query-cpus-fast")]
    return q.cmd("query-hotpluggable-cpus"), fast, q.cmd("query-status")["status"]


def test_kill_dash_nine_loses_nothing(tmp_path):
    rng = random.Random(1234)
    state = str(tmp_path / "vm.state")
    args = ("-S", "-machine", "pseries", "-smp", "2,maxcpus=12", "-accel", "tcg")
    proc, q = start(str(tmp_path), state, *args)
    try:
        for round_ in range(12):
            free = [e for e in q.cmd("query-hotpluggable-cpus") if "qom-path" not in e]
            plugged = [e for e in q.cmd("query-hotpluggable-cpus") if e.get("qom-path", "").startswith("/machine/peri")]
            if plugged and (not free or rng.random() < 0.4):
                q.cmd("device_del", {"id": rng.choice(plugged)["qom-path"]})
            else:
                e = rng.choice(free)
                args_ = {"driver": CORE, **e["props"]}
                if rng.random() < 0.5:
                    args_["id"] = f"c{round_}"
                q.cmd("device_add", args_)
            expected = view(q)
            q.close()
            os.kill(proc.pid, signal.SIGKILL)        # no chance to clean up
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            assert not [f for f in os.listdir(tmp_path) if f.startswith(".cpuhot-state-")], "a torn temp file was left"
            proc, q = start(str(tmp_path), state, *args)
            assert view(q) == expected, f"round {round_}: state lost"
        # the restored VM keeps numbering as if it had never stopped
        q.cmd("device_add", {"driver": CORE,
                             **[e for e in q.cmd("query-hotpluggable-cpus") if "qom-path" not in e][0]["props"]})
        paths = [e["qom-path"] for e in q.cmd("query-hotpluggable-cpus") if "qom-path" in e]
        assert len(paths) == len(set(paths))
        assert json.load(open(state))["format"] == "cpuhot-state"
    finally:
        stop(proc)


def test_a_corrupt_state_file_is_refused_clearly(tmp_path):
    state = tmp_path / "bad.state"
    state.write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "cpuhot", "serve", "--state", str(state), "-qmp",
                        f"unix:{tmp_path}/x.sock"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--state" in r.stderr


def test_a_balloon_target_survives_a_restart(tmp_path):
    """balloon's target is kept with the device (it used to be an int among string properties,
    and the state file it wrote was refused on reload as "bad props")."""
    state = str(tmp_path / "vm.state")
    args = ("-machine", "pc", "-m", "512", "-accel", "tcg")
    proc, q = start(str(tmp_path), state, *args)
    try:
        q.cmd("device_add", {"driver": "virtio-balloon-pci", "id": "balloon0"})
        q.cmd("balloon", {"value": 256 * 1024 * 1024})
        before = q.cmd("query-balloon")
        assert before == {"actual": 256 * 1024 * 1024}
        q.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        proc, q = start(str(tmp_path), state, *args)
        assert q.cmd("query-balloon") == before
        q.cmd("balloon", {"value": 1 << 40})                 # more than the RAM: capped at -m
        assert q.cmd("query-balloon") == {"actual": 512 * 1024 * 1024}
    finally:
        stop(proc)
