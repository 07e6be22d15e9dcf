"""The pytest plugin (pytest11 entry point): fixtures, markers, parametrisation, command-line options."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest


def test_registered_as_a_pytest11_entry_point():
    eps = [ep for ep in entry_points(group="pytest11") if ep.name == "cpuhot"]
    assert [ep.value for ep in eps] == ["cpuhot.pytest_plugin"]


def test_default_vm(cpuhot_vm):
    with cpuhot_vm.client() as q:
        assert q.execute("query-status")["status"] == "running"
        assert q.execute("query-machines")          # a default pc
    assert cpuhot_vm.vm.machine.name == "pc-i440fx-7.2"


@pytest.mark.cpuhot(machine="q35", smp="2,maxcpus=8", guest="unresponsive", compat="qemu-7.2")
def test_marker_configures_the_vm(cpuhot_vm):
    assert cpuhot_vm.vm.machine.name == "pc-q35-7.2" and len(cpuhot_vm.vm.slots) == 8
    assert str(cpuhot_vm.vm.guest.mode) == "unresponsive"
    assert cpuhot_vm.monitor.profile.name == "qemu-7.2"


@pytest.mark.parametrize("cpuhot_vm", ["pseries", {"machine": "q35", "smp": "1,maxcpus=2"}], indirect=True)
def test_parametrised_vm(cpuhot_vm):
    assert cpuhot_vm.vm.machine.family in ("pseries", "q35")
    assert len(cpuhot_vm.vm.slots) == (1 if cpuhot_vm.vm.machine.family == "pseries" else 2)


def test_factory_starts_several_and_stops_them(cpuhot_factory):
    a = cpuhot_factory(machine="pc", smp="1,maxcpus=2")
    b = cpuhot_factory(machine="pseries", smp="1,maxcpus=2", subprocess=True)
    assert a.qmp_path != b.qmp_path and b.process.poll() is None
    with a.client() as qa, b.client() as qb:
        assert qa.execute("query-target")["arch"] == "x86_64" and qb.execute("query-target")["arch"] == "ppc64"
    cpuhot_factory.stop_all()
    assert b.process.poll() is not None and not a.running


def test_the_model_of_a_subprocess_vm_is_a_clear_error(cpuhot_factory):
    vm = cpuhot_factory(machine="pc", smp="1,maxcpus=2", subprocess=True)
    with pytest.raises(RuntimeError, match="runs in a subprocess .* talk to it over QMP"):
        vm.vm


EXAMPLE_TEST = textwrap.dedent("""
    import pytest

    def test_guest_mode_from_the_command_line(cpuhot_vm):
        with cpuhot_vm.client() as q:
            assert q.execute("x-cpuhot-guest-mode")["mode"] == "{guest}"
        assert (cpuhot_vm.process is not None) == {subprocess}

    @pytest.mark.cpuhot(guest="refuse")
    def test_marker_beats_the_command_line(cpuhot_vm):
        with cpuhot_vm.client() as q:
            assert q.execute("x-cpuhot-guest-mode")["mode"] == "refuse"
""")


@pytest.mark.parametrize("extra, guest, subprocess_", [([], "auto", False),
                                                       (["--cpuhot-guest", "cooperative:0.5", "--cpuhot-subprocess"],
                                                        "cooperative:0.5", True)])
def test_command_line_options(tmp_path, extra, guest, subprocess_):
    (tmp_path / "test_x.py").write_text(EXAMPLE_TEST.replace("{guest}", guest).replace("{subprocess}",
                                                                                         str(subprocess_)))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), *extra],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
