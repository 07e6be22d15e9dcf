"""The human monitor, as ``human-monitor-command`` runs it: QEMU 7.2's texts for CPU hotplug.

Supported: ``info hotpluggable-cpus``, ``info cpus``, ``info numa``, ``device_add``,
``device_del`` and (where the profile has it) ``cpu-add``.  Output lines end in
``\\r\\n`` as QEMU's monitor writes them; errors read ``Error: <text>``.
"""

from __future__ import annotations

from ..machine.errors import QMPError
from ..machine.options import OptionError, parse_option_string

_PROP_ORDER = ("node-id", "drawer-id", "book-id", "socket-id", "die-id", "cluster-id", "core-id", "thread-id")


def info_hotpluggable_cpus(vm) -> str:
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


def info_cpus(vm) -> str:
    out = []
    cpus = vm.query_cpus_fast()
    current = cpus[0]["cpu-index"] if cpus else None
    for c in cpus:
        mark = "*" if c["cpu-index"] == current else " "
        out.append(f"{mark} CPU #{c['cpu-index']}: thread_id={c['thread-id']}\n")
    return "".join(out)


def info_status(vm) -> str:
    """``info status``: ``running``, or ``paused (REASON)`` with the run state as reason."""
    if vm.runstate == "running":
        return "VM status: running\n"
    return f"VM status: paused ({vm.runstate})\n"


def info_numa(vm) -> str:
    state = vm.numa_state
    count = state.num_nodes if state is not None else 0
    out = [f"{count} nodes\n"]
    cpus = vm.query_cpus_fast()
    for i in range(count):
        members = "".join(f" {c['cpu-index']}" for c in cpus if c["props"].get("node-id") == i)
        mem = state.nodes[i].mem if i in state.nodes else 0
        out.append(f"node {i} cpus:{members}\n")
        out.append(f"node {i} size: {mem >> 20} MB\n")
        out.append(f"node {i} plugged: 0 MB\n")
    return "".join(out)


def run(ctx, command_line: str) -> str:
    """Execute one HMP command line; return its output as QEMU's monitor prints it."""
    text = command_line.strip()
    if not text:
        return ""
    name, _, rest = text.partition(" ")
    rest = rest.strip()
    vm = ctx.vm
    try:
        if name == "info":
            what = rest.split(" ", 1)[0]
            infos = {"hotpluggable-cpus": info_hotpluggable_cpus, "cpus": info_cpus, "numa": info_numa,
                     "status": info_status}
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
                return _crlf(f"Error: Parameter 'id' expects an integer\n")
            vm.cpu_add(cpu_id)
            return ""
    except QMPError as e:
        return _crlf(f"Error: {e.desc}\n")
    return _crlf(f"unknown command: '{text}'\n")


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")
