"""x86 device_add / device_del against the model (texts as QEMU 7.2 answers them)."""

import pytest

from .helpers import error_of, make_vm

CPU = "qemu64-x86_64-cpu"


def add(vm, **props):
    return error_of(vm.device_add, {"driver": CPU, **props})


@pytest.fixture
def vm():
    return make_vm(smp="1,maxcpus=12,sockets=2,cores=3,threads=2", accel="tcg")


def test_cpu_index_is_slot_index_whatever_the_order(vm):
    vm = make_vm(smp="1,maxcpus=8,sockets=2,cores=2,threads=2")
    for ident, s, c, t in (("a", 1, 1, 1), ("b", 1, 0, 0), ("c", 0, 1, 0), ("d", 0, 1, 1)):
        assert add(vm, id=ident, **{"socket-id": s, "core-id": c, "thread-id": t}) is None
    fast = vm.query_cpus_fast()
    assert [c["cpu-index"] for c in fast] == [0, 7, 4, 2, 3]
    assert [c["qom-path"] for c in fast][1:] == [f"/machine/peripheral/{x}" for x in "abcd"]


@pytest.mark.parametrize("props, expected", [
    ({}, "CPU socket-id is not set"),
    ({"socket-id": 0}, "CPU core-id is not set"),
    ({"socket-id": 0, "core-id": 0}, "CPU thread-id is not set"),
    ({"socket-id": 2, "core-id": 0, "thread-id": 0}, "Invalid CPU socket-id: 2 must be in range 0:1"),
    ({"socket-id": 0, "core-id": 3, "thread-id": 0}, "Invalid CPU core-id: 3 must be in range 0:2"),
    ({"socket-id": 0, "core-id": 0, "thread-id": 2}, "Invalid CPU thread-id: 2 must be in range 0:1"),
    ({"socket-id": 0, "die-id": 1, "core-id": 0, "thread-id": 0}, "Invalid CPU die-id: 1 must be in range 0:0"),
    ({"socket-id": 0, "core-id": 0, "thread-id": 0}, "CPU[0] with APIC ID 0 exists"),
    ({"apic-id": 6}, "Invalid CPU [socket: 0, die: 0, core: 3, thread: 0] with APIC ID 6, valid index range 0:11"),
    ({"apic-id": 13, "core-id": 1}, "property core-id: 1 doesn't match set apic-id: 0xd (core-id: 2)"),
    ({"apic-id": 4294967295}, "CPU socket-id is not set"),
    ({"apic-id": -1}, "Parameter 'apic-id' expects uint32_t"),
    ({"socket-id": 2 ** 31}, "Parameter 'socket-id' expects int32_t"),
    ({"core-id": 0.5}, "Parameter 'core-id' expects integer"),
    ({"core-id": True}, "Parameter 'core-id' expects integer"),
    ({"bogus-prop": 1}, f"Property '{CPU}.bogus-prop' not found"),
    ({"hotplugged": True}, f"Property '{CPU}.hotplugged' is not writable"),
    ({"socket-id": 0, "core-id": 1, "thread-id": 0, "node-id": 1}, "invalid node-id, must be 0"),
])
def test_device_add_errors(vm, props, expected):
    assert add(vm, **props) == ("GenericError", expected)


def test_apic_id_only_fills_ids(vm):
    assert add(vm, **{"apic-id": 5}) is None
    entry = [e for e in vm.query_hotpluggable_cpus() if "qom-path" in e and e["props"]["core-id"] == 2]
    assert entry[0]["props"] == {"core-id": 2, "thread-id": 1, "socket-id": 0}


def test_string_and_float_ids_are_accepted(vm):
    assert add(vm, **{"socket-id": "1", "core-id": 2.0, "thread-id": "0x1"}) is None


def test_list_and_null_values_count_as_unset(vm):
    assert add(vm, **{"socket-id": [1], "core-id": 0, "thread-id": 1}) == ("GenericError", "CPU socket-id is not set")


def test_generic_checks_come_first(vm):
    assert error_of(vm.device_add, {}) == ("GenericError", "Parameter 'driver' is missing")
    assert error_of(vm.device_add, {"id": "bad id!"}) == ("GenericError", "Parameter 'id' expects an identifier")
    assert error_of(vm.device_add, {"driver": "x86_64-cpu"}) == (
        "GenericError", "Parameter 'driver' expects a non-abstract device type")
    assert error_of(vm.device_add, {"driver": "qemu64"}) == ("GenericError", "'qemu64' is not a valid device model name")
    assert error_of(vm.device_add, {"driver": CPU, "bus": "pci.0"}) == (
        "GenericError", f"Device '{CPU}' can't go on PCI bus")
    assert error_of(vm.device_add, {"driver": "Haswell-x86_64-cpu"}) == (
        "GenericError", f"Invalid CPU type, expected cpu type: '{CPU}'")


def test_anonymous_numbering_counts_failures(vm):
    assert add(vm, **{"socket-id": 0, "core-id": 1, "thread-id": 0}) is None
    for _ in range(3):
        assert add(vm, **{"socket-id": 9, "core-id": 1, "thread-id": 0}) is not None
    assert error_of(vm.device_add, {"driver": "nosuch"}) is not None      # no number consumed
    assert add(vm, **{"socket-id": 0, "core-id": 2, "thread-id": 0}) is None
    paths = [c["qom-path"] for c in vm.query_cpus_fast()]
    assert paths[1:] == ["/machine/peripheral-anon/device[0]", "/machine/peripheral-anon/device[4]"]


def test_duplicate_ids_are_refused_and_consume_nothing(vm):
    assert add(vm, id="dup", **{"socket-id": 0, "core-id": 1, "thread-id": 0}) is None
    assert add(vm, id="dup", **{"socket-id": 0, "core-id": 2, "thread-id": 0}) == (
        "GenericError", "Duplicate device ID 'dup'")


def test_device_del_without_guest(vm):
    assert add(vm, id="c1", **{"socket-id": 0, "core-id": 1, "thread-id": 0}) is None
    assert error_of(vm.device_del, "c1") == (
        "GenericError", f"acpi: device unplug request for not supported device type: {CPU}")
    assert error_of(vm.device_del, "/machine/unattached/device[0]") == ("GenericError", "Boot CPU is unpluggable")
    assert error_of(vm.device_del, "nosuch") == ("DeviceNotFound", "Device 'nosuch' not found")
    assert error_of(vm.device_del, "/machine/unattached/device[1]") == (
        "GenericError", "Bus 'main-system-bus' does not support hotplugging")
    assert error_of(vm.device_del, "/machine/peripheral") == (
        "GenericError", "/machine/peripheral is not a hotpluggable device")
    assert len(vm.query_cpus_fast()) == 2 and vm.drain_events() == []


def test_cpu_child_paths_are_refused_not_crashed(vm):
    assert add(vm, id="c1", **{"socket-id": 0, "core-id": 1, "thread-id": 0}) is None
    cls, desc = error_of(vm.device_del, "c1/lapic")
    assert cls == "GenericError" and "cannot be unplugged on its own" in desc


def test_numa_props_and_node_check():
    vm = make_vm(smp="2,maxcpus=4,sockets=2,cores=2", memory="256M",
                 objects=["memory-backend-ram,id=m0,size=128M", "memory-backend-ram,id=m1,size=128M"],
                 numa=["node,nodeid=0,memdev=m0", "node,nodeid=1,memdev=m1"])
    nodes = {e["props"]["socket-id"]: e["props"]["node-id"] for e in vm.query_hotpluggable_cpus()}
    assert nodes == {0: 0, 1: 1}
    assert add(vm, **{"socket-id": 1, "core-id": 0, "thread-id": 0, "node-id": 0}) == (
        "GenericError", "invalid node-id, must be 1")
    assert add(vm, **{"socket-id": 1, "core-id": 0, "thread-id": 0, "node-id": 1}) is None


def test_several_bad_properties_are_reported_in_qemus_qdict_order(vm):
    # QEMU sets device_add's properties in QDict hash order: core-id, thread-id, ..., socket-id
    assert add(vm, **{"socket-id": "a", "core-id": "b", "thread-id": "c"}) == (
        "GenericError", "Parameter 'core-id' expects integer")
    assert add(vm, **{"socket-id": "a", "thread-id": "c"}) == ("GenericError", "Parameter 'thread-id' expects integer")
