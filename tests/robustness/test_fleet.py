"""``python -m cpuhot fleet``: N independent VMs in one process, one socket each."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from cpuhot.fleet import parse_args

from .helpers import Client, check_consistency


#: fleets started by the running test; whatever still runs when it ends (a failed assertion) is
#: ended by its PID, so that a failure leaves no fleet serving behind it
_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _end_fleets():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def fleet(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "fleet", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _STARTED.append(proc)
    return proc


def finish(proc: subprocess.Popen, sig=None, timeout: float = 10) -> tuple[int, str, str]:
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="cpuhot-fleet-") as d:
        yield d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_fleet_serves_independent_vms_and_cleans_up(tmp, sig):
    d = os.path.join(tmp, "fleet")
    proc = fleet("--count", "5", "-smp", "1,maxcpus=4", "--guest", "cooperative", "--dir", d)
    paths = [proc.stdout.readline().strip() for _ in range(5)]
    assert paths == [f"unix:{d}/vm-{k:04d}.qmp" for k in range(1, 6)]
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for p in paths:
        assert stat.S_IMODE(os.lstat(p[5:]).st_mode) == 0o600
    clients = [Client(p[5:]) for p in paths]
    for k, c in enumerate(clients, 1):
        assert c.ok("query-name") == {"name": f"vm-{k:04d}"}
    free = [e for e in clients[0].ok("query-hotpluggable-cpus") if "qom-path" not in e]
    clients[0].ok("device_add", driver=free[0]["type"], id="only-here", **free[0]["props"])
    assert "/machine/peripheral/only-here" in check_consistency(clients[0].ok)["present"]
    for c in clients[1:]:                  # one VM's plug is nobody else's
        assert check_consistency(c.ok)["cpus"] == 1
    # quit stops one VM, and only that one
    clients[2].call({"execute": "quit"})
    assert clients[2].at_eof()
    deadline = time.monotonic() + 5
    while os.path.exists(paths[2][5:]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(paths[2][5:])
    assert clients[3].ok("query-status")["running"] is True
    for c in clients:
        c.close()
    code, _, err = finish(proc, sig)
    assert code == 0, err
    assert not os.path.exists(d) or os.listdir(d) == [], "every socket is removed"


def test_fleet_summary_and_existing_directory(tmp):
    proc = fleet("--count", "3", "--first", "7", "-machine", "pseries", "-smp", "1,maxcpus=8", "--dir", tmp,
                 "--summary")
    line = proc.stdout.readline().strip()
    assert line.startswith(f"serving 3 VMs: unix:{tmp}/vm-0007.qmp ... unix:{tmp}/vm-0009.qmp"), line
    c = Client(f"{tmp}/vm-0008.qmp")
    assert len(c.ok("query-hotpluggable-cpus")) == 8
    c.close()
    assert finish(proc, signal.SIGTERM)[0] == 0
    assert os.path.isdir(tmp) and os.listdir(tmp) == []      # a directory it did not create stays


def test_fleet_last_quit_ends_the_process(tmp):
    proc = fleet("--count", "2", "--dir", tmp, "--summary")
    proc.stdout.readline()
    for k in (1, 2):
        c = Client(f"{tmp}/vm-{k:04d}.qmp")
        c.call({"execute": "quit"})
        c.close()
    assert finish(proc)[0] == 0


@pytest.mark.parametrize("args, message", [
    (["--count", "0"], "--count: '0' is not a number from 1 to 100000"),
    (["--count", "2", "-qmp", "unix:/tmp/x.sock"], "-qmp: not available in a fleet"),
    (["--count", "2", "--state", "/tmp/s.json"], "--state: not available in a fleet"),
    (["--count", "2", "-smp", "4,maxcpus=2"], "maxcpus must be equal to or greater than smp"),
    (["--count"], "--count requires an argument"),
])
def test_fleet_refusals(tmp, args, message):
    code, out, err = finish(fleet("--dir", os.path.join(tmp, "d"), *args))
    assert code == 1 and message in err, err
    assert not os.path.exists(os.path.join(tmp, "d"))


def test_fleet_of_a_start_up_qemu_aborts_on_dies_of_sigabrt(tmp):
    """QEMU 10.0 aborts on q35 -smp 256 with qemu64 under TCG (no x2apic): so does the fleet."""
    code, out, err = finish(fleet("--dir", os.path.join(tmp, "d"), "--count", "2", "-accel", "tcg", "-machine", "q35",
                                  "-smp", "256", "--compat", "qemu-10.0"))
    assert code == -signal.SIGABRT and "APIC ID 255 requires x2APIC feature in CPU\n" in err, err
    assert "Traceback" not in err and not os.path.exists(os.path.join(tmp, "d"))


def test_fleet_socket_in_use_is_not_stolen(tmp):
    first = fleet("--count", "2", "--dir", tmp, "--summary")
    first.stdout.readline()
    code, _, err = finish(fleet("--count", "3", "--dir", tmp))
    assert code == 1 and f"{tmp}/vm-0001.qmp: {tmp}/vm-0001.qmp is in use by a running server" in err, err
    c = Client(f"{tmp}/vm-0002.qmp")
    assert c.ok("query-status")["running"] is True
    c.close()
    assert finish(first, signal.SIGTERM)[0] == 0


def test_parse_args():
    assert parse_args(["--count=3", "-smp", "2", "--dir", "/x", "--summary", "-S"]) == (
        3, "/x", True, 1, ["-smp", "2", "-S"])


def test_fleet_of_s390x_vms(tmp):
    """s390x in fleet mode: each VM plugs whole cores by core-id and refuses unplug as QEMU 7.2 does
    (recorded: transcripts/qemu-7.2/s390x-*.json)."""
    d = os.path.join(tmp, "fleet")
    proc = fleet("--count", "3", "-machine", "s390-ccw-virtio", "-smp", "1,maxcpus=4", "--dir", d)
    try:
        paths = [proc.stdout.readline().strip() for _ in range(3)]
        assert paths == [f"unix:{d}/vm-{k:04d}.qmp" for k in range(1, 4)]
        clients = [Client(p[5:]) for p in paths]
        slots = clients[0].ok("query-hotpluggable-cpus")
        assert [e["props"] for e in slots] == [{"core-id": n} for n in (3, 2, 1, 0)]
        assert {e["type"] for e in slots} == {"qemu-s390x-cpu"}
        clients[0].ok("device_add", driver="qemu-s390x-cpu", id="c2", **{"core-id": 2})
        cpus = clients[0].ok("query-cpus-fast")
        assert [(c["cpu-index"], c["props"], c["qom-path"]) for c in cpus] == \
            [(0, {"core-id": 0}, "/machine/unattached/device[0]"), (2, {"core-id": 2}, "/machine/peripheral/c2")]
        reply = clients[0].call({"execute": "device_del", "arguments": {"id": "c2"}})
        assert reply["error"] == {"class": "GenericError", "desc": "CPU hot unplug not supported on this machine"}
        for c in clients[1:]:                  # one VM's plug is nobody else's
            assert len(c.ok("query-cpus-fast")) == 1
        for c in clients:
            c.close()
    finally:
        rc, out, err = finish(proc, signal.SIGTERM)
    assert rc == 0, err
