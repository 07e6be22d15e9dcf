#!/usr/bin/env python3
"""NUMA-aware CPU hotplug: plug CPUs only into the free slots of one NUMA node.

``query-hotpluggable-cpus`` gives every slot's ``node-id`` (QEMU fixed it at start-up from
``-numa cpu``/``-numa node,cpus=`` or its default mapping), so a management stack that wants
more CPUs on node K picks the free slots whose ``props`` say ``node-id: K``, plugs them
(``device_add`` with those props, ``node-id`` included), and checks with
``query-cpus-fast`` (and HMP ``info numa``) where they landed.

Usage::

    python examples/numa_plug_into_node.py --qmp unix:/tmp/q.sock --node 1 --count 2
    python examples/numa_plug_into_node.py              # starts its own two-node cpuhot
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

#: the VM this example starts when no --qmp is given: 2 sockets, one NUMA node each
DEMO = dict(machine="q35", smp="2,maxcpus=8,sockets=2,cores=4", memory="1G",
            objects=["memory-backend-ram,id=m0,size=512M", "memory-backend-ram,id=m1,size=512M"],
            numa=["node,nodeid=0,memdev=m0", "node,nodeid=1,memdev=m1",
                  "cpu,node-id=0,socket-id=0", "cpu,node-id=1,socket-id=1"])


def free_slots_of_node(qmp: QMPClient, node: int) -> list[dict]:
    entries = reversed(qmp.execute("query-hotpluggable-cpus"))           # slot order
    return [e for e in entries if "qom-path" not in e and e["props"].get("node-id") == node]


def plug_into_node(qmp: QMPClient, node: int, count: int, log=print) -> list[str]:
    free = free_slots_of_node(qmp, node)
    if len(free) < count:
        raise ValueError(f"node {node} has {len(free)} free slot(s), {count} wanted")
    ids = []
    taken = {c["qom-path"] for c in qmp.execute("query-cpus-fast")}
    for n, e in enumerate(free[:count]):
        ident = f"node{node}-cpu{len(taken) + n}"
        log(f"device_add {e['type']} id={ident} {e['props']}")
        qmp.execute("device_add", {"driver": e["type"], "id": ident, **e["props"]})
        ids.append(ident)
    return ids


def cpus_by_node(qmp: QMPClient) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for c in qmp.execute("query-cpus-fast"):
        out.setdefault(c["props"].get("node-id"), []).append(c["cpu-index"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qmp", help="QMP monitor (unix:PATH or tcp:HOST:PORT); default: start a cpuhot")
    ap.add_argument("--node", type=int, default=1, help="the NUMA node to grow (default 1)")
    ap.add_argument("--count", type=int, default=2, help="how many hot-pluggable units to plug (default 2)")
    ns = ap.parse_args(argv)
    vm = None
    address = ns.qmp
    if address is None:
        import cpuhot
        vm = cpuhot.launch(**DEMO)
        address = vm.qmp_address
    try:
        with QMPClient(address) as qmp:
            print(f"vCPUs by node before: {cpus_by_node(qmp)}")
            ids = plug_into_node(qmp, ns.node, ns.count)
            after = cpus_by_node(qmp)
            print(f"vCPUs by node after:  {after}")
            print(qmp.hmp("info numa").replace("\r\n", "\n"), end="")
            fast = qmp.execute("query-cpus-fast")
            mine = [c for c in fast if any(c["qom-path"].startswith(f"/machine/peripheral/{i}") for i in ids)]
            return 0 if mine and all(c["props"].get("node-id") == ns.node for c in mine) else 1
    except (QMPError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if vm is not None:
            vm.stop()


if __name__ == "__main__":
    sys.exit(main())
