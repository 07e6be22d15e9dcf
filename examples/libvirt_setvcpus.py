#!/usr/bin/env python3
"""libvirt's ``virsh setvcpus DOMAIN N --live``, step by step, against any QMP server.

What libvirt (src/qemu/qemu_hotplug.c, qemu_monitor.c) does with a QEMU that has
``query-hotpluggable-cpus``:

1. ``query-hotpluggable-cpus`` and ``query-cpus-fast``; sort the hotpluggable entries by
   topology (socket, die, core, thread); every entry is a group of ``vcpus-count`` vCPUs,
   numbered in that order.  An entry is present when a ``query-cpus-fast`` vCPU has its
   ``qom-path`` (or a path below it, as sPAPR threads are).
2. To grow: plug the first absent entries in that order, ``device_add`` with the entry's
   ``type`` and ``props`` and the alias ``vcpuN`` (N: the entry's first vCPU number), and
   check after each that its vCPUs appeared in ``query-cpus-fast``.
3. To shrink: unplug the last hot-plugged entries first, ``device_del vcpuN``, and wait for
   ``DEVICE_DELETED`` (libvirt waits 5 s, then says the unplug must be inspected by hand).
   CPUs present at boot (no alias) are never unplugged.

Usage::

    python examples/libvirt_setvcpus.py --qmp unix:/tmp/q.sock --vcpus 6
    python examples/libvirt_setvcpus.py                  # starts its own cpuhot (cooperative guest)

Needs only the standard library and cpuhot's small QMP client.
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    from cpuhot.client import QMPClient, QMPError
except ImportError:                  # a fresh clone that was not installed: use its src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from cpuhot.client import QMPClient, QMPError

UNPLUG_TIMEOUT = 5.0                 # libvirt's qemuDomainWaitForDeviceRemoval


def topology_key(entry: dict) -> tuple:
    p = entry["props"]
    return (p.get("socket-id", 0), p.get("die-id", 0), p.get("core-id", 0), p.get("thread-id", 0))


def vcpu_groups(qmp: QMPClient) -> list[dict]:
    """libvirt's qemuMonitorGetCPUInfo: one group per hotpluggable entry, in topology order."""
    entries = sorted(qmp.execute("query-hotpluggable-cpus"), key=topology_key)
    cpus = qmp.execute("query-cpus-fast")
    groups, first = [], 0
    for e in entries:
        path = e.get("qom-path")
        present = [c for c in cpus if path and (c["qom-path"] == path or c["qom-path"].startswith(path + "/"))]
        alias = path.rsplit("/", 1)[1] if path and path.startswith("/machine/peripheral/") else None
        groups.append({"entry": e, "first": first, "count": e["vcpus-count"], "present": bool(present),
                       "alias": alias, "cpu-indexes": sorted(c["cpu-index"] for c in present)})
        first += e["vcpus-count"]
    return groups


def online(groups: list[dict]) -> int:
    return sum(g["count"] for g in groups if g["present"])


def set_vcpus(qmp: QMPClient, target: int, log=print) -> int:
    """Plug or unplug whole entries until ``target`` vCPUs are online; returns the new count."""
    groups = vcpu_groups(qmp)
    maximum = sum(g["count"] for g in groups)
    if not 0 < target <= maximum:
        raise ValueError(f"requested vcpus {target} is outside 1..{maximum}")
    while online(groups) < target:
        g = next(g for g in groups if not g["present"])
        if online(groups) + g["count"] > target:
            raise ValueError(f"target {target} does not fit the hotplug granularity ({g['count']} vCPUs per entry)")
        alias = f"vcpu{g['first']}"
        e = g["entry"]
        log(f"device_add {e['type']} id={alias} {e['props']}")
        qmp.execute("device_add", {"driver": e["type"], "id": alias, **e["props"]})
        groups = vcpu_groups(qmp)
        mine = next(x for x in groups if x["alias"] == alias)
        if not mine["present"] or len(mine["cpu-indexes"]) != g["count"]:
            raise RuntimeError(f"{alias}: query-cpus-fast does not show the new vCPUs")
        log(f"  {alias}: vCPUs {mine['cpu-indexes']} online")
    while online(groups) > target:
        pluggable = [g for g in groups if g["present"] and g["alias"]]
        if not pluggable:
            raise ValueError("only boot vCPUs are left: they cannot be unplugged")
        g = max(pluggable, key=lambda x: x["first"])
        if online(groups) - g["count"] < target:
            raise ValueError(f"target {target} does not fit the hotplug granularity ({g['count']} vCPUs per entry)")
        log(f"device_del id={g['alias']}")
        qmp.execute("device_del", {"id": g["alias"]})
        try:
            qmp.wait_event("DEVICE_DELETED", lambda ev: ev["data"].get("device") == g["alias"],
                           timeout=UNPLUG_TIMEOUT)
        except TimeoutError:
            raise RuntimeError("vcpu unplug request timed out. Unplug result must be manually inspected "
                               "in the domain") from None
        log(f"  DEVICE_DELETED {g['alias']}")
        groups = vcpu_groups(qmp)
    return online(groups)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qmp", help="QMP monitor (unix:PATH or tcp:HOST:PORT); default: start a cpuhot")
    ap.add_argument("--vcpus", type=int, action="append",
                    help="target vCPU count (repeatable: applied in turn); default: max, then back to boot")
    ns = ap.parse_args(argv)
    vm = None
    address = ns.qmp
    if address is None:
        import cpuhot
        vm = cpuhot.launch(machine="q35", smp="2,maxcpus=8,sockets=2,cores=2,threads=2", guest="cooperative")
        address = vm.qmp_address
    try:
        with QMPClient(address) as qmp:
            groups = vcpu_groups(qmp)
            boot = online(groups)
            targets = ns.vcpus or [sum(g["count"] for g in groups), boot]
            print(f"{online(groups)} of {sum(g['count'] for g in groups)} vCPUs online")
            for target in targets:
                print(f"setvcpus {target}")
                now = set_vcpus(qmp, target)
                print(f"{now} vCPUs online")
                if now != target:
                    return 1
    except (QMPError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if vm is not None:
            vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
