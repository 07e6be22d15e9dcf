"""Real libvirt 9.0 drives cpuhot: virsh setvcpus --live on x86 pc, q35 (dies) and pseries SMT.

Installs Debian's libvirt packages when missing (skipped loudly where that is impossible),
runs libvirtd directly with a test qemu.conf, and restores every system file it touched.
Each domain uses cpuhot's drop-in binary as ``<emulator>``.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import EMULATORS
from .libvirtd import virsh

pytestmark = pytest.mark.libvirt

DOMAIN_NAMES = ("cpuhot-pc", "cpuhot-q35", "cpuhot-ppc2", "cpuhot-ppc8", "cpuhot-stuck")

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu placement='static' current='{current}'>{maximum}</vcpu>
  <os><type arch='{arch}' machine='{machine}'>hvm</type></os>
  <cpu><topology sockets='{sockets}' dies='{dies}' cores='{cores}' threads='{threads}'/></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>{emulator}</emulator>
    {devices}
  </devices>
  <qemu:commandline>{extra}</qemu:commandline>
</domain>
"""


def define(tmp_path, name, *, arch="x86_64", machine="pc", memory=64, current, maximum, sockets, dies=1, cores,
           threads, extra_args=(), devices=""):
    extra = "".join(f"<qemu:arg value='{a}'/>" for a in extra_args)
    xml = DOMAIN.format(name=name, memory=memory, current=current, maximum=maximum, arch=arch, machine=machine,
                        sockets=sockets, dies=dies, cores=cores, threads=threads, emulator=EMULATORS[arch],
                        extra=extra, devices=devices)
    f = tmp_path / f"{name}.xml"
    f.write_text(xml)
    virsh("define", str(f))


def vcpucount_live(name) -> int:
    out = virsh("vcpucount", name, "--live", "--active").stdout.strip()
    return int(out)


def qmp(name, command: str) -> str:
    return virsh("qemu-monitor-command", name, "--pretty", command).stdout


def cycle(libvirtd, tmp_path, name, *, up, down, step, enable_ids, **domain):
    define(tmp_path, name, **domain)
    virsh("start", "--paused", name)
    assert virsh("domstate", name).stdout.strip() == "paused"
    virsh("setvcpus", name, str(up), "--live")
    assert vcpucount_live(name) == up
    info = virsh("vcpuinfo", name).stdout
    assert len(re.findall(r"^VCPU:", info, re.M)) == up
    # a libvirtd restart in the middle: the domain survives and hotplug still works
    libvirtd.restart()
    assert virsh("domstate", name).stdout.strip() == "paused"
    virsh("resume", name)
    assert virsh("domstate", name).stdout.strip() == "running"
    virsh("setvcpu", name, enable_ids, "--disable", "--live")
    assert vcpucount_live(name) == up - step
    virsh("setvcpu", name, enable_ids, "--enable", "--live")
    assert vcpucount_live(name) == up
    virsh("setvcpus", name, str(down), "--live")
    assert vcpucount_live(name) == down
    hot = qmp(name, '{"execute": "query-cpus-fast"}')
    assert hot.count('"cpu-index"') == down
    virsh("shutdown", name)          # system_powerdown; the cooperative guest powers off
    deadline = time.monotonic() + 20
    while virsh("domstate", name).stdout.strip() != "shut off":
        assert time.monotonic() < deadline, "the guest did not shut down"
        time.sleep(0.2)
    virsh("undefine", name)


def test_x86_pc(libvirtd, tmp_path):
    cycle(libvirtd, tmp_path, "cpuhot-pc", current=1, maximum=4, sockets=4, cores=1, threads=1,
          up=4, down=2, step=1, enable_ids="3")


def test_x86_q35_with_dies(libvirtd, tmp_path):
    # q35 without PCI devices: libvirt would otherwise add PCIe root ports and a DMI bridge
    cycle(libvirtd, tmp_path, "cpuhot-q35", machine="q35", current=2, maximum=8, sockets=1, dies=2, cores=2,
          threads=2, up=8, down=2, step=1, enable_ids="7",
          devices="<controller type='usb' model='none'/><memballoon model='none'/>")


@pytest.mark.parametrize("threads", [2, 8])
def test_pseries_smt(libvirtd, tmp_path, threads):
    cycle(libvirtd, tmp_path, f"cpuhot-ppc{threads}", arch="ppc64", machine="pseries", memory=512,
          current=threads, maximum=4 * threads, sockets=1, cores=4, threads=threads,
          up=3 * threads, down=threads, step=threads, enable_ids=f"{2 * threads}-{3 * threads - 1}",
          extra_args=("--force-kvm",))


def test_unresponsive_guest_times_out_and_vcpucount_stays_honest(libvirtd, tmp_path):
    name = "cpuhot-stuck"
    define(tmp_path, name, current=1, maximum=2, sockets=2, cores=1, threads=1,
           extra_args=("--guest", "unresponsive"))
    virsh("start", name)
    virsh("setvcpus", name, "2", "--live")
    t = time.monotonic()
    r = virsh("setvcpus", name, "1", "--live", check=False)
    assert r.returncode != 0 and "timed out" in r.stderr
    assert time.monotonic() - t >= 4.5                      # libvirt's own 5 s wait
    assert vcpucount_live(name) == 2
    virsh("shutdown", name)                                # system_powerdown: the guest never answers…
    virsh("destroy", name)
    virsh("undefine", name)
