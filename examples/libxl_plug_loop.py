#!/usr/bin/env python3
"""A Xen-libxl-style vCPU plug loop (``xl vcpu-set DOMAIN N``), against any QMP server.

libxl (tools/libs/light/libxl_domain.c, ``libxl_set_vcpuonline``) brings the vCPUs of an
HVM guest whose device model is upstream QEMU online like this:

1. ask QEMU which vCPUs exist (``query-cpus-fast``: their ``cpu-index``);
2. for every vCPU number ``i`` of the requested map, in increasing order, that QEMU does
   not have yet: plug it, with the id ``cpu-<i>``: ``device_add`` of the hotpluggable
   entry for vCPU ``i`` (``query-hotpluggable-cpus``, slot order), or with ``--legacy``
   the old ``cpu-add id=i`` (QEMU <= 5.1; cpuhot's default profile still serves it);
3. stop at the first error: libxl reports it and leaves the vCPUs plugged so far.

libxl never asks QEMU to unplug: lowering the count only takes vCPUs offline in the guest.

Usage::

    python examples/libxl_plug_loop.py --qmp unix:/tmp/q.sock --vcpus 4
    python examples/libxl_plug_loop.py                   # starts its own cpuhot
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


def online_vcpus(qmp: QMPClient) -> set[int]:
    return {c["cpu-index"] for c in qmp.execute("query-cpus-fast")}


def plug_loop(qmp: QMPClient, wanted: list[int], *, legacy: bool = False, log=print) -> list[int]:
    """Plug each wanted vCPU that is missing, in order; returns those plugged.  Raises QMPError."""
    present = online_vcpus(qmp)
    slots = list(reversed(qmp.execute("query-hotpluggable-cpus")))       # slot order = vCPU order
    plugged = []
    for i in sorted(wanted):
        if i in present:
            continue
        if legacy:
            log(f"cpu-add id={i}")
            qmp.execute("cpu-add", {"id": i})
        else:
            e = slots[i]
            log(f"device_add {e['type']} id=cpu-{i} {e['props']}")
            qmp.execute("device_add", {"driver": e["type"], "id": f"cpu-{i}", **e["props"]})
        plugged.append(i)
        present = online_vcpus(qmp)
        if i not in present:
            raise QMPError("GenericError", f"vCPU {i} did not come online")
    return plugged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qmp", help="QMP monitor (unix:PATH or tcp:HOST:PORT); default: start a cpuhot")
    ap.add_argument("--vcpus", type=int, default=None, help="vCPUs 0..N-1 online (default: all)")
    ap.add_argument("--legacy", action="store_true", help="use cpu-add (QEMU <= 5.1) instead of device_add")
    ns = ap.parse_args(argv)
    vm = None
    address = ns.qmp
    if address is None:
        import cpuhot
        vm = cpuhot.launch(machine="pc", smp="1,maxcpus=4")
        address = vm.qmp_address
    try:
        with QMPClient(address) as qmp:
            total = len(qmp.execute("query-hotpluggable-cpus"))
            count = total if ns.vcpus is None else ns.vcpus
            print(f"vCPUs online before: {sorted(online_vcpus(qmp))}")
            plugged = plug_loop(qmp, list(range(count)), legacy=ns.legacy)
            after = sorted(online_vcpus(qmp))
            print(f"plugged {plugged}; vCPUs online after: {after}")
            return 0 if set(range(count)) <= set(after) else 1
    except QMPError as e:
        print(f"libxl: error: {e}", file=sys.stderr)
        return 1
    finally:
        if vm is not None:
            vm.stop()


if __name__ == "__main__":
    sys.exit(main())
