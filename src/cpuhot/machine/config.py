"""From launch options (what the command line said) to a ready :class:`VirtualMachine`.

This is QEMU's start-up sequence reduced to what CPU hotplug needs, with its
refusals in QEMU's order: machine type, ``-smp``, CPU model, memory backends,
``-numa``, the x86/sPAPR topology checks, then ``-device`` cold-plug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import RealClock, VirtualClock
from .cpu_models import resolve_cpu_model
from .guest import Guest, GuestMode
from .errors import ConfigError, QMPError
from .machines import find_machine
from .numa import NumaBuilder, parse_numa_option
from .options import OptionError, parse_option_string, parse_size
from .smp import SmpRules, derive_topology, parse_smp
from .spapr import SpaprPolicy
from .vm import CpuIndexRule, VirtualMachine
from .x86 import X86Policy
from .qdev import id_wellformed

DEFAULT_RAM = 128 << 20
PSERIES_DEFAULT_RAM = 512 << 20
SPAPR_MEMORY_BLOCK_SIZE = 256 << 20


@dataclass
class LaunchOptions:
    """Everything the command line says about the VM (QEMU spellings, unparsed)."""

    arch: str = "x86_64"
    release: str = "7.2"                # which QEMU release (cpuhot.machine.release.RELEASES)
    machine: str | None = None          # "-machine" text: TYPE[,k=v...]
    smp: str | None = None
    cpu: str | None = None
    memory: str | None = None           # "-m"
    objects: list[str] = field(default_factory=list)
    numa: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    accel: str = "kvm"
    name: str | None = None
    uuid: str | None = None
    start_paused: bool = False
    cpu_index_rule: str = "slot"
    in_order_plug: bool = False
    guest: str = "auto"                 # guest mode (see cpuhot.machine.guest)
    incoming: str | None = None         # "-incoming URI|defer"
    vcpu_threads: bool = False          # a real parked OS thread per vCPU (its TID is the thread-id)
    no_shutdown: bool = False           # "-no-shutdown"
    force_kvm: bool = False             # "--force-kvm": simulate KVM whatever -machine accel= says
    seed: int = 0
    clock: str = "real"                 # "real" | "virtual"


@dataclass
class BuiltMachine:
    vm: VirtualMachine
    warnings: list[str]


def _machine_props(text: str | None) -> tuple[str | None, dict[str, str]]:
    if text is None:
        return None, {}
    try:
        pairs = parse_option_string(text, implied="type")
    except OptionError as e:
        raise ConfigError(str(e)) from None
    props = dict(pairs)
    return props.pop("type", None), props


def _memory_size(text: str | None, default: int = DEFAULT_RAM) -> int:
    if text is None:
        return default
    pairs = dict(parse_option_string(text, implied="size"))
    size = pairs.get("size")
    if size is None:
        return default
    try:
        value = parse_size(size, default_unit=1 << 20)
    except ValueError:
        raise ConfigError(f"invalid ram size: {size}") from None
    return value


def _memory_backends(objects: list[str]) -> dict[str, int]:
    backends: dict[str, int] = {}
    for text in objects:
        pairs = dict(parse_option_string(text, implied="qom-type"))
        qom_type = pairs.get("qom-type")
        if qom_type not in ("memory-backend-ram", "memory-backend-file", "memory-backend-memfd"):
            continue
        ident = pairs.get("id")
        if ident is None:
            raise ConfigError("Parameter 'id' is missing", location=f"-object {text}")
        if "size" not in pairs:
            raise ConfigError("can't create backend with size 0", location=f"-object {text}")
        try:
            backends[ident] = parse_size(pairs["size"])
        except ValueError:
            raise ConfigError("Parameter 'size' expects a size", location=f"-object {text}") from None
    return backends


def build_machine(opts: LaunchOptions, *, clock=None, thread_id_base: int = 1000) -> BuiltMachine:
    """Build and start (up to ``prelaunch``/``running``) the VM the options describe.

    Raises :class:`ConfigError` for anything QEMU would refuse at start-up.
    """
    warnings: list[str] = []
    try:
        guest = Guest(GuestMode.parse(opts.guest), seed=opts.seed)
    except ValueError as e:
        raise ConfigError(f"--guest: {e}") from None
    if clock is None:
        clock = VirtualClock() if opts.clock == "virtual" else RealClock()
    type_name, machine_props = _machine_props(opts.machine)
    machine = find_machine(opts.arch, type_name, opts.release)
    accel = "kvm" if opts.force_kvm else machine_props.get("accel", opts.accel).split(":")[0]
    opts.accel = accel
    if machine.family == "none":
        return _build_none(opts, machine, clock, guest, thread_id_base, warnings)
    if not machine.simulated:
        raise ConfigError(f"cpuhot does not simulate machine type '{machine.name}' "
                          "(it simulates pc-i440fx-*, pc-q35-* and pseries-*)")
    family = machine.family
    version = machine.version
    rules = SmpRules(machine_name=machine.name, max_cpus=machine.cpu_max,
                     dies_supported=family in ("pc", "q35"), clusters_supported=False,
                     prefer_sockets=version < (6, 2))
    topology, smp_warnings = derive_topology(parse_smp(opts.smp), rules)
    warnings.extend(smp_warnings)
    cpu_model = resolve_cpu_model(opts.arch, opts.cpu, machine.default_cpu_type)
    ram_size = _memory_size(opts.memory, PSERIES_DEFAULT_RAM if family == "pseries" else DEFAULT_RAM)
    memdevs = _memory_backends(opts.objects)

    if family == "pseries":
        if cpu_model.core_type is None:
            raise ConfigError("Unable to find sPAPR CPU Core definition")
        policy = SpaprPolicy(topology, cpu_model.core_type, accel, version, cpu_model.name,
                             hotpluggable=machine.hotpluggable_cpus)
    else:
        policy = X86Policy(family, topology, cpu_model.cpu_type, accel, machine.cpu_max,
                           cpu_text=opts.cpu or cpu_model.name)

    slots = policy.build_slots()
    numa = NumaBuilder(slots, max_cpus=topology.max_cpus, numa_mem_supported=machine.numa_mem_supported,
                       memdevs=memdevs)
    for text in opts.numa:
        numa.apply(parse_numa_option(text))
    if family == "pseries" and not numa.state.nodes:
        numa.apply(parse_numa_option("node"))     # pseries enables NUMA by itself (one node)
        numa.state.nodes[0].mem = ram_size
        numa.state.nodes[0].has_mem = True
    user_numa = bool(numa.state.nodes)
    numa_state = numa.finish(ram_size, lambda s: policy.default_node(s, numa.state.num_nodes),
                             policy.describe_slot)
    if family == "pseries" and user_numa:
        for nodeid in sorted(numa_state.nodes):
            mem = numa_state.nodes[nodeid].mem
            if mem % SPAPR_MEMORY_BLOCK_SIZE:
                raise ConfigError(f"Node {nodeid} memory size 0x{mem:x} is not aligned to 256 MiB")
    warnings.extend(numa.warnings)
    policy.check_config()

    vm = VirtualMachine(policy=policy, machine=machine, topology=topology, cpu_model=cpu_model,
                        numa_state=numa_state if numa_state.num_nodes else None, ram_size=ram_size,
                        accel=accel, name=opts.name, uuid=opts.uuid, start_paused=opts.start_paused,
                        clock=clock, thread_id_base=thread_id_base, guest=guest,
                        cpu_index_rule=CpuIndexRule(opts.cpu_index_rule), in_order_plug=opts.in_order_plug)
    vm.release = opts.release
    vm.set_slots(slots)
    vm.no_shutdown = opts.no_shutdown
    if opts.vcpu_threads:
        from .vcpu_threads import VcpuThreads
        vm.vcpu_threads = VcpuThreads()
    vm.create_boot_cpus()
    device_ids: set[str] = set()
    for text in opts.devices:
        _cold_plug(vm, text, device_ids)
    warnings.extend(text for _, text in vm.stderr)
    vm.stderr.clear()
    warnings.extend(policy.startup_warnings(cpu_model.name))
    if opts.incoming is not None:
        vm.migration.incoming = opts.incoming
        vm.runstate = "inmigrate"
    vm.finish_startup()
    return BuiltMachine(vm=vm, warnings=warnings)


def _build_none(opts, machine, clock, guest, thread_id_base, warnings) -> BuiltMachine:
    """``-machine none``: what libvirt probes with; no CPUs, 1 possible at most."""
    from .cpu_models import CpuModel
    from .none import NonePolicy
    rules = SmpRules(machine_name=machine.name, max_cpus=machine.cpu_max, dies_supported=False,
                     clusters_supported=False)
    topology, smp_warnings = derive_topology(parse_smp(opts.smp), rules)
    warnings.extend(smp_warnings)
    vm = VirtualMachine(policy=NonePolicy(opts.arch), machine=machine, topology=topology,
                        cpu_model=CpuModel(name="none", cpu_type="", core_type=None), numa_state=None,
                        ram_size=_memory_size(opts.memory), accel=(opts.accel or "kvm").split(":")[0],
                        name=opts.name, uuid=opts.uuid, start_paused=opts.start_paused, clock=clock,
                        thread_id_base=thread_id_base, guest=guest)
    vm.release = opts.release
    vm.set_slots([])
    vm.finish_startup()
    return BuiltMachine(vm=vm, warnings=warnings)


def _cold_plug(vm: VirtualMachine, text: str, device_ids: set[str]) -> None:
    """``-device DRIVER,k=v,...``: the same checks as device_add, before the machine is ready."""
    location = f"-device {text}"
    try:
        pairs = parse_option_string(text, implied="driver")
    except OptionError as e:
        raise ConfigError(str(e), location=location) from None
    args: dict = {}
    for k, v in pairs:
        args[k] = v
    if "id" in args:
        if not id_wellformed(args["id"]):
            raise ConfigError("Parameter 'id' expects an identifier", location=location)
        if args["id"] in device_ids:        # QemuOpts sees the clash before qdev does
            raise ConfigError(f"Duplicate ID '{args['id']}' for device", location=location)
        device_ids.add(args["id"])
    try:
        vm.device_add(args)
    except QMPError as e:
        raise ConfigError(e.desc, location=location) from None
