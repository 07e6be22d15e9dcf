"""docs/REFERENCE.md stays complete: every registered option, profile, guest mode and x-cpuhot-*
command with its arguments, every HMP command cpuhot serves, and the virtual clock's epoch.

The lists come from the registries on purpose (a new option or command must be documented); the
HMP list and the epoch's date are written here."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from cpuhot.argv_options import CPUHOT_OPTIONS, QEMU_INFO_OPTIONS, QEMU_OPTIONS
from cpuhot.machine.clock import VirtualClock
from cpuhot.machine.guest import MODES
from cpuhot.profiles import PROFILES
from cpuhot.qmp.commands import COMMANDS

REFERENCE = (Path(__file__).resolve().parent.parent / "docs/REFERENCE.md").read_text()

HMP = ["info hotpluggable-cpus", "info cpus", "info numa", "info status", "info version", "info kvm",
       "info name", "info uuid", "stop", "cont", "help", "device_add", "device_del", "cpu-add"]


@pytest.mark.parametrize("name", sorted(QEMU_OPTIONS) + sorted(QEMU_INFO_OPTIONS))
def test_every_qemu_option(name):
    assert f"`-{name}" in REFERENCE


@pytest.mark.parametrize("name", sorted(CPUHOT_OPTIONS))
def test_every_cpuhot_option(name):
    assert f"`--{name}" in REFERENCE


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile(name):
    assert f"| `{name}` |" in REFERENCE


@pytest.mark.parametrize("mode", MODES)
def test_every_guest_mode(mode):
    assert f"| `{mode}" in REFERENCE


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS.commands if n.startswith("x-cpuhot-")))
def test_every_cpuhot_command_and_its_arguments(name):
    row = next((line for line in REFERENCE.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, name
    for arg in COMMANDS.commands[name].args or ():
        assert f"`{arg.name}`" in row, (name, arg.name)


@pytest.mark.parametrize("command", HMP)
def test_every_hmp_command(command):
    assert f"`{command}" in REFERENCE


def test_the_virtual_clock_epoch():
    assert VirtualClock.EPOCH == 1_700_000_000.0
    when = datetime.datetime.fromtimestamp(VirtualClock.EPOCH, datetime.timezone.utc)
    assert "**1700000000.0**" in REFERENCE and when.strftime("%Y-%m-%dT%H:%M:%SZ") in REFERENCE

