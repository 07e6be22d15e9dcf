"""The guest model: unplug flows per mode, on a virtual clock (no sleeping)."""


from cpuhot.machine.clock import VirtualClock
from cpuhot.machine.config import LaunchOptions, build_machine

from .helpers import error_of

CPU = "qemu64-x86_64-cpu"
CORE = "power9_v2.0-spapr-cpu-core"


def vm_with(guest, **kw):
    kw.setdefault("smp", "2,maxcpus=8")
    return build_machine(LaunchOptions(guest=guest, clock="virtual", **kw)).vm


def events(vm):
    return [(e.name, e.data) for e in vm.drain_events()]


def plug_x86(vm, ident, core):
    vm.device_add({"driver": CPU, "id": ident, "socket-id": 0, "core-id": core, "thread-id": 0})


def test_x86_cooperative_unplug_sequence():
    vm = vm_with("cooperative:0.5")
    plug_x86(vm, "vcpu2", 2)
    vm.clock_step(0.1)                    # the guest onlines the new vCPU
    assert vm.vcpus[-1].online
    assert vm.device_del("vcpu2") is None
    assert events(vm) == [] and len(vm.query_cpus_fast()) == 3        # still there until the guest acts
    vm.clock_step(0.49)
    assert events(vm) == []
    vm.clock_step(0.02)
    assert events(vm) == [
        ("ACPI_DEVICE_OST", {"info": {"device": "vcpu2", "source": 3, "status": 132, "slot": "2",
                                      "slot-type": "CPU"}}),
        ("DEVICE_DELETED", {"path": "/machine/peripheral/vcpu2/lapic"}),
        ("DEVICE_DELETED", {"device": "vcpu2", "path": "/machine/peripheral/vcpu2"}),
        ("ACPI_DEVICE_OST", {"info": {"source": 259, "status": 0, "slot": "2", "slot-type": "CPU"}}),
    ]
    assert len(vm.query_cpus_fast()) == 2
    plug_x86(vm, "vcpu2b", 2)             # the slot can be re-plugged, same cpu-index
    assert vm.query_cpus_fast()[-1]["cpu-index"] == 2


def test_x86_unresponsive_keeps_the_cpu_and_accepts_repeats():
    vm = vm_with("unresponsive")
    plug_x86(vm, "vcpu2", 2)
    assert vm.device_del("vcpu2") is None and vm.device_del("vcpu2") is None
    vm.clock_step(60)
    assert events(vm) == [] and len(vm.query_cpus_fast()) == 3


def test_x86_refuse_reports_a_failure_status():
    vm = vm_with("refuse")
    plug_x86(vm, "vcpu2", 2)
    vm.device_del("vcpu2")
    vm.clock_step(1)
    names = events(vm)
    assert names[-1] == ("ACPI_DEVICE_OST", {"info": {"device": "vcpu2", "source": 3, "status": 130, "slot": "2",
                                                      "slot-type": "CPU"}})
    assert len(vm.query_cpus_fast()) == 3


def test_x86_none_is_qemu_without_a_guest():
    vm = vm_with("none")
    plug_x86(vm, "vcpu2", 2)
    assert error_of(vm.device_del, "vcpu2") == (
        "GenericError", f"acpi: device unplug request for not supported device type: {CPU}")


def test_auto_guest_boots_when_the_vm_runs():
    vm = vm_with("auto", start_paused=True)
    plug_x86(vm, "vcpu2", 2)
    assert error_of(vm.device_del, "vcpu2")[1].startswith("acpi:")
    vm.cont()
    assert vm.device_del("vcpu2") is None
    vm.clock_step(1)
    assert ("DEVICE_DELETED", {"device": "vcpu2", "path": "/machine/peripheral/vcpu2"}) in events(vm)


def test_paused_guest_does_nothing_until_resumed():
    vm = vm_with("cooperative")
    plug_x86(vm, "vcpu2", 2)
    vm.device_del("vcpu2")
    vm.stop()
    events(vm)
    vm.clock_step(10)
    assert events(vm) == []
    vm.cont()
    vm.clock_step(0.01)
    assert any(name == "DEVICE_DELETED" for name, _ in events(vm))


def test_pseries_smt8_cooperative_unplug():
    vm = vm_with("cooperative", arch="ppc64", machine="pseries", smp="8,maxcpus=32,threads=8")
    vm.device_add({"driver": CORE, "id": "core8", "core-id": 8})
    vm.clock_step(0.1)
    vm.device_del("core8")
    vm.clock_step(0.1)
    got = events(vm)
    assert got[-1] == ("DEVICE_DELETED", {"device": "core8", "path": "/machine/peripheral/core8"})
    assert [d["path"] for _, d in got[-9:-1]] == [f"/machine/peripheral/core8/thread[{i}]" for i in range(8)]
    assert len(vm.query_cpus_fast()) == 8


def test_pseries_refuse_sends_guest_error():
    vm = vm_with("refuse", arch="ppc64", machine="pseries")
    vm.device_add({"driver": CORE, "id": "c3", "core-id": 3})
    vm.clock_step(0.1)
    vm.device_del("c3")
    vm.clock_step(0.1)
    assert events(vm) == [("DEVICE_UNPLUG_GUEST_ERROR", {"device": "c3", "path": "/machine/peripheral/c3"})]
    assert len(vm.query_cpus_fast()) == 3


def test_pseries_core_not_yet_configured_by_the_guest_goes_at_once():
    vm = vm_with("cooperative:5", arch="ppc64", machine="pseries")
    vm.guest.set_onlining("delayed:0.005")       # udev (the default) would configure it at once
    vm.device_add({"driver": CORE, "id": "c3", "core-id": 3})
    vm.device_del("c3")                    # before the guest onlined it
    assert [n for n, _ in events(vm)] == ["DEVICE_DELETED"] * 4


def test_flaky_is_reproducible_with_a_seed():
    def run(seed):
        vm = build_machine(LaunchOptions(guest="flaky:0.5", seed=seed, clock="virtual", smp="1,maxcpus=8")).vm
        outcome = []
        for core in range(1, 8):
            plug_x86(vm, f"c{core}", core)
            vm.clock_step(0.1)
            vm.device_del(f"c{core}")
            vm.clock_step(0.1)
            outcome.append(any(n == "DEVICE_DELETED" for n, _ in events(vm)))
        return outcome
    assert run(7) == run(7)
    assert any(run(7)) and not all(run(7))


def test_virtual_clock_stamps_events():
    vm = vm_with("cooperative")
    vm.stop()
    [ev] = vm.drain_events()
    assert ev.timestamp == VirtualClock.EPOCH


def test_powerdown_with_a_guest_shuts_it_down():
    vm = vm_with("cooperative")
    vm.no_shutdown = True
    events(vm)
    vm.system_powerdown()
    assert events(vm) == [("POWERDOWN", None)]
    vm.clock_step(1)
    assert events(vm) == [("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}), ("STOP", None)]
    assert vm.query_status()["status"] == "shutdown"
    vm2 = vm_with("cooperative")
    vm2.system_powerdown()
    vm2.clock_step(1)
    assert vm2.exit_requested


def test_powerdown_without_a_guest_only_reports_the_button():
    vm = vm_with("none")
    vm.system_powerdown()
    vm.clock_step(5)
    assert [n for n, _ in events(vm)] == ["POWERDOWN"]


def test_device_del_twice_from_two_requests_ejects_once():
    vm = vm_with("cooperative")
    plug_x86(vm, "vcpu2", 2)
    vm.clock_step(0.1)
    vm.device_del("vcpu2")
    vm.device_del("vcpu2")                 # a second client asks again: accepted, as QEMU accepts it
    vm.clock_step(1)
    got = events(vm)
    assert [d for n, d in got if n == "DEVICE_DELETED"] == [
        {"path": "/machine/peripheral/vcpu2/lapic"}, {"device": "vcpu2", "path": "/machine/peripheral/vcpu2"}]
    assert error_of(vm.device_del, "vcpu2") == ("DeviceNotFound", "Device 'vcpu2' not found")


def test_device_del_of_a_cpu_still_being_onlined():
    vm = vm_with("cooperative:0.5")
    vm.guest.set_onlining("delayed:0.005")  # udev (the default) would online it at once
    plug_x86(vm, "vcpu2", 2)
    assert not vm.vcpus[-1].online         # the guest has not onlined it yet
    vm.device_del("vcpu2")                 # x86: the request goes to the guest all the same
    vm.clock_step(1)
    assert len(vm.query_cpus_fast()) == 2


def test_device_del_of_a_cpu_add_ed_cpu_by_path():
    vm = vm_with("cooperative")
    vm.cpu_add(3)
    path = vm.query_cpus_fast()[-1]["qom-path"]
    assert path.startswith("/machine/unattached/device[")
    assert error_of(vm.device_del, "vcpu3") == ("DeviceNotFound", "Device 'vcpu3' not found")   # no id
    vm.clock_step(0.1)
    vm.device_del(path)
    vm.clock_step(1)
    assert ("DEVICE_DELETED", {"path": path}) in events(vm)       # no "device" key: it has no id
    assert len(vm.query_cpus_fast()) == 2


def test_device_del_of_non_cpu_paths_with_a_guest():
    vm = vm_with("cooperative")
    assert error_of(vm.device_del, "/machine/peripheral") == (
        "GenericError", "/machine/peripheral is not a hotpluggable device")
    assert error_of(vm.device_del, "/machine/unattached/device[1]") == (
        "GenericError", "Bus 'main-system-bus' does not support hotplugging")
    assert error_of(vm.device_del, "") == ("GenericError", " is not a hotpluggable device")


def test_unplug_requested_while_paused_completes_after_cont():
    vm = vm_with("cooperative")
    plug_x86(vm, "vcpu2", 2)
    vm.clock_step(0.1)
    vm.stop()
    vm.device_del("vcpu2")                 # accepted while paused
    vm.clock_step(5)
    assert len(vm.query_cpus_fast()) == 3  # a paused guest cannot eject
    vm.cont()
    vm.clock_step(0.1)
    assert len(vm.query_cpus_fast()) == 2


def test_pseries_pending_unplug_completes_on_reset():
    vm = vm_with("unresponsive", arch="ppc64", machine="pseries")
    vm.device_add({"driver": CORE, "id": "c3", "core-id": 3})
    vm.clock_step(0.1)
    vm.device_del("c3")
    vm.clock_step(30)
    assert len(vm.query_cpus_fast()) == 3
    vm.system_reset()                      # spapr_drc_reset releases a DRC with a pending unplug
    assert len(vm.query_cpus_fast()) == 2
    assert ("DEVICE_DELETED", {"device": "c3", "path": "/machine/peripheral/c3"}) in events(vm)
