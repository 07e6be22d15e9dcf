"""Real libvirt 9.0 runs ``cpuhot-system-s390x`` as the emulator of a ``type='qemu'`` s390x domain.

The flow libvirt users have on IBM Z: libvirt probes the binary, starts the domain, ``virsh setvcpus
--live`` plugs CPUs (``device_add qemu-s390x-cpu,core-id=N``), ``vcpucount``/``vcpuinfo`` report
them, and an unplug attempt comes back with QEMU's own refusal (``CPU hot unplug not supported on
this machine``, as QEMU 5.2, 7.2 and 10.0 answer) while libvirt's counts stay where they were.
Uses the shared harness (:mod:`.libvirtd`), which restores everything it touched.
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import EMULATORS
from .libvirtd import virsh

pytestmark = pytest.mark.libvirt

EMULATOR = EMULATORS["s390x"]
NAME = "cpuhot-s390x"
DOMAIN_NAMES = (NAME,)

DOMAIN = f"""<domain type='qemu'>
  <name>{NAME}</name>
  <memory unit='MiB'>256</memory>
  <vcpu placement='static' current='1'>4</vcpu>
  <os><type arch='s390x' machine='s390-ccw-virtio'>hvm</type></os>
  <cpu><topology sockets='1' dies='1' cores='4' threads='1'/></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>{EMULATOR}</emulator>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def vcpucount(which: str) -> int:
    return int(virsh("vcpucount", NAME, which, "--active" if which == "--live" else "--config").stdout.strip())


def qmp(command: dict):
    out = virsh("qemu-monitor-command", NAME, json.dumps(command)).stdout
    return json.loads(out)["return"]


def test_s390x_setvcpus_up_and_unplug_refused(libvirtd, tmp_path):
    xml = tmp_path / f"{NAME}.xml"
    xml.write_text(DOMAIN)
    virsh("define", str(xml))
    virsh("start", NAME)
    assert virsh("domstate", NAME).stdout.strip() == "running"

    virsh("setvcpus", NAME, "3", "--live")
    assert vcpucount("--live") == 3
    info = virsh("vcpuinfo", NAME).stdout
    assert re.findall(r"^VCPU:\s+(\d+)", info, re.M) == ["0", "1", "2"]
    cpus = qmp({"execute": "query-cpus-fast"})
    assert [(c["cpu-index"], c["props"], c["target"]) for c in cpus] == [
        (0, {"core-id": 0}, "s390x"), (1, {"core-id": 1}, "s390x"), (2, {"core-id": 2}, "s390x")]
    hot = qmp({"execute": "query-hotpluggable-cpus"})
    assert [e["props"]["core-id"] for e in hot if "qom-path" in e] == [2, 1, 0]
    assert {e["type"] for e in hot} == {"qemu-s390x-cpu"}

    r = virsh("setvcpus", NAME, "2", "--live", check=False)
    assert r.returncode != 0
    assert "CPU hot unplug not supported on this machine" in r.stderr
    assert vcpucount("--live") == 3                    # nothing was lost, nothing pretended
    assert len(re.findall(r"^VCPU:", virsh("vcpuinfo", NAME).stdout, re.M)) == 3
    assert len(qmp({"execute": "query-cpus-fast"})) == 3

    virsh("setvcpus", NAME, "4", "--live")             # the monitor and the domain are still usable
    assert vcpucount("--live") == 4
    virsh("destroy", NAME)
    virsh("undefine", NAME)
