"""x-cpuhot-topology and `python -m cpuhot show` (terminal, colour rules, SVG, --watch, real QEMU)."""

from __future__ import annotations

import os
import pty
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from cpuhot.show import render_svg, render_text, tree_from_queries

from .helpers import Server, require_qemu

Q35 = dict(machine="q35", smp="3,maxcpus=16,sockets=2,dies=2,cores=2,threads=2", guest="unresponsive")


def show(address, *args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "cpuhot", "show", address, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def slots(tree):
    return [s for so in tree["sockets"] for d in so["dies"] for c in d["cores"] for s in c["slots"]]


@pytest.mark.cpuhot(**Q35)
def test_topology_tree_follows_plug_and_unplug(cpuhot_vm):
    with cpuhot_vm.client() as q:
        tree = q.execute("x-cpuhot-topology")
        assert tree["topology"] == {"sockets": 2, "dies": 2, "clusters": 1, "cores": 2, "threads": 2, "cpus": 3,
                                    "max-cpus": 16}
        assert tree["granularity"] == "thread" and tree["counts"] == {"present": 3, "empty": 13, "pending-unplug": 0}
        assert [so["socket-id"] for so in tree["sockets"]] == [0, 1]
        assert [[d["die-id"] for d in so["dies"]] for so in tree["sockets"]] == [[0, 1], [0, 1]]
        first = tree["sockets"][0]["dies"][0]["cores"][0]["slots"][0]
        assert first == {"slot": 0, "state": "present", "type": "qemu64-x86_64-cpu", "vcpus-count": 1, "arch-id": 0,
                         "props": {"core-id": 0, "thread-id": 0, "die-id": 0, "socket-id": 0},
                         "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "cpu-indexes": [0],
                         "hotplugged": False}
        entry = next(e for e in q.execute("query-hotpluggable-cpus") if e["props"] == {
            "core-id": 1, "thread-id": 0, "die-id": 1, "socket-id": 1})
        q.execute("device_add", {"driver": entry["type"], "id": "vcpu14", **entry["props"]})
        s14 = tree_slot = next(s for s in slots(q.execute("x-cpuhot-topology")) if s["slot"] == 14)
        assert (s14["state"], s14["id"], s14["cpu-index"], s14["arch-id"], s14["hotplugged"]) == \
            ("present", "vcpu14", 14, 14, True)
        q.execute("device_del", {"id": "vcpu14"})          # the guest never ejects: pending
        tree = q.execute("x-cpuhot-topology")
        tree_slot = tree["sockets"][1]["dies"][1]["cores"][1]["slots"][0]
        assert tree_slot["state"] == "pending-unplug" and tree["counts"]["pending-unplug"] == 1


@pytest.mark.cpuhot(machine="pseries", smp="4,maxcpus=16,threads=4")
def test_topology_tree_spapr_cores(cpuhot_vm):
    with cpuhot_vm.client() as q:
        tree = q.execute("x-cpuhot-topology")
    assert tree["granularity"] == "core"
    core0 = tree["sockets"][0]["dies"][0]["cores"][0]["slots"][0]
    assert core0["cpu-indexes"] == [0, 1, 2, 3] and core0["vcpus-count"] == 4
    assert core0["props"] == {"core-id": 0, "node-id": 0} and core0["node-id"] == 0     # pseries: NUMA always on
    assert [s["state"] for s in slots(tree)] == ["present", "empty", "empty", "empty"]


@pytest.mark.parametrize("cpuhot_vm", [Q35, dict(machine="pseries", smp="2,maxcpus=8,threads=2")], indirect=True,
                         ids=["q35", "pseries"])
def test_the_standard_queries_give_the_same_picture(cpuhot_vm):
    """What show draws for a QEMU without x-cpuhot-topology matches cpuhot's own tree."""
    with cpuhot_vm.client() as q:
        entries = q.execute("query-hotpluggable-cpus")
        q.execute("device_add", {"driver": entries[0]["type"], "id": "last", **entries[0]["props"]})
        tree = q.execute("x-cpuhot-topology")
        fallback = tree_from_queries(q.execute("query-hotpluggable-cpus"), q.execute("query-cpus-fast"))

    def project(t):
        return [(s["state"], s["props"], s.get("cpu-indexes"), s.get("id"), s.get("qom-path")) for s in slots(t)]
    assert project(fallback) == project(tree)
    assert [[len(d["cores"]) for d in so["dies"]] for so in fallback["sockets"]] == \
        [[len(d["cores"]) for d in so["dies"]] for so in tree["sockets"]]


@pytest.mark.cpuhot(**Q35)
def test_show_draws_text_and_svg(cpuhot_vm, tmp_path):
    with cpuhot_vm.client() as q:
        entry = next(e for e in q.execute("query-hotpluggable-cpus") if e["props"]["socket-id"] == 0
                     and e["props"]["die-id"] == 0 and "qom-path" not in e)
        q.execute("device_add", {"driver": entry["type"], "id": "vcpu3", **entry["props"]})
    svg = tmp_path / "vm.svg"
    r = show(cpuhot_vm.qmp_address, "--svg", str(svg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pc-q35-7.2 · x86_64 · 2 socket(s) × 2 die(s) × 2 core(s) × 2 thread(s)")
    assert "\x1b[" not in r.stdout                       # not a terminal: no colour
    assert lines[2] == "socket 0 / die 0"
    assert lines[3].split() == ["core", "0", "■", "cpu", "0", "■", "cpu", "1"]
    assert lines[4].split() == ["core", "1", "■", "cpu", "2", "■", "cpu", "3", "vcpu3"]
    assert lines[6].split() == ["core", "0", "□", "apic", "4", "□", "apic", "5"]
    assert len(lines) == 2 + 4 * 3
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "vcpu3" in texts and "cpu 3" in texts and "socket 1 / die 1" in texts and "apic 15" in texts
    fills = [r.get("fill") for r in root.iter(f"{ns}rect")]
    assert fills.count("#2e7d32") == 4 + 1 and fills.count("#f5f5f5") == 12 + 1     # slots + legend


def _run_in_pty(argv, env) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            r, _, _ = select.select([master], [], [], 20)
            chunk = os.read(master, 65536) if r else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    os.close(master)
    proc.wait(10)
    proc.stderr.close()
    return out.decode()


@pytest.mark.cpuhot(machine="pc", smp="1,maxcpus=2")
def test_colour_only_on_a_terminal_without_no_color(cpuhot_vm):
    argv = [sys.executable, "-m", "cpuhot", "show", cpuhot_vm.qmp_address]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert "\x1b[32m■ cpu 0" in _run_in_pty(argv, env)
    assert "\x1b[" not in _run_in_pty(argv, {**env, "NO_COLOR": "1"})
    assert "\x1b[2m□ apic 1" in show(cpuhot_vm.qmp_address, "--color", "always").stdout


@pytest.mark.cpuhot(machine="pc", smp="1,maxcpus=4", guest="cooperative:0.05")
def test_watch_redraws_as_cpus_come_and_go_and_stops_on_ctrl_c(cpuhot_vm):
    proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "show", cpuhot_vm.qmp_address, "--watch",
                             "--interval", "0.1", "--duration", "60"], stdout=subprocess.PIPE, text=True)
    seen = []
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def read_until(text, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return True
        return False
    try:
        assert read_until("core 0  ■ cpu 0")
        with cpuhot_vm.client() as q:
            e = q.execute("query-hotpluggable-cpus")[0]
            q.execute("device_add", {"driver": e["type"], "id": "vcpu3", **e["props"]})
            assert read_until("■ cpu 3 vcpu3")
            q.execute("device_del", {"id": "vcpu3"})     # DEVICE_DELETED a moment later: redrawn empty
            assert read_until("□ apic 3")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert sum(line.startswith("--- ") for line in seen) == 2     # exactly two changes, two redraws


def test_watch_is_bounded(cpuhot_factory):
    vm = cpuhot_factory(smp="1,maxcpus=2")
    t0 = time.monotonic()
    r = show(vm.qmp_address, "--watch", "--duration", "0.5", "--interval", "0.1")
    assert r.returncode == 0 and time.monotonic() - t0 < 10
    assert r.stdout.count("core 0") == 1               # nothing changed: drawn once


def test_show_draws_a_real_qemu():
    qemu = require_qemu()
    srv = Server(qemu, ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "q35",
                        "-smp", "2,maxcpus=4,sockets=2,cores=2"])
    try:
        srv.client().close()
        r = show(f"unix:{srv.path}")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "x86_64 · 2 vCPU(s), 2/4 slots used"
    assert lines[2:] == ["socket 0", "  core 0  ■ cpu 0", "  core 1  ■ cpu 1", "socket 1", "  core 0  □ thread 0",
                         "  core 1  □ thread 0"]


def test_render_functions_handle_an_empty_machine():
    tree = {"machine": "none", "arch": "x86_64", "topology": {}, "granularity": "thread", "vcpus": 0,
            "counts": {"present": 0, "empty": 0, "pending-unplug": 0}, "sockets": []}
    assert "(no CPU slots)" in render_text(tree)
    ET.fromstring(render_svg(tree).split("\n", 1)[1])
