"""From launch options (what the command line said) to a ready :class:`VirtualMachine`.

This is QEMU's start-up sequence reduced to what CPU hotplug needs, with its
refusals in QEMU's order: machine type, ``-smp``, CPU model, memory backends,
``-numa``, the x86/sPAPR topology checks, then ``-device`` cold-plug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, RealClock, VirtualClock
from .devices import PCI_DEVICES
from .cpu_models import CpuModel, resolve_cpu_model
from .guest import Guest, GuestMode
from .errors import AbortError, ConfigError, QMPError
from .machines import MachineType, find_machine
from .numa import NumaBuilder, parse_numa_option
from .options import OptionError, parse_option_string, parse_size
from .release import Release, get_release
from .s390x import S390Policy
from .smp import SmpRules, smp_topology
from .smp_releases import derive as derive_smp_of_release
from .spapr import SpaprPolicy
from .topology import CpuTopology
from .vm import CpuIndexRule, CpuPolicy, VirtualMachine
from .x86 import X86Policy
from .qdev import id_wellformed

DEFAULT_RAM = 128 << 20
PSERIES_DEFAULT_RAM = 512 << 20


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


def build_machine(opts: LaunchOptions, *, clock: Clock | Callable[[], float] | None = None,
                  thread_id_base: int = 1000) -> BuiltMachine:
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
    release = get_release(opts.release)
    try:
        machine = find_machine(opts.arch, type_name, opts.release)
    except ConfigError as e:
        if release.machine_error_location and opts.machine is not None:
            e.location = f"-machine {opts.machine}"
        raise
    accel = "kvm" if opts.force_kvm else machine_props.get("accel", opts.accel).split(":")[0]
    opts.accel = accel
    if machine.family == "none":
        return _build_none(opts, machine, clock, guest, thread_id_base, warnings)
    if not machine.simulated:
        raise ConfigError(f"cpuhot does not simulate machine type '{machine.name}' "
                          "(it simulates pc-i440fx-*, pc-q35-*, pseries-* and s390-ccw-virtio-*)")
    family = machine.family
    version = machine.version
    s390x = family == "s390-ccw-virtio"
    if machine.deprecated and release.deprecated_machine_warning:
        warnings.append("warning: " + release.deprecated_machine_warning.format(machine.name))
    rules = SmpRules(machine_name=machine.name, max_cpus=machine.cpu_max,
                     dies_supported=family in ("pc", "q35"), clusters_supported=False,
                     prefer_sockets=version < (6, 2),
                     books_supported=s390x, drawers_supported=s390x,
                     zero_is_error=release.smp_zero_is_error, unsupported_text=release.smp_unsupported_text,
                     modules_supported=release.x86_modules and family in ("pc", "q35"))
    if s390x:
        # s390x's -smp follows its release's generic rules (5.2: smp_parse, 10.0: with drawers/books)
        topology, smp_warnings = derive_smp_of_release(opts.smp, rules, release.smp_rules)
    else:
        topology, smp_warnings = smp_topology(opts.smp, rules, release.smp_parser, release.smp_extra_keys)
    warnings.extend(smp_warnings)
    cpu_model = resolve_cpu_model(opts.arch, opts.cpu, machine.default_cpu_type, opts.release)
    ram_size = _memory_size(opts.memory, _DEFAULT_RAM.get(family, DEFAULT_RAM))
    memdevs = _memory_backends(opts.objects)

    policy: CpuPolicy = _POLICIES[family](opts, machine, topology, cpu_model, accel, release)
    if opts.numa and not policy.numa_supported:
        raise ConfigError("NUMA is not supported by this machine-type", location=f"-numa {opts.numa[0]}")

    slots = policy.build_slots()
    numa = NumaBuilder(slots, max_cpus=topology.max_cpus, numa_mem_supported=machine.numa_mem_supported,
                       memdevs=memdevs)
    for text in opts.numa:
        numa.apply(parse_numa_option(text))
    policy.complete_numa(numa, ram_size)
    user_numa = bool(numa.state.nodes)      # pseries: also its own node, as QEMU checks that too
    numa_state = numa.finish(ram_size, lambda s: policy.default_node(s, numa.state.num_nodes),
                             policy.describe_slot)
    if user_numa:
        policy.check_numa_memory(numa_state)
    warnings.extend(numa.warnings)
    try:
        policy.check_config()
    except AbortError as e:        # QEMU printed its warnings so far before it aborted
        e.printed = (*warnings, *e.printed)
        raise

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
    if release.device_opts_parsed_first:        # QemuOpts refuses a duplicate id before any -device is made
        seen: set[str] = set()
        for text in opts.devices:
            _check_device_id(text, seen)
    for text in opts.devices:
        _cold_plug(vm, text, device_ids)
    # net_check_clients: a -device NIC without a netdev (recorded on pseries, first of the
    # start-up warnings; an anonymous NIC's name, MODEL.N, is inferred from qemu_new_nic)
    unpeered = [d for d in vm.generic_devices() if "netdev" in PCI_DEVICES.get(d.driver, ()) and "netdev" not in d.props]
    warnings[0:0] = [f"warning: nic {d.id if d.id is not None else f'{d.driver}.{n}'} has no peer"
                     for n, d in enumerate(unpeered)]
    realized = [text for _, text in vm.stderr]
    first_cpu_warnings = getattr(policy, "first_cpu_warnings", None)
    if first_cpu_warnings is not None:      # after the first CPU's own warnings
        n = len(policy.realize_warnings())
        realized[n:n] = first_cpu_warnings(cpu_model.name)
    warnings.extend(realized)
    vm.stderr.clear()
    warnings.extend(policy.startup_warnings(cpu_model.name))
    if opts.incoming is not None:
        vm.migration.incoming = opts.incoming
        vm.runstate = "inmigrate"
    vm.finish_startup()
    return BuiltMachine(vm=vm, warnings=warnings)


def _x86_policy(opts: LaunchOptions, machine: MachineType, topology: CpuTopology, cpu_model: CpuModel,
                accel: str, release: Release) -> X86Policy:
    return X86Policy(machine.family, topology, cpu_model.cpu_type, accel, machine.cpu_max,
                     cpu_text=opts.cpu or cpu_model.name, release=release)


def _spapr_policy(opts: LaunchOptions, machine: MachineType, topology: CpuTopology, cpu_model: CpuModel,
                  accel: str, release: Release) -> SpaprPolicy:
    if cpu_model.core_type is None:
        raise ConfigError("Unable to find sPAPR CPU Core definition")
    return SpaprPolicy(topology, cpu_model.core_type, accel, machine.version, cpu_model.name, release=release,
                       hotpluggable=machine.hotpluggable_cpus)


def _s390x_policy(opts: LaunchOptions, machine: MachineType, topology: CpuTopology, cpu_model: CpuModel,
                  accel: str, release: Release) -> S390Policy:
    return S390Policy(topology, cpu_model.cpu_type, accel, release, cpu_model.name)


#: RAM without -m, where a board's default is not QEMU's 128 MiB
_DEFAULT_RAM = {"pseries": PSERIES_DEFAULT_RAM}

#: the CPU policy of each simulated machine family
_POLICIES: dict[str, Callable[[LaunchOptions, MachineType, CpuTopology, CpuModel, str, Release], CpuPolicy]] = {"pc": _x86_policy, "q35": _x86_policy, "pseries": _spapr_policy, "s390-ccw-virtio": _s390x_policy}


def _build_none(opts: LaunchOptions, machine: MachineType, clock: Clock | Callable[[], float] | None, guest: Guest,
                thread_id_base: int, warnings: list[str]) -> BuiltMachine:
    """``-machine none``: what libvirt probes with; no CPUs, 1 possible at most."""
    from .none import NonePolicy
    rules = SmpRules(machine_name=machine.name, max_cpus=machine.cpu_max, dies_supported=False,
                     clusters_supported=False)
    topology, smp_warnings = smp_topology(opts.smp, rules, get_release(opts.release).smp_parser)
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


def _check_device_id(text: str, seen: set[str]) -> None:
    try:
        ident = dict(parse_option_string(text, implied="driver")).get("id")
    except OptionError:
        return                          # _cold_plug reports it
    if ident is not None and id_wellformed(ident):
        if ident in seen:
            raise ConfigError(f"Duplicate ID '{ident}' for device", location=f"-device {text}")
        seen.add(ident)


def _cold_plug(vm: VirtualMachine, text: str, device_ids: set[str]) -> None:
    """``-device DRIVER,k=v,...``: the same checks as device_add, before the machine is ready."""
    location = f"-device {text}"
    try:
        pairs = parse_option_string(text, implied="driver")
    except OptionError as e:
        raise ConfigError(str(e), location=location) from None
    args: dict[str, Any] = {}
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
