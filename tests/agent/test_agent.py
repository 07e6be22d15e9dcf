"""The guest agent model: availability, onlining modes, guest OSes, and agreement with QMP.

Expectations come from the recorded qemu-ga replies (test_agent_replay.py) and qemu-ga's rules:
``guest-set-vcpus`` applies entries in order, returns how many it applied and errors only when
the first fails; vCPU 0 of a Linux guest cannot go offline.  The shutdown, reboot and Windows
behaviours are inferred from qemu-ga's sources (see cpuhot/machine/agent.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from cpuhot.machine.agent import AgentMode, GuestAgent
from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.qmp.framing import Parsed
from cpuhot.qmp.protocol import Monitor

CPU = "qemu64-x86_64-cpu"


def vm_with(paused=True, machine="pc", smp="2,maxcpus=8", mode="answering", os="linux", onlining=None, **kw):
    vm = build_machine(LaunchOptions(machine=machine, smp=smp, clock="virtual", start_paused=paused, **kw)).vm
    vm.agent = GuestAgent(vm, port_id="channel0", mode=mode, os=os)
    if onlining:
        vm.guest.set_onlining(onlining)
    if not paused:
        vm.agent.guest_booted()      # the VM runs from the start: the agent is up (as cli.setup_agent does)
        vm.drain_events()
    return vm


def qmp(vm):
    mon = Monitor(vm)
    s = mon.open_session()
    mon.handle(s, Parsed({"execute": "qmp_capabilities"}))

    def run(name, args=None):
        out = mon.handle(s, Parsed({"execute": name, **({"arguments": args} if args else {})}))
        reply = out[-1][1]
        if "error" in reply:
            raise AssertionError(reply["error"])
        return reply["return"]
    run.events = lambda: [m for _, m in mon.take_events()]
    return run


def ga(vm, name, args=None):
    msg = {"execute": name, **({"arguments": args} if args is not None else {})}
    return vm.agent.handle(msg).message


def events(vm, name="VSERPORT_CHANGE"):
    return [e.data for e in vm.drain_events() if e.name == name]


def test_port_opens_when_the_guest_boots_and_closes_when_it_shuts_down():
    vm = vm_with(paused=True)
    assert not vm.agent.open and not vm.agent.answering
    vm.cont()
    assert events(vm) == [{"id": "channel0", "open": True}]
    assert vm.agent.answering
    vm.stop()
    assert vm.agent.open and not vm.agent.answering           # a paused guest does not answer
    vm.cont()
    assert events(vm) == []                                   # no second boot, the port stays open
    assert ga(vm, "guest-shutdown") is None                   # success-response false: no reply
    vm.clock_step(1)
    got = [(e.name, e.data) for e in vm.drain_events()]
    assert got[0] == ("VSERPORT_CHANGE", {"id": "channel0", "open": False})
    assert ("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}) in got
    assert vm.runstate == "shutdown" and not vm.agent.answering


def test_guest_shutdown_reboot_and_bad_mode():
    vm = vm_with(paused=False)
    assert ga(vm, "guest-shutdown", {"mode": "sideways"})["error"]["class"] == "GenericError"
    assert ga(vm, "guest-shutdown", {"mode": "reboot"}) is None
    vm.clock_step(1)
    got = [(e.name, e.data) for e in vm.drain_events()]
    assert got == [("VSERPORT_CHANGE", {"id": "channel0", "open": False}),
                   ("RESET", {"guest": True, "reason": "guest-reset"}),
                   ("VSERPORT_CHANGE", {"id": "channel0", "open": True})]
    assert vm.runstate == "running"


def test_absent_agent_never_opens_and_never_answers():
    vm = vm_with(paused=True, mode="absent")
    vm.cont()
    assert events(vm) == [] and not vm.agent.answering
    vm.agent.set_mode("answering")                             # qemu-ga installed and started
    assert events(vm) == [{"id": "channel0", "open": True}]
    vm.agent.set_mode("never")
    assert vm.agent.open and not vm.agent.answering


def test_agent_modes_parse():
    assert AgentMode.parse("late:2.5") == AgentMode("late", 2.5)
    assert str(AgentMode.parse("late:3")) == "late:3"
    for bad in ("sometimes", "late:x", "never:1", "late:-1"):
        with pytest.raises(ValueError):
            AgentMode.parse(bad)


def test_late_agent_replies_after_its_delay():
    vm = vm_with(paused=False, mode="late:7")
    reply = vm.agent.handle({"execute": "guest-ping"})
    assert reply.delay == 7 and reply.message == {"return": {}}


@pytest.mark.parametrize("onlining,at_once,after_2s", [("udev", True, True), ("delayed:1.5", False, True),
                                                       ("offline", False, False)])
def test_onlining_modes(onlining, at_once, after_2s):
    vm = vm_with(paused=False, onlining=onlining)
    vm.device_add({"driver": CPU, "id": "vcpu2", "socket-id": 0, "core-id": 2, "thread-id": 0})
    def entry():
        return next(e for e in ga(vm, "guest-get-vcpus")["return"] if e["logical-id"] == 2)
    assert entry() == {"online": at_once, "can-offline": True, "logical-id": 2}
    vm.clock_step(2)
    assert entry()["online"] is after_2s
    assert ga(vm, "guest-set-vcpus", {"vcpus": [{"logical-id": 2, "online": True}]}) == {"return": 1}
    assert entry()["online"] is True


def test_set_vcpus_partial_success_rule():
    vm = vm_with(paused=False, smp="4,maxcpus=8")
    # the first applies, the unknown 7 stops the rest without an error (recorded from qemu-ga 7.2)
    assert ga(vm, "guest-set-vcpus", {"vcpus": [{"logical-id": 1, "online": False}, {"logical-id": 7, "online": False},
                                                {"logical-id": 3, "online": False}]}) == {"return": 1}
    assert [e["online"] for e in ga(vm, "guest-get-vcpus")["return"]] == [True, True, False, True]
    assert ga(vm, "guest-set-vcpus", {"vcpus": [{"logical-id": 0, "online": False}]}) == {
        "error": {"class": "GenericError", "desc": "logical processor #0 can't be offlined"}}


def test_windows_guest_reports_nothing_offlinable():
    vm = vm_with(paused=False, os="windows")
    assert all(not e["can-offline"] and e["online"] for e in ga(vm, "guest-get-vcpus")["return"])
    assert ga(vm, "guest-set-vcpus", {"vcpus": [{"logical-id": 1, "online": False}]})["error"]["desc"] == \
        "this feature or command is not currently supported"
    assert ga(vm, "guest-get-osinfo")["return"]["id"] == "mswindows"


def test_qmp_controls_and_reports_the_agent():
    vm = vm_with(paused=True)
    run = qmp(vm)
    assert run("query-chardev")[0]["frontend-open"] is False
    run("cont")
    assert {"event": "VSERPORT_CHANGE", "data": {"id": "channel0", "open": True}} in [
        {k: m[k] for k in ("event", "data")} for m in run.events()] or run("query-chardev")[0]["frontend-open"]
    assert run("query-chardev")[0] == {"frontend-open": True, "filename": vm.agent.chardev_filename,
                                        "label": "charchannel0"}
    info = run("x-cpuhot-guest-agent", {"mode": "never", "onlining": "offline", "os": "windows"})
    assert (info["mode"], info["onlining"], info["os"], info["answering"]) == ("never", "offline", "windows", False)
    for args in ({"mode": "bogus"}, {"onlining": "later"}, {"os": "beos"}):
        with pytest.raises(AssertionError):
            run("x-cpuhot-guest-agent", args)


def slot_args(vm, slot):
    return {"driver": slot.type, **slot.props}


@settings(max_examples=60, deadline=None)
@given(machine=st.sampled_from(["pc", "pseries"]),
       ops=st.lists(st.tuples(st.sampled_from(["plug", "unplug", "agent", "qmp-online", "step"]),
                              st.integers(0, 15), st.booleans()), max_size=25),
       onlining=st.sampled_from(["udev", "delayed:0.5", "offline"]))
def test_qmp_agent_and_guest_model_agree(machine, ops, onlining):
    smp = "2,maxcpus=8" if machine == "pc" else "2,maxcpus=8,threads=2"
    vm = vm_with(paused=False, machine=machine, smp=smp, onlining=onlining, guest="cooperative:0.2",
                 arch="ppc64" if machine == "pseries" else "x86_64")
    run = qmp(vm)
    for op, n, flag in ops:
        if op == "plug":
            free = [s for s in vm.slots if s.cpu is None]
            if free:
                slot = free[n % len(free)]
                run("device_add", {"id": f"vcpu{slot.index}", **slot_args(vm, slot)})
        elif op == "unplug":
            used = [s for s in vm.slots if s.cpu is not None and s.cpu.id]
            if used:
                run("device_del", {"id": used[n % len(used)].cpu.id})
        elif op == "agent":
            ga(vm, "guest-set-vcpus", {"vcpus": [{"logical-id": n % 8, "online": flag}]})
        elif op == "qmp-online":
            fast = run("query-cpus-fast")
            target = fast[n % len(fast)]["cpu-index"]
            run("x-cpuhot-guest-online", {"cpu-index": target, "online": flag or target == 0})
        else:
            run("x-cpuhot-clock-step", {"seconds": 0.3})
        fast = run("query-cpus-fast")
        guest = run("x-cpuhot-guest-cpus")
        agent = ga(vm, "guest-get-vcpus")["return"]
        # the same vCPUs everywhere, with the same online state
        assert sorted(c["cpu-index"] for c in fast) == sorted(c["cpu-index"] for c in guest) \
            == sorted(e["logical-id"] for e in agent)
        online = {c["cpu-index"]: c["online"] for c in guest}
        assert {e["logical-id"]: e["online"] for e in agent} == online
        assert [e["logical-id"] for e in agent] == sorted(online, reverse=True)
        assert all(e["can-offline"] is (e["logical-id"] != 0) for e in agent)
        assert online.get(0) is True


def test_system_reset_reboots_the_agent():
    vm = vm_with(paused=False)
    vm.system_reset()
    assert events(vm) == [{"id": "channel0", "open": False}] and not vm.agent.answering
    vm.clock_step(1)
    assert events(vm) == [{"id": "channel0", "open": True}] and vm.agent.answering
    vm.stop()
    vm.system_reset()                                   # paused: back to prelaunch, the guest is down
    assert events(vm) == [{"id": "channel0", "open": False}]
    vm.cont()
    assert events(vm) == [{"id": "channel0", "open": True}]
