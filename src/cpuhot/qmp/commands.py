"""The QMP commands cpuhot serves, each a small function over the machine model.

Handlers take a :class:`~cpuhot.qmp.protocol.CommandContext` and the
command's arguments, and return the ``return`` value (``None`` for ``{}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from ..machine.cpu_models import cpu_definitions
from ..machine.devices import GenericDevice
from ..machine.errors import CommandNotFound, GenericError
from ..machine.machines import machine_table
from ..machine.release import get_release
from ..machine.vm import VirtualMachine
from .context import Context, MonitorIO
from .dispatch import Arg
from .registry import COMMANDS as COMMANDS, command  # COMMANDS lives apart: commands_tools declares on it too

if TYPE_CHECKING:
    from .typeinfo import ObjectTypeInfo


@command("qmp_capabilities", args=(Arg("enable", "enum-list", optional=True, enum=("oob",)),))
def qmp_capabilities(ctx: Context, enable: list[str] | None = None) -> None:
    """Leave capabilities-negotiation mode; ``enable: ["oob"]`` turns on out-of-band execution."""
    if enable is not None and not ctx.monitor.profile.oob:
        raise GenericError("Parameter 'enable' is unexpected")     # QEMU < 3.0 took no arguments
    if ctx.session.negotiated:
        raise CommandNotFound("Capabilities negotiation is already complete, command ignored")
    ctx.session.oob = "oob" in (enable or [])
    ctx.session.negotiated = True


@command("query-hotpluggable-cpus", returns="list[HotpluggableCPU]")
def query_hotpluggable_cpus(ctx: Context) -> list[dict[str, Any]]:
    """One entry per possible CPU slot, highest slot first; ``qom-path`` when occupied."""
    return ctx.vm.query_hotpluggable_cpus()


@command("query-cpus-fast", returns="list[CpuInfoFast]")
def query_cpus_fast(ctx: Context) -> list[dict[str, Any]]:
    """Present vCPUs in creation order."""
    return ctx.vm.query_cpus_fast()


@command("query-cpus", returns="list[CpuInfo]")
def query_cpus(ctx: Context) -> list[dict[str, Any]]:
    """Legacy (QEMU <= 5.2): present vCPUs in cpu-index order with run state."""
    return ctx.vm.query_cpus()


@command("device_add", args=None)
def device_add(ctx: Context, arguments: dict[str, Any]) -> None:
    """Plug a CPU (x86 thread or sPAPR core) into a free slot."""
    if get_release(ctx.vm.release).device_add_typed_json:
        _check_json_types(ctx.vm, arguments)
    ctx.vm.device_add(arguments, typed=True)


#: the JSON types QEMU's qobject input visitor names in its type errors
_JSON_KIND_OK = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
}


def _check_json_types(vm: VirtualMachine, arguments: dict[str, Any]) -> None:
    """QMP device_add's JSON read with typed visitors (``Release.device_add_typed_json``, 10.0).

    ``qdev_device_add_from_qdict``: a non-string ``driver`` is reported missing; for a CPU
    driver, after the device got its id (an anonymous CPU consumes its peripheral-anon number),
    every other member is set as a QOM property, in QDict order: a member that is no property
    is "not found" whatever its JSON type (null, list and object included), a read-only one is
    "not writable", and a value of the wrong JSON type is a type error (recorded: the
    ``*-add-json-types`` scenarios of transcripts/qemu-10.0)."""
    from ..machine.cpu_models import known_plug_types
    from ..machine.qdev import qdict_order
    driver = arguments.get("driver")
    if not isinstance(driver, str):
        raise GenericError("Parameter 'driver' is missing")
    if driver not in known_plug_types(vm.policy.arch, vm.release):
        return
    ident = arguments.get("id")
    if isinstance(ident, str) and ident in vm.peripheral:
        return                     # qdev_set_id comes first: the duplicate id is the error
    property_kinds = getattr(vm.policy, "json_property_kinds", None)
    if property_kinds is None:     # no CPU device properties (-machine none): the plug path refuses
        return
    kinds = property_kinds()
    release = get_release(vm.release)
    for key in qdict_order(arguments):
        if key in ("driver", "id", "bus"):
            continue
        value, kind = arguments[key], kinds.get(key)
        if kind is None:
            error = f"Property '{driver}.{key}' not found"
        elif kind == "readonly":
            error = release.readonly_property_text.format(driver=driver, key=key)
        elif kind in _JSON_KIND_OK and not _JSON_KIND_OK[kind](value):
            error = f"Invalid parameter type for '{key}', expected: {kind}"
        elif kind == "uint32" and not _JSON_KIND_OK["integer"](value):
            error = f"Parameter '{key}' expects uint64"
        elif kind == "uint32" and not 0 <= value <= 0xFFFFFFFF:
            error = f"Parameter '{key}' expects uint32_t"
        else:
            continue
        if "id" not in arguments and vm.slots:
            vm.anon_counter += 1
        raise GenericError(error)


@command("device_del", args=(Arg("id", "str"),))
def device_del(ctx: Context, id: str) -> None:
    """Ask for a CPU's removal (completion depends on the guest)."""
    ctx.vm.device_del(id)


@command("cpu-add", args=(Arg("id", "int"),))
def cpu_add(ctx: Context, id: int) -> None:
    """Legacy (QEMU <= 5.1): add the CPU whose cpu-index is ``id`` (sPAPR: the whole core)."""
    ctx.vm.cpu_add(id)


@command("query-status", returns="StatusInfo")
def query_status(ctx: Context) -> dict[str, Any]:
    return ctx.vm.query_status()


@command("query-version", returns="VersionInfo")
def query_version(ctx: Context) -> dict[str, Any]:
    return ctx.monitor.version_info()


@command("query-commands", returns="list[CommandInfo]")
def query_commands(ctx: Context) -> list[dict[str, str]]:
    return [{"name": n} for n in ctx.monitor.served_commands()]


@command("query-target", returns="TargetInfo")
def query_target(ctx: Context) -> dict[str, str]:
    return {"arch": ctx.vm.policy.target}


@command("query-machines", returns="list[MachineInfo]")
def query_machines(ctx: Context) -> list[dict[str, Any]]:
    return [m.to_qmp() for m in machine_table(ctx.vm.policy.arch, ctx.vm.release)]


@command("query-cpu-definitions", returns="list[CpuDefinitionInfo]")
def query_cpu_definitions(ctx: Context) -> list[dict[str, Any]]:
    return [dict(d) for d in cpu_definitions(ctx.vm.policy.arch, ctx.vm.release)]


@command("query-kvm", returns="KvmInfo")
def query_kvm(ctx: Context) -> dict[str, bool]:
    kvm = ctx.vm.accel == "kvm"
    # the x86_64 binary always has KVM support built in; ppc64 on an x86 host only when simulated
    return {"enabled": kvm, "present": kvm or ctx.vm.policy.arch == "x86_64"}


@command("query-name", returns="NameInfo")
def query_name(ctx: Context) -> dict[str, str]:
    return {"name": ctx.vm.name} if ctx.vm.name is not None else {}


@command("query-uuid", returns="UuidInfo")
def query_uuid(ctx: Context) -> dict[str, str]:
    return {"UUID": ctx.vm.uuid or "00000000-0000-0000-0000-000000000000"}


@command("cont")
def cont(ctx: Context) -> None:
    ctx.vm.cont()


@command("stop")
def stop(ctx: Context) -> None:
    ctx.vm.stop()


@command("system_reset")
def system_reset(ctx: Context) -> None:
    ctx.vm.system_reset()


@command("system_powerdown")
def system_powerdown(ctx: Context) -> None:
    ctx.vm.system_powerdown()


@command("quit")
def quit_(ctx: Context) -> None:
    """Shut the simulator down: SHUTDOWN event, the reply, then the server exits."""
    ctx.vm.quit()
    ctx.monitor.quit_requested = True


@command("migrate-pause", allow_oob=True)
def migrate_pause(ctx: Context) -> NoReturn:
    """Pause a postcopy migration; cpuhot never runs postcopy, so this is always QEMU's refusal."""
    raise GenericError(get_release(ctx.vm.release).migrate_pause_refusal)


@command("qom-get", args=(Arg("path", "str"), Arg("property", "str")))
def qom_get(ctx: Context, path: str, property: str) -> object:
    """Read a property of a CPU device (``apic-id``, ``core-id``, ``node-id``, ``type``, ...)."""
    return ctx.vm.qom_get(path, property)


@command("qom-list", args=(Arg("path", "str"),))
def qom_list(ctx: Context, path: str) -> list[dict[str, str]]:
    """Children of ``/machine/peripheral``, ``/machine/peripheral-anon`` (and the CPUs of
    ``/machine/unattached``), or the properties of a CPU device."""
    return ctx.vm.qom_list(path)


@command("human-monitor-command", args=(Arg("command-line", "str"), Arg("cpu-index", "int", optional=True)))
def human_monitor_command(ctx: Context, command_line: str, cpu_index: int | None = None) -> str:
    """Run an HMP command (``info hotpluggable-cpus``, ``info cpus``, ``info numa``, ``device_add``,
    ``device_del``, ``cpu-add``) and return its text."""
    from .hmp import run
    return run(ctx, command_line)


# -- cpuhot's own commands (x-cpuhot-*): the guest and the clock, for tests -----------------

@command("x-cpuhot-guest-mode", args=(Arg("mode", "str", optional=True),))
def x_cpuhot_guest_mode(ctx: Context, mode: str | None = None) -> dict[str, Any]:
    """Read or set the guest behaviour (``none``, ``cooperative[:DELAY]``, ``slow:S``,
    ``unresponsive``, ``refuse``, ``flaky:P``, ``auto``).  Returns the mode and what it means now."""
    from ..machine.guest import GuestMode
    guest = ctx.vm.guest
    if mode is not None:
        try:
            guest.mode = GuestMode.parse(mode)
        except ValueError as e:
            raise GenericError(str(e)) from None
    return {"mode": str(guest.mode), "effective": guest.effective, "booted": guest.booted}


@command("x-cpuhot-guest-cpus")
def x_cpuhot_guest_cpus(ctx: Context) -> list[dict[str, Any]]:
    """The vCPUs as the guest sees them: cpu-index, qom-path and whether the guest has it online."""
    return [{"cpu-index": v.cpu_index, "qom-path": v.qom_path, "online": v.online} for v in ctx.vm.vcpus]


@command("x-cpuhot-guest-online", args=(Arg("cpu-index", "int"), Arg("online", "bool")))
def x_cpuhot_guest_online(ctx: Context, cpu_index: int, online: bool) -> None:
    """Make the guest online or offline one vCPU now (as ``echo 0 > /sys/.../online`` would)."""
    ctx.vm.guest_set_online(cpu_index, online)


@command("x-cpuhot-guest-eject", args=(Arg("id", "str"),))
def x_cpuhot_guest_eject(ctx: Context, id: str) -> None:
    """Make the guest eject a CPU now (id or QOM path), with the events the eject causes."""
    ctx.vm.guest_eject(id)


@command("x-cpuhot-clock-step", args=(Arg("seconds", "number"),))
def x_cpuhot_clock_step(ctx: Context, seconds: float) -> dict[str, int]:
    """Advance the virtual clock (``--clock virtual``) and run what became due."""
    ctx.vm.clock_step(float(seconds))
    now = ctx.vm.clock.now()
    return {"seconds": int(now), "microseconds": int(round((now - int(now)) * 1e6))}


# -- migration -----------------------------------------------------------------------------

def _io(ctx: Context) -> MonitorIO:
    if ctx.monitor.io is None:
        raise GenericError("migration needs cpuhot's QMP server (it is not available in-process without one)")
    return ctx.monitor.io


@command("migrate", args=(Arg("uri", "str"), Arg("blk", "bool", optional=True), Arg("inc", "bool", optional=True),
                          Arg("detach", "bool", optional=True), Arg("resume", "bool", optional=True)))
def migrate(ctx: Context, uri: str, blk: bool | None = None, inc: bool | None = None, detach: bool | None = None,
            resume: bool | None = None) -> None:
    """Send this VM's state to a cpuhot target started with ``-incoming`` (``unix:PATH`` or
    ``tcp:HOST:PORT``; ``exec:`` is refused)."""
    from .migration_io import check_uri
    vm = ctx.vm
    mig = vm.migration
    if mig.status in ("setup", "active", "cancelling"):
        raise GenericError("There's a migration process in progress")
    if vm.runstate == "inmigrate":
        raise GenericError("Guest is waiting for an incoming migration")
    if uri.startswith("fd:"):
        from .commands_migration import migrate_fd
        return migrate_fd(ctx, uri)
    if uri.startswith("exec:"):
        check_uri(uri)          # cpuhot's own refusal, before a migration starts
    io = _io(ctx)
    mig.status, mig.error = "setup", None
    if mig.caps.get("events"):
        vm.emit("MIGRATION", {"status": "setup"})
    _check_migrate_address(vm, uri)
    io.migration.start(uri)


def _check_migrate_address(vm: VirtualMachine, uri: str) -> None:
    """An address QEMU 7.2 cannot parse fails the migration at once (``setup``, then
    ``failed`` with the message as error-desc, except for an unknown protocol) and the
    command with it; a new ``migrate`` may follow."""
    from .migration_io import check_uri, parse_socket_uri
    mig = vm.migration
    try:
        check_uri(uri)
        if uri.startswith(("unix:", "tcp:")):
            parse_socket_uri(uri)
    except GenericError as e:
        mig.status = "failed"
        mig.error = None if e.desc == "Parameter 'uri' expects a valid migration protocol" else e.desc
        if mig.caps.get("events"):
            vm.emit("MIGRATION", {"status": "failed"})
        raise


@command("migrate-incoming", args=(Arg("uri", "str"),))
def migrate_incoming(ctx: Context, uri: str) -> None:
    """Start listening for a migration stream (``-incoming defer``)."""
    import asyncio
    mig = ctx.vm.migration
    if mig.incoming is None:
        raise GenericError("'-incoming' was not specified on the command line")
    if mig.incoming != "defer":
        raise GenericError("The incoming migration has already been started")
    if uri.startswith("fd:"):
        from .commands_migration import migrate_incoming_fd
        return migrate_incoming_fd(ctx, uri)
    io = _io(ctx)
    try:
        sock = io.migration.bind_incoming(uri)
    except OSError as e:
        raise GenericError(f"Failed to bind socket: {e.strerror}") from None
    mig.incoming = uri
    asyncio.get_running_loop().create_task(io.migration.serve_incoming(sock))


@command("query-migrate")
def query_migrate(ctx: Context) -> dict[str, Any]:
    return ctx.vm.migration.query(get_release(ctx.vm.release).incoming_setup_status)


@command("migrate_cancel")
def migrate_cancel(ctx: Context) -> None:
    if ctx.monitor.io is not None:
        ctx.monitor.io.migration.cancel()


@command("migrate-set-capabilities", args=(Arg("capabilities", "any"),))
def migrate_set_capabilities(ctx: Context, capabilities: object) -> None:
    from ..machine.migration import MIGRATION_CAPABILITIES
    if not isinstance(capabilities, list):
        raise GenericError("Invalid parameter type for 'capabilities', expected: array")
    caps = ctx.vm.migration.caps
    new = dict(caps)
    for i, item in enumerate(capabilities):
        if not isinstance(item, dict):
            raise GenericError(f"Invalid parameter type for 'capabilities[{i}]', expected: object")
        name, state = item.get("capability"), item.get("state")
        if name is None:
            raise GenericError(f"Parameter 'capabilities[{i}].capability' is missing")
        if name not in MIGRATION_CAPABILITIES:
            raise GenericError(f"Parameter 'capabilities[{i}].capability' does not accept value '{name}'")
        if not isinstance(state, bool):
            raise GenericError(f"Invalid parameter type for 'capabilities[{i}].state', expected: boolean")
        new[name] = state
    if ctx.vm.migration.status in ("setup", "active"):
        raise GenericError("There's a migration process in progress")
    caps.update(new)


@command("query-migrate-capabilities")
def query_migrate_capabilities(ctx: Context) -> list[dict[str, Any]]:
    return [{"state": state, "capability": name} for name, state in ctx.vm.migration.caps.items()]


# commands of cpuhot's tools (x-cpuhot-topology, ...) register themselves from their own module
from . import commands_tools  # noqa: E402,F401
from . import commands_s390x  # noqa: E402,F401
from . import commands_migration  # noqa: E402,F401
from . import commands_libvirt11  # noqa: E402,F401


# -- introspection and the commands a libvirt probe / start / reconnect sends ----------------

@command("query-qmp-schema")
def query_qmp_schema(ctx: Context) -> list[dict[str, Any]]:
    """Introspection of every command served, every event emitted and their types."""
    from .schema import build_schema
    return build_schema(ctx.monitor)


@command("qom-list-types", args=(Arg("implements", "str", optional=True), Arg("abstract", "bool", optional=True)),
         returns="list[ObjectTypeInfo]")
def qom_list_types(ctx: Context, implements: str | None = None, abstract: bool = False) -> list[ObjectTypeInfo]:
    """QOM types cpuhot knows: accelerators, machine types, CPU (and sPAPR core) types, devices."""
    from .typeinfo import list_types
    return list_types(ctx.vm.policy.arch, implements, bool(abstract))


@command("device-list-properties", args=(Arg("typename", "str"),), returns="list[ObjectPropertyInfo]")
def device_list_properties(ctx: Context, typename: str) -> list[dict[str, str]]:
    from .typeinfo import device_properties
    return device_properties(ctx.vm.policy.arch, typename)


@command("qom-list-properties", args=(Arg("typename", "str"),), returns="list[ObjectPropertyInfo]")
def qom_list_properties(ctx: Context, typename: str) -> list[dict[str, str]]:
    from .typeinfo import object_properties
    return object_properties(ctx.vm.policy.arch, typename)


@command("query-command-line-options", args=(Arg("option", "str", optional=True),),
         returns="list[CommandLineOptionInfo]")
def query_command_line_options(ctx: Context, option: str | None = None) -> list[dict[str, Any]]:
    """The command-line options cpuhot accepts (parameters are not described)."""
    from ..argv_options import QEMU_OPTIONS
    names = [n for n in QEMU_OPTIONS if len(n) > 1 and n.islower()]
    if option is not None:
        if option not in names:
            raise GenericError(f"invalid option name: {option}")
        names = [option]
    return [{"option": n, "parameters": []} for n in names]


@command("query-chardev")
def query_chardev(ctx: Context) -> list[dict[str, Any]]:
    """The guest agent's chardev (``frontend-open``: the guest's qemu-ga has its port open);
    the monitors' chardevs are not listed."""
    agent = ctx.vm.agent
    if agent is None:
        return []
    return [{"frontend-open": agent.open, "filename": agent.chardev_filename, "label": agent.chardev_id}]


@command("x-cpuhot-guest-agent", args=(Arg("mode", "str", optional=True), Arg("os", "str", optional=True),
                                       Arg("onlining", "str", optional=True)))
def x_cpuhot_guest_agent(ctx: Context, mode: str | None = None, os: str | None = None,
                         onlining: str | None = None) -> dict[str, Any]:
    """Read or set the guest agent (``answering``, ``never``, ``late:S``, ``absent``), the guest OS
    (``linux``, ``windows``) and what the guest does with hot-plugged vCPUs (``udev``,
    ``delayed:S``, ``offline``)."""
    vm = ctx.vm
    try:
        if onlining is not None:
            vm.guest.set_onlining(onlining)
        if (mode is not None or os is not None) and vm.agent is None:
            raise GenericError("this VM has no guest agent channel (org.qemu.guest_agent.0)")
        if os is not None:
            from ..machine.agent import GUEST_OSES
            if os not in GUEST_OSES:
                raise ValueError(f"unknown guest OS '{os}' (one of: {', '.join(GUEST_OSES)})")
            assert vm.agent is not None         # refused above
            vm.agent.os = os
        if mode is not None:
            assert vm.agent is not None         # refused above
            vm.agent.set_mode(mode)
    except ValueError as e:
        raise GenericError(str(e)) from None
    info = vm.agent.info() if vm.agent is not None else {}
    return {"onlining": vm.guest.onlining_text, **info}


@command("query-named-block-nodes", args=(Arg("flat", "bool", optional=True),))
def query_named_block_nodes(ctx: Context, flat: bool | None = None) -> list[object]:
    return []


@command("query-block")
def query_block(ctx: Context) -> list[object]:
    return []


@command("query-jobs")
def query_jobs(ctx: Context) -> list[object]:
    return []


# -- memory balloon (libvirt sets it when the domain has a virtio balloon) ----------------------

def _balloon(ctx: Context) -> GenericDevice:
    for d in list(ctx.vm.peripheral.values()) + list(ctx.vm.peripheral_anon.values()):
        if isinstance(d, GenericDevice) and d.driver.startswith("virtio-balloon"):
            return d
    raise DeviceNotActiveError("No balloon device has been activated")


class DeviceNotActiveError(GenericError):
    error_class = "DeviceNotActive"


@command("balloon", args=(Arg("value", "int"),))
def balloon(ctx: Context, value: int) -> None:
    """Ask the guest's balloon driver for a memory size; a running guest follows at once."""
    dev = _balloon(ctx)
    if value <= 0:
        raise GenericError("Parameter 'value' expects a size")
    # kept among the device's (string) properties, so that --state persists it like any other
    dev.props["_target"] = str(min(value, ctx.vm.ram_size))
    if ctx.vm.guest.present and ctx.vm.runstate == "running":
        dev.props["_actual"] = dev.props["_target"]
        ctx.vm.emit("BALLOON_CHANGE", {"actual": int(dev.props["_actual"])})


@command("query-balloon")
def query_balloon(ctx: Context) -> dict[str, object]:
    dev = _balloon(ctx)
    return {"actual": int(dev.props.get("_actual", ctx.vm.ram_size))}


@command("query-events")
def query_events(ctx: Context) -> object:
    """Every event the QEMU release can emit, as it lists them (removed in QEMU 6.0; served only by
    profiles of a release that has it: ``Release.extra_commands``)."""
    import json
    from ..machine.release import data_text
    return json.loads(data_text(ctx.vm.release, "events.json"))
