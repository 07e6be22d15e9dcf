"""QEMU 9.0+'s local APIC id check (``apic_common_set_id``): APIC IDs >= 255 need x2apic.

Facts recorded from QEMU 10.0 (transcripts/qemu-10.0/smp-*x2apic*, x86-q35-x2apic-*): q35 -smp 256
aborts with qemu64, kvm64 and ``Haswell,x2apic=off`` and with ``qemu64,-x2apic,+x2apic``; it starts
with ``qemu64,+x2apic``, ``qemu64,x2apic=on`` and ``max``.  QEMU 7.2 has no such check.
"""

import pytest

from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.machine.errors import AbortError, ConfigError
from cpuhot.machine.x86 import cpu_has_x2apic

from .helpers import error_of, make_vm

CPU = "qemu64-x86_64-cpu"


@pytest.mark.parametrize("cpu, model_has_it, expected", [
    ("qemu64", False, False), ("qemu64,+x2apic", False, True), ("qemu64,x2apic=on", False, True),
    ("qemu64,-x2apic,+x2apic", False, False), ("qemu64,+x2apic,-x2apic", False, False),
    ("Haswell", True, True), ("Haswell,x2apic=off", True, False), ("Haswell,x2apic=off,x2apic=on", True, True),
    ("qemu64,x2apic=off,+x2apic", False, True),
])
def test_feature_precedence(cpu, model_has_it, expected):
    assert cpu_has_x2apic(cpu, model_has_it, "tcg") is expected


def test_kvm_turns_x2apic_on_unless_minus():
    assert cpu_has_x2apic("qemu64", False, "kvm") is True
    assert cpu_has_x2apic("qemu64,-x2apic", False, "kvm") is False


def boot(cpu=None, smp="256", machine="q35", release="10.0"):
    return build_machine(LaunchOptions(machine=machine, smp=smp, cpu=cpu, accel="tcg", release=release,
                                       start_paused=True), clock=lambda: 1.0)


@pytest.mark.parametrize("cpu", [None, "kvm64", "qemu64,-x2apic,+x2apic", "Haswell,x2apic=off"])
def test_boot_cpu_without_x2apic_aborts_on_10_0(cpu):
    with pytest.raises(AbortError) as e:
        boot(cpu)
    assert e.value.exit_code == -6
    assert e.value.render("qemu-system-x86_64").endswith(
        "Unexpected error in apic_common_set_id() at hw/intc/apic_common.c:447:\n"
        "qemu-system-x86_64: APIC ID 255 requires x2APIC feature in CPU\nTry x2apic=on in -cpu.\n")


@pytest.mark.parametrize("cpu", ["qemu64,+x2apic", "qemu64,x2apic=on", "max", "Haswell"])
def test_boot_cpu_with_x2apic_starts_on_10_0(cpu):
    assert len(boot(cpu).vm.vcpus) == 256


def test_the_first_refused_boot_apic_id_is_named():
    """pc -smp 195,sockets=65,cores=3: APIC IDs skip 255 (2 core bits), the first refused is 256."""
    with pytest.raises(AbortError, match="APIC ID 256 requires"):
        boot(smp="195,sockets=65,cores=3", machine="pc")


def test_7_2_refuses_as_before():
    with pytest.raises(ConfigError) as e:
        boot(release="7.2")
    assert not isinstance(e.value, AbortError) and e.value.exit_code == 1


def test_hotplug_is_refused_where_qemu_10_0_aborts():
    vm = make_vm(machine="q35", smp="1,maxcpus=288", accel="tcg", release="10.0")
    add = {"driver": CPU, "socket-id": 0, "thread-id": 0}
    assert error_of(vm.device_add, {**add, "core-id": 254}) is None
    assert error_of(vm.device_add, {**add, "core-id": 255}) == (
        "GenericError", "APIC ID 255 requires x2APIC feature in CPU")
    # the device's own x2apic flag gives the CPU the feature
    assert error_of(vm.device_add, {**add, "core-id": 255, "x2apic": True}) is None
    vm = make_vm(machine="q35", smp="1,maxcpus=288", accel="tcg", release="10.0", cpu="qemu64,+x2apic")
    assert error_of(vm.device_add, {**add, "core-id": 287}) is None
