"""Property tests of the model's invariants: random topologies, random interleavings of plug,
unplug, guest actions, run-state changes, clock steps and queries; both queries always agree."""

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.machine.errors import QMPError


def check_consistent(vm):
    hot = vm.query_hotpluggable_cpus()
    fast = vm.query_cpus_fast()
    indexes = [c["cpu-index"] for c in fast]
    assert len(indexes) == len(set(indexes)), "cpu-index shared"
    assert len({c["thread-id"] for c in fast}) == len(fast)
    occupied = {e["qom-path"]: e for e in hot if "qom-path" in e}
    assert len(occupied) == sum(1 for e in hot if "qom-path" in e), "two slots share a qom-path"
    # every vCPU belongs to exactly one occupied slot, with the slot's props; counts add up
    per_slot = {}
    for c in fast:
        owner = c["qom-path"] if c["qom-path"] in occupied else c["qom-path"].rsplit("/", 1)[0]
        assert owner in occupied, f"{c['qom-path']} has no slot"
        assert c["props"] == occupied[owner]["props"]
        per_slot[owner] = per_slot.get(owner, 0) + 1
    assert per_slot == {p: e["vcpus-count"] for p, e in occupied.items()}
    assert sum(e["vcpus-count"] for e in hot) == vm.topology.max_cpus
    ids = [d.id for d in {v.device for v in vm.vcpus} if d.id]
    assert len(ids) == len(set(ids))
    # arch ids follow the topology
    for slot in vm.slots:
        if vm.policy.arch == "x86_64":
            assert slot.arch_id == vm.topology.apic_id_from_index(slot.index)
        else:
            assert slot.arch_id == slot.index * vm.topology.threads
        if slot.cpu is not None:
            assert [v.cpu_index for v in slot.cpu.vcpus] == list(range(slot.first_cpu_index,
                                                                         slot.first_cpu_index + slot.vcpus_count))


@st.composite
def configs(draw):
    if draw(st.booleans()):
        threads = draw(st.sampled_from([1, 2, 4, 8]))
        cores = draw(st.integers(1, 4))
        maxcpus = cores * threads * draw(st.integers(1, 2))
        return LaunchOptions(arch="ppc64", machine="pseries", accel="kvm",
                             smp=f"{threads * draw(st.integers(1, maxcpus // threads))},maxcpus={maxcpus},threads={threads}",
                             guest=draw(st.sampled_from(["cooperative", "unresponsive", "refuse", "flaky:0.5", "none"])),
                             clock="virtual", seed=draw(st.integers(0, 9)))
    sockets, dies, cores, threads = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 3)),
                                     draw(st.integers(1, 3)))
    maxcpus = sockets * dies * cores * threads
    return LaunchOptions(machine=draw(st.sampled_from(["pc", "q35"])), accel="kvm",
                         smp=f"{draw(st.integers(1, maxcpus))},maxcpus={maxcpus},sockets={sockets},dies={dies},"
                             f"cores={cores},threads={threads}",
                         guest=draw(st.sampled_from(["cooperative", "unresponsive", "refuse", "flaky:0.5", "auto"])),
                         clock="virtual", seed=draw(st.integers(0, 9)), start_paused=draw(st.booleans()))


class HotplugMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.vm = None
        self.n = 0

    @precondition(lambda self: self.vm is None)
    @rule(opts=configs())
    def boot(self, opts):
        self.vm = build_machine(opts).vm

    @precondition(lambda self: self.vm is not None)
    @rule(data=st.data(), named=st.booleans())
    def plug(self, data, named):
        free = [s for s in self.vm.slots if s.cpu is None]
        if not free:
            return
        slot = data.draw(st.sampled_from(free))
        self.n += 1
        args = {"driver": slot.type, **slot.props}
        if named:
            args["id"] = f"c{self.n}"
        self.vm.device_add(args)
        assert slot.cpu is not None

    @precondition(lambda self: self.vm is not None)
    @rule(data=st.data())
    def plug_taken(self, data):
        taken = [s for s in self.vm.slots if s.cpu is not None]
        slot = data.draw(st.sampled_from(taken))
        before = len(self.vm.vcpus)
        try:
            self.vm.device_add({"driver": slot.type, **slot.props})
            raise AssertionError("an occupied slot accepted a second CPU")
        except QMPError:
            pass
        assert len(self.vm.vcpus) == before

    @precondition(lambda self: self.vm is not None)
    @rule(data=st.data())
    def unplug(self, data):
        plugged = [s.cpu for s in self.vm.slots if s.cpu is not None]
        device = data.draw(st.sampled_from(plugged))
        try:
            self.vm.device_del(device.id or device.qom_path)
        except QMPError:
            pass

    @precondition(lambda self: self.vm is not None)
    @rule(data=st.data())
    def guest_eject(self, data):
        plugged = [s.cpu for s in self.vm.slots if s.cpu is not None and s.index > 0]
        if plugged and self.vm.guest.present:
            self.vm.guest_eject(data.draw(st.sampled_from(plugged)).qom_path)

    @precondition(lambda self: self.vm is not None)
    @rule(data=st.data(), online=st.booleans())
    def guest_online(self, data, online):
        if self.vm.guest.present and self.vm.vcpus:
            self.vm.guest_set_online(data.draw(st.sampled_from(self.vm.vcpus)).cpu_index, online)

    @precondition(lambda self: self.vm is not None)
    @rule(seconds=st.floats(0, 3))
    def time_passes(self, seconds):
        self.vm.clock_step(seconds)

    @precondition(lambda self: self.vm is not None)
    @rule(action=st.sampled_from(["cont", "stop", "system_reset"]))
    def runstate(self, action):
        getattr(self.vm, action)()

    @precondition(lambda self: self.vm is not None)
    @rule(mode=st.sampled_from(["cooperative", "unresponsive", "refuse", "none", "flaky:0.3"]))
    def switch_guest(self, mode):
        from cpuhot.machine.guest import GuestMode
        self.vm.guest.mode = GuestMode.parse(mode)

    @invariant()
    def queries_agree(self):
        if self.vm is not None:
            check_consistent(self.vm)
            self.vm.drain_events()


TestHotplugMachine = HotplugMachine.TestCase
TestHotplugMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=100, deadline=None)
@given(configs())
def test_every_valid_topology_boots_consistent(opts):
    vm = build_machine(opts).vm
    check_consistent(vm)
    assert len(vm.vcpus) == vm.topology.cpus
