"""The human monitor, as ``human-monitor-command`` runs it: QEMU 7.2's texts for CPU hotplug.

Supported: ``info hotpluggable-cpus``, ``info cpus``, ``info numa``, ``info status``,
``info version``, ``info kvm``, ``info name``, ``info uuid``, ``stop``/``s``, ``cont``/``c``,
``help``/``?`` (QEMU 7.2's text, recorded: ``tools/record_cli_texts.py``), ``device_add``,
``device_del`` and (where the profile has it) ``cpu-add``.  Each was checked against a live
QEMU 7.2 through ``human-monitor-command``.  Output lines end in
``\\r\\n`` as QEMU's monitor writes them; errors read ``Error: <text>``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..machine.errors import QMPError
from ..machine.vm import VirtualMachine
from .context import Context
from ..machine.options import OptionError, parse_option_string

_PROP_ORDER = ("node-id", "drawer-id", "book-id", "socket-id", "die-id", "cluster-id", "module-id", "core-id", "thread-id")


def info_hotpluggable_cpus(vm: VirtualMachine) -> str:
    lines = ["Hotpluggable CPUs:"]
    for e in vm.query_hotpluggable_cpus():
        lines.append(f'  type: "{e["type"]}"')
        lines.append(f'  vcpus_count: "{e["vcpus-count"]}"')
        if "qom-path" in e:
            lines.append(f'  qom_path: "{e["qom-path"]}"')
        lines.append("  CPUInstance Properties:")
        for key in _PROP_ORDER:
            if key in e["props"]:
                lines.append(f'    {key}: "{e["props"][key]}"')
    return "\n".join(lines) + "\n"


def info_cpus(vm: VirtualMachine) -> str:
    out = []
    cpus = vm.query_cpus_fast()
    current = cpus[0]["cpu-index"] if cpus else None
    for c in cpus:
        mark = "*" if c["cpu-index"] == current else " "
        out.append(f"{mark} CPU #{c['cpu-index']}: thread_id={c['thread-id']}\n")
    return "".join(out)


def info_numa(vm: VirtualMachine) -> str:
    state = vm.numa_state
    count = state.num_nodes if state is not None else 0
    out = [f"{count} nodes\n"]
    cpus = vm.query_cpus_fast()
    for i in range(count):
        assert state is not None            # count > 0
        members = "".join(f" {c['cpu-index']}" for c in cpus if c["props"].get("node-id") == i)
        mem = state.nodes[i].mem if i in state.nodes else 0
        out.append(f"node {i} cpus:{members}\n")
        out.append(f"node {i} size: {mem >> 20} MB\n")
        out.append(f"node {i} plugged: 0 MB\n")
    return "".join(out)


def info_status(ctx: Context) -> str:
    # hmp_info_status: "VM status: running|paused", then " (STATE)" unless the state is plain paused
    st = ctx.vm.query_status()
    text = "VM status: " + ("running" if st["running"] else "paused")
    if not st["running"] and st["status"] != "paused":
        text += f" ({st['status']})"
    return text + "\n"


def info_version(ctx: Context) -> str:
    v = ctx.monitor.version_info()
    q = v["qemu"]
    return f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n"     # QEMU puts no space between


def info_kvm(ctx: Context) -> str:
    # what query-kvm says (commands.query_kvm): the x86_64 binary always has KVM built in
    enabled = ctx.vm.accel == "kvm"
    if not (enabled or ctx.vm.policy.arch == "x86_64"):
        return "kvm support: not compiled\n"
    return "kvm support: " + ("enabled" if enabled else "disabled") + "\n"


def info_name(ctx: Context) -> str:
    return f"{ctx.vm.name}\n" if ctx.vm.name is not None else ""


def info_uuid(ctx: Context) -> str:
    return f"{ctx.vm.uuid or '00000000-0000-0000-0000-000000000000'}\n"


def help_text(ctx: Context, topic: str = "") -> str:
    """``help`` as QEMU 7.2 prints it (recorded); ``help NAME``: the lines of that command."""
    from ..machine.release import data_text
    # recorded with QEMU's CRLF line ends (every line: data_text reads them back as "\n")
    text = _crlf(data_text(ctx.vm.release, f"hmp-help-{ctx.vm.policy.arch}.txt"))
    if not topic:
        return text
    lines = [line for line in text.split("\r\n") if line and topic in line.split(" ", 1)[0].split("|")]
    return "".join(f"{line}\r\n" for line in lines)


#: commands without arguments: name -> (the name QEMU's messages use, handler)
_NO_ARGS_INFO: dict[str, Callable[[Context], str]] = {"status": info_status, "version": info_version, "kvm": info_kvm, "name": info_name,
                 "uuid": info_uuid}
_NO_ARGS = {"stop": "stop|s", "s": "stop|s", "cont": "cont|c", "c": "cont|c"}


def _extraneous(shown: str, help_topic: str) -> str:
    return _crlf(f"{shown}: extraneous characters at the end of line\n"
                 f'Try "help {help_topic}" for more information\n')


def run(ctx: Context, command_line: str) -> str:
    """Execute one HMP command line; return its output as QEMU's monitor prints it."""
    text = command_line.strip()
    if not text:
        return ""
    name, _, rest = text.partition(" ")
    rest = rest.strip()
    vm = ctx.vm
    try:
        if name == "info" and rest.split(" ", 1)[0] in _NO_ARGS_INFO:
            what, _, extra = rest.partition(" ")
            if extra.strip():
                return _extraneous(what, f"info {what}")
            return _crlf(_NO_ARGS_INFO[what](ctx))
        if name in _NO_ARGS:
            shown = _NO_ARGS[name]
            if rest:
                return _extraneous(shown, shown.split("|")[0])
            if shown == "stop|s":
                vm.stop()
            else:
                vm.cont()
            return ""
        if name in ("help", "?"):
            return help_text(ctx, rest.split(" ", 1)[0] if rest else "")
        if name == "info":
            what = rest.split(" ", 1)[0]
            infos: dict[str, Callable[[VirtualMachine], str]] = {"hotpluggable-cpus": info_hotpluggable_cpus, "cpus": info_cpus, "numa": info_numa}
            if what not in infos:
                return _crlf(f"unknown command: '{text}'\n")
            return _crlf(infos[what](vm))
        if name == "device_add":
            try:
                pairs = parse_option_string(rest, implied="driver")
            except OptionError as e:
                return _crlf(f"Error: {e}\n")
            vm.device_add(dict(pairs))
            return ""
        if name == "device_del":
            vm.device_del(rest)
            return ""
        if name in ("cpu-add", "cpu_add") and ctx.monitor.profile.serves("cpu-add"):
            try:
                cpu_id = int(rest, 0)
            except ValueError:
                return _crlf("Error: Parameter 'id' expects an integer\n")
            vm.cpu_add(cpu_id)
            return ""
    except QMPError as e:
        return _crlf(f"Error: {e.desc}\n")
    return _crlf(f"unknown command: '{text}'\n")


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")
