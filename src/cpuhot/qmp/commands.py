"""The QMP commands cpuhot serves, each a small function over the machine model.

Handlers take a :class:`~cpuhot.qmp.protocol.CommandContext` and the
command's arguments, and return the ``return`` value (``None`` for ``{}``).
"""

from __future__ import annotations

from ..machine.cpu_models import cpu_definitions
from ..machine.errors import CommandNotFound, GenericError
from ..machine.machines import machine_table
from . import qapi
from .dispatch import Arg, Registry

COMMANDS = Registry()
command = COMMANDS.command


@command("qmp_capabilities", args=(Arg("enable", "enum-list", optional=True, enum=("oob",)),))
def qmp_capabilities(ctx, enable=None):
    """Leave capabilities-negotiation mode; ``enable: ["oob"]`` turns on out-of-band execution."""
    if ctx.session.negotiated:
        raise CommandNotFound("Capabilities negotiation is already complete, command ignored")
    ctx.session.oob = "oob" in (enable or [])
    ctx.session.negotiated = True


@command("query-hotpluggable-cpus", returns=list[qapi.HotpluggableCPU])
def query_hotpluggable_cpus(ctx):
    """One entry per possible CPU slot, highest slot first; ``qom-path`` when occupied."""
    return ctx.vm.query_hotpluggable_cpus()


@command("query-cpus-fast", returns=list[qapi.CpuInfoFast])
def query_cpus_fast(ctx):
    """Present vCPUs in creation order."""
    return ctx.vm.query_cpus_fast()


@command("query-cpus", returns=list[qapi.CpuInfo])
def query_cpus(ctx):
    """Legacy (QEMU <= 5.2): present vCPUs in cpu-index order with run state."""
    return ctx.vm.query_cpus()


@command("device_add", args=None)
def device_add(ctx, arguments):
    """Plug a CPU (x86 thread or sPAPR core) into a free slot."""
    ctx.vm.device_add(arguments)


@command("device_del", args=(Arg("id", "str"),))
def device_del(ctx, id):
    """Ask for a CPU's removal (completion depends on the guest)."""
    ctx.vm.device_del(id)


@command("cpu-add", args=(Arg("id", "int"),))
def cpu_add(ctx, id):
    """Legacy (QEMU <= 5.1): add the CPU whose cpu-index is ``id`` (sPAPR: the whole core)."""
    ctx.vm.cpu_add(id)


@command("query-status", returns=qapi.StatusInfo)
def query_status(ctx):
    return ctx.vm.query_status()


@command("query-version", returns=qapi.VersionInfo)
def query_version(ctx):
    return ctx.monitor.version_info()


@command("query-commands", returns=list[qapi.CommandInfo])
def query_commands(ctx):
    return [{"name": n} for n in ctx.monitor.served_commands()]


@command("query-target", returns=qapi.TargetInfo)
def query_target(ctx):
    return {"arch": ctx.vm.policy.target}


@command("query-machines", returns=list[qapi.MachineInfo])
def query_machines(ctx):
    return [m.to_qmp() for m in machine_table(ctx.vm.policy.arch)]


@command("query-cpu-definitions", returns=list[qapi.CpuDefinitionInfo])
def query_cpu_definitions(ctx):
    return [dict(d) for d in cpu_definitions(ctx.vm.policy.arch)]


@command("query-kvm", returns=qapi.KvmInfo)
def query_kvm(ctx):
    kvm = ctx.vm.accel == "kvm"
    # the x86_64 binary always has KVM support built in; ppc64 on an x86 host only when simulated
    return {"enabled": kvm, "present": kvm or ctx.vm.policy.arch == "x86_64"}


@command("query-name", returns=qapi.NameInfo)
def query_name(ctx):
    return {"name": ctx.vm.name} if ctx.vm.name is not None else {}


@command("query-uuid", returns=qapi.UuidInfo)
def query_uuid(ctx):
    return {"UUID": ctx.vm.uuid or "00000000-0000-0000-0000-000000000000"}


@command("cont")
def cont(ctx):
    ctx.vm.cont()


@command("stop")
def stop(ctx):
    ctx.vm.stop()


@command("system_reset")
def system_reset(ctx):
    ctx.vm.system_reset()


@command("system_powerdown")
def system_powerdown(ctx):
    ctx.vm.system_powerdown()


@command("quit")
def quit_(ctx):
    """Shut the simulator down: SHUTDOWN event, the reply, then the server exits."""
    ctx.vm.quit()
    ctx.monitor.quit_requested = True


@command("migrate-pause", allow_oob=True)
def migrate_pause(ctx):
    """Pause a postcopy migration; cpuhot never runs postcopy, so this is always QEMU's refusal."""
    raise GenericError("migrate-pause is currently only supported during postcopy-active state")


@command("qom-get", args=(Arg("path", "str"), Arg("property", "str")))
def qom_get(ctx, path, property):
    """Read a property of a CPU device (``apic-id``, ``core-id``, ``node-id``, ``type``, ...)."""
    return ctx.vm.qom_get(path, property)


@command("qom-list", args=(Arg("path", "str"),))
def qom_list(ctx, path):
    """Children of ``/machine/peripheral``, ``/machine/peripheral-anon`` (and the CPUs of
    ``/machine/unattached``), or the properties of a CPU device."""
    return ctx.vm.qom_list(path)


@command("human-monitor-command", args=(Arg("command-line", "str"), Arg("cpu-index", "int", optional=True)))
def human_monitor_command(ctx, command_line, cpu_index=None):
    """Run an HMP command (``info hotpluggable-cpus``, ``info cpus``, ``info numa``, ``device_add``,
    ``device_del``, ``cpu-add``) and return its text."""
    from .hmp import run
    return run(ctx, command_line)
