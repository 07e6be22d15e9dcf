"""QMP commands of cpuhot's tools (``x-cpuhot-topology`` ...), registered on the same registry."""

from __future__ import annotations

from typing import Any

from ..machine.slots import CpuSlot
from ..machine.vm import VirtualMachine
from .context import Context
from .registry import command


def slot_state(slot: CpuSlot) -> str:
    """``present``, ``empty`` or ``pending-unplug`` (device_del accepted, the guest has not ejected)."""
    if slot.cpu is None:
        return "empty"
    return "pending-unplug" if slot.cpu.unplug_requested else "present"


def _coordinates(vm: VirtualMachine, slot: CpuSlot) -> tuple[int, int, int, int | None]:
    """(socket, die, core, thread) of a slot; thread is None where a slot is a whole core (sPAPR)."""
    t = vm.topology
    if slot.vcpus_count == 1 and "thread-id" in slot.props:
        p = slot.props
        return p.get("socket-id", 0), p.get("die-id", 0), p.get("core-id", 0), p["thread-id"]
    per_socket = max(1, t.dies * t.cores)
    i = slot.index
    return i // per_socket, (i // max(1, t.cores)) % max(1, t.dies), i % max(1, t.cores), None


def describe_slot(vm: VirtualMachine, slot: CpuSlot) -> dict[str, Any]:
    show_node = vm.props_show_node
    entry: dict[str, Any] = {"slot": slot.index, "state": slot_state(slot), "type": slot.type,
                   "vcpus-count": slot.vcpus_count, "arch-id": slot.arch_id,
                   "props": slot.qmp_props(show_node)}
    if slot.node_id is not None:
        entry["node-id"] = slot.node_id
    cpu = slot.cpu
    if cpu is not None:
        entry["qom-path"] = cpu.qom_path
        if cpu.id is not None:
            entry["id"] = cpu.id
        indexes = [v.cpu_index for v in cpu.vcpus]
        if indexes:
            entry["cpu-index"] = indexes[0]
            entry["cpu-indexes"] = indexes
        entry["hotplugged"] = cpu.hotplugged
    return entry


def topology_tree(vm: VirtualMachine) -> dict[str, Any]:
    """The machine as a tree: sockets -> dies -> cores -> slots (threads on x86, cores on sPAPR)."""
    t = vm.topology
    sockets: dict[int, dict[str, Any]] = {}
    counts = {"present": 0, "empty": 0, "pending-unplug": 0}
    granularity = "thread"
    for slot in vm.slots:
        s, d, c, thread = _coordinates(vm, slot)
        if thread is None:
            granularity = "core"
        entry = describe_slot(vm, slot)
        counts[entry["state"]] += 1
        sock = sockets.setdefault(s, {"socket-id": s, "dies": {}})
        die = sock["dies"].setdefault(d, {"die-id": d, "cores": {}})
        core = die["cores"].setdefault(c, {"core-id": c, "slots": []})
        core["slots"].append(entry)
    tree_sockets = []
    for s in sorted(sockets):
        dies = []
        for d in sorted(sockets[s]["dies"]):
            cores = [sockets[s]["dies"][d]["cores"][c] for c in sorted(sockets[s]["dies"][d]["cores"])]
            for core in cores:
                core["slots"].sort(key=lambda e: e["slot"])
            dies.append({"die-id": d, "cores": cores})
        tree_sockets.append({"socket-id": s, "dies": dies})
    topo = {"sockets": t.sockets, "dies": t.dies, "clusters": getattr(t, "clusters", 1), "cores": t.cores,
            "threads": t.threads, "cpus": t.cpus, "max-cpus": t.max_cpus} if t is not None else {}
    out = {"machine": vm.machine.name, "arch": vm.policy.arch, "topology": topo, "granularity": granularity,
           "vcpus": len(vm.vcpus), "counts": counts, "sockets": tree_sockets}
    if vm.numa_enabled and vm.numa_state is not None:      # numa_enabled: it is not None
        out["numa-nodes"] = vm.numa_state.num_nodes
    return out


@command("x-cpuhot-topology")
def x_cpuhot_topology(ctx: Context) -> dict[str, Any]:
    """The CPU topology as a tree: ``sockets`` -> ``dies`` -> ``cores`` -> ``slots`` (one per
    hot-pluggable unit: an x86 thread, an sPAPR core), each slot with its ``state``
    (``present``, ``empty``, ``pending-unplug``), ``cpu-index``, ``arch-id``, ``qom-path``,
    ``id`` and ``node-id``.  ``python -m cpuhot show`` draws it."""
    return topology_tree(ctx.vm)
