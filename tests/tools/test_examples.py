"""examples/*.py, run as a user runs them: as subprocesses, against a cpuhot the test starts
(--qmp) and on their own (then they start a cpuhot themselves)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name, *args):
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=60, cwd=EXAMPLES.parent)


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.cpuhot(machine="q35", smp="2,maxcpus=8,sockets=2,cores=2,threads=2", guest="cooperative")
def test_libvirt_setvcpus(cpuhot_vm):
    r = run("libvirt_setvcpus.py", "--qmp", cpuhot_vm.qmp_address, "--vcpus", "6", "--vcpus", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    adds = [line.split()[2] for line in out if line.startswith("device_add")]
    dels = [line.split()[1] for line in out if line.startswith("device_del")]
    assert adds == ["id=vcpu2", "id=vcpu3", "id=vcpu4", "id=vcpu5"]        # topology order
    assert dels == ["id=vcpu5", "id=vcpu4", "id=vcpu3"]                     # the last plugged first
    assert out[-1] == "3 vCPUs online"
    with cpuhot_vm.client() as q:
        fast = q.execute("query-cpus-fast")
    assert len(fast) == 3 and fast[-1]["qom-path"] == "/machine/peripheral/vcpu2"


@pytest.mark.cpuhot(machine="pseries", smp="2,maxcpus=8,threads=2", guest="cooperative")
def test_libvirt_setvcpus_spapr_cores(cpuhot_vm):
    r = run("libvirt_setvcpus.py", "--qmp", cpuhot_vm.qmp_address, "--vcpus", "8", "--vcpus", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  vcpu2: vCPUs [2, 3] online" in r.stdout and "  DEVICE_DELETED vcpu6" in r.stdout
    r = run("libvirt_setvcpus.py", "--qmp", cpuhot_vm.qmp_address, "--vcpus", "5")
    assert r.returncode == 1 and "granularity" in r.stderr


@pytest.mark.cpuhot(machine="q35", smp="2,maxcpus=4", guest="unresponsive")
def test_libvirt_setvcpus_reports_an_unplug_timeout(cpuhot_vm):
    example = load_example("libvirt_setvcpus")
    example.UNPLUG_TIMEOUT = 0.2
    with cpuhot_vm.client() as q:
        assert example.set_vcpus(q, 3, log=lambda *_: None) == 3
        with pytest.raises(RuntimeError, match="Unplug result must be manually inspected"):
            example.set_vcpus(q, 2, log=lambda *_: None)


@pytest.mark.cpuhot(machine="pc", smp="1,maxcpus=4")
def test_libxl_plug_loop(cpuhot_vm):
    r = run("libxl_plug_loop.py", "--qmp", cpuhot_vm.qmp_address, "--vcpus", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [line.split()[2] for line in r.stdout.splitlines() if line.startswith("device_add")] == \
        ["id=cpu-1", "id=cpu-2"]
    assert r.stdout.splitlines()[-1] == "plugged [1, 2]; vCPUs online after: [0, 1, 2]"
    r = run("libxl_plug_loop.py", "--qmp", cpuhot_vm.qmp_address, "--legacy")      # the rest with cpu-add
    assert r.returncode == 0 and "cpu-add id=3" in r.stdout and "cpu-add id=1" not in r.stdout


@pytest.mark.cpuhot(machine="pc", smp="1,maxcpus=4", compat="qemu-7.2")
def test_libxl_plug_loop_stops_at_the_first_error(cpuhot_vm):
    r = run("libxl_plug_loop.py", "--qmp", cpuhot_vm.qmp_address, "--legacy")      # QEMU 7.2 has no cpu-add
    assert r.returncode == 1
    assert r.stderr == "libxl: error: CommandNotFound: The command cpu-add has not been found\n"


@pytest.mark.cpuhot(**load_example("numa_plug_into_node").DEMO)
def test_numa_plug_into_node(cpuhot_vm):
    r = run("numa_plug_into_node.py", "--qmp", cpuhot_vm.qmp_address, "--node", "1", "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "vCPUs by node after:  {0: [0, 1], 1: [4, 5, 6]}" in r.stdout
    assert "node 1 cpus: 4 5 6" in r.stdout
    with cpuhot_vm.client() as q:
        assert all(c["props"]["node-id"] == 1 for c in q.execute("query-cpus-fast") if c["cpu-index"] >= 4)
    r = run("numa_plug_into_node.py", "--qmp", cpuhot_vm.qmp_address, "--node", "1", "--count", "2")
    assert r.returncode == 1 and r.stderr == "error: node 1 has 1 free slot(s), 2 wanted\n"


@pytest.mark.parametrize("name", ["libvirt_setvcpus.py", "libxl_plug_loop.py", "numa_plug_into_node.py"])
def test_examples_run_on_their_own(name):
    r = run(name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "device_add" in r.stdout
