"""pseries cores: device_add / device_del against the model."""

import pytest

from .helpers import error_of, make_vm

CORE = "power9_v2.0-spapr-cpu-core"


@pytest.fixture
def vm():
    return make_vm(arch="ppc64", machine="pseries", smp="2,maxcpus=8", accel="tcg")


def add(vm, **props):
    return error_of(vm.device_add, {"driver": CORE, **props})


@pytest.mark.parametrize("props, expected", [
    ({}, "core 0 already populated"),
    ({"core-id": 1}, "core 1 already populated"),
    ({"core-id": 8}, "core id 8 out of range"),
    ({"core-id": 2147483647}, "core id 2147483647 out of range"),
    ({"core-id": -1}, "Invalid core id -1"),
    ({"core-id": 4294967296}, "core 0 already populated"),
    ({"core-id": 3, "nr-threads": 2}, "invalid nr-threads 2, must be 1"),
    ({"core-id": 3, "socket-id": 0}, f"Property '{CORE}.socket-id' not found"),
    ({"core-id": "x"}, "Parameter 'core-id' expects integer"),
    ({"core-id": 3, "node-id": 1}, "invalid node-id, must be 0"),
])
def test_core_errors(vm, props, expected):
    assert add(vm, **props) == ("GenericError", expected)


def test_driver_errors(vm):
    assert error_of(vm.device_add, {"driver": "power8_v2.0-spapr-cpu-core", "core-id": 3}) == (
        "GenericError", f"CPU core type should be {CORE}")
    assert error_of(vm.device_add, {"driver": "power9_v2.0-powerpc64-cpu"}) == (
        "GenericError", "Parameter 'driver' expects a pluggable device type")
    assert error_of(vm.device_add, {"driver": "spapr-cpu-core"}) == (
        "GenericError", "Parameter 'driver' expects a non-abstract device type")
    assert error_of(vm.device_add, {"driver": "qemu64-x86_64-cpu"}) == (
        "GenericError", "'qemu64-x86_64-cpu' is not a valid device model name")


def test_hotplugged_core_is_removed_at_once_with_its_events(vm):
    assert add(vm, id="hp5", **{"core-id": 5}) is None
    fast = vm.query_cpus_fast()[-1]
    assert fast["qom-path"] == "/machine/peripheral/hp5/thread[0]" and fast["cpu-index"] == 5
    assert vm.device_del("hp5") is None
    events = [(e.name, e.data) for e in vm.drain_events()]
    assert events == [
        ("DEVICE_DELETED", {"path": "/machine/peripheral/hp5/thread[0]/icp"}),
        ("DEVICE_DELETED", {"path": "/machine/peripheral/hp5/thread[0]/xive-tctx"}),
        ("DEVICE_DELETED", {"path": "/machine/peripheral/hp5/thread[0]"}),
        ("DEVICE_DELETED", {"device": "hp5", "path": "/machine/peripheral/hp5"}),
    ]
    assert len(vm.query_cpus_fast()) == 2
    assert add(vm, id="hp5b", **{"core-id": 5}) is None          # the slot is free again


def test_boot_cores(vm):
    assert error_of(vm.device_del, "/machine/unattached/device[1]") == (
        "GenericError", "Boot CPU core may not be unplugged")
    assert vm.device_del("/machine/unattached/device[2]") is None      # pending forever without a guest
    assert vm.device_del("/machine/unattached/device[2]") is None
    assert len(vm.query_cpus_fast()) == 2 and vm.drain_events() == []
    assert vm.device_del("/machine/unattached/device[0]") is None       # spapr-xive: accepted, ignored


def test_smt_cores_under_kvm():
    vm = make_vm(arch="ppc64", machine="pseries", smp="8,maxcpus=32,threads=8", accel="kvm")
    entries = vm.query_hotpluggable_cpus()
    assert [e["props"]["core-id"] for e in entries] == [24, 16, 8, 0]
    assert {e["vcpus-count"] for e in entries} == {8}
    assert add(vm, id="core16", **{"core-id": 16}) is None
    fast = vm.query_cpus_fast()[8:]
    assert [c["cpu-index"] for c in fast] == list(range(16, 24))
    assert fast[3]["qom-path"] == "/machine/peripheral/core16/thread[3]"
    assert add(vm, **{"core-id": 12}) == ("GenericError", "invalid core id 12")


def test_power8_paths_have_no_xive():
    vm = make_vm(arch="ppc64", machine="pseries", smp="2,maxcpus=4", cpu="POWER8", accel="tcg")
    assert [c["qom-path"] for c in vm.query_cpus_fast()] == [
        "/machine/unattached/device[0]/thread[0]", "/machine/unattached/device[1]/thread[0]"]
    assert vm.query_hotpluggable_cpus()[0]["type"] == "power8_v2.0-spapr-cpu-core"
