"""Real libvirt 9.0 drives cpuhot's guest agent: virsh guestvcpus, setvcpus --guest, vcpucount --guest,
guestinfo, hot-plug under each onlining mode, and an unresponsive agent, on x86 (pc) and pseries.

The domains have libvirt's usual agent channel (``<channel type='unix'>`` with target
``org.qemu.guest_agent.0``): libvirt passes ``-chardev socket,...`` + ``-device virtio-serial-pci`` +
``-device virtserialport,...,name=org.qemu.guest_agent.0`` and connects to the agent once
``VSERPORT_CHANGE`` (or ``query-chardev``'s ``frontend-open``) says the guest opened its port.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import EMULATORS
from .libvirtd import virsh

pytestmark = pytest.mark.libvirt

DOMAIN_NAMES = ("cpuhot-ga-pc", "cpuhot-ga-ppc")

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu placement='static' current='{current}'>{maximum}</vcpu>
  <os><type arch='{arch}' machine='{machine}'>hvm</type></os>
  <cpu><topology sockets='{maximum}' dies='1' cores='1' threads='1'/></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>{emulator}</emulator>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>{extra}</qemu:commandline>
</domain>
"""


def start(tmp_path, name, *, arch, machine, current, maximum, extra_args=()):
    extra = "".join(f"<qemu:arg value='{a}'/>" for a in extra_args)
    f = tmp_path / f"{name}.xml"
    f.write_text(DOMAIN.format(name=name, current=current, maximum=maximum, arch=arch, machine=machine,
                               emulator=EMULATORS[arch], extra=extra))
    virsh("define", str(f))
    virsh("start", "--paused", name)
    virsh("resume", name)            # the guest boots: qemu-ga opens its port (VSERPORT_CHANGE)
    wait_for(lambda: virsh("guestvcpus", name, check=False).returncode == 0, "the agent never connected")


def wait_for(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def guestvcpus(name) -> dict[str, str]:
    out = virsh("guestvcpus", name).stdout
    return dict(re.findall(r"^(\w+)[ \t]*:[ \t]*(\S*)", out, re.M))


def vcpucount_guest(name) -> int:
    return int(virsh("vcpucount", name, "--guest").stdout.strip())


def qmp(name, command: str, arguments: str = "{}") -> str:
    return virsh("qemu-monitor-command", name, f'{{"execute": "{command}", "arguments": {arguments}}}').stdout


def flows(tmp_path, name, *, arch, machine):
    start(tmp_path, name, arch=arch, machine=machine, current=2, maximum=4)
    assert guestvcpus(name) == {"vcpus": "0-1", "online": "0-1", "offlinable": "1"}
    assert vcpucount_guest(name) == 2
    # setvcpus --guest down and up (guest-get-vcpus, then guest-set-vcpus of what changes)
    virsh("setvcpus", name, "1", "--guest")
    assert vcpucount_guest(name) == 1
    assert guestvcpus(name)["online"] == "0"
    assert '"online":false' in qmp(name, "x-cpuhot-guest-cpus").replace(" ", "")      # QMP agrees
    virsh("setvcpus", name, "2", "--guest")
    assert guestvcpus(name)["online"] == "0-1"
    # vCPU 0 cannot go offline: libvirt reads can-offline and refuses by itself
    r = virsh("guestvcpus", name, "0", "--disable", check=False)
    assert r.returncode != 0 and "vCPU '0' is not offlinable" in r.stderr
    # hot-plug under each onlining mode
    virsh("setvcpus", name, "3", "--live")                       # udev (default): online at once
    assert vcpucount_guest(name) == 3
    qmp(name, "x-cpuhot-guest-agent", '{"onlining": "offline"}')
    virsh("setvcpus", name, "4", "--live")
    assert vcpucount_guest(name) == 3 and guestvcpus(name)["vcpus"] == "0-3"
    virsh("setvcpus", name, "4", "--guest")                      # the agent onlines it
    assert vcpucount_guest(name) == 4
    qmp(name, "x-cpuhot-guest-agent", '{"onlining": "delayed:1"}')
    virsh("setvcpus", name, "3", "--live")
    virsh("setvcpus", name, "4", "--live")
    assert vcpucount_guest(name) == 3
    wait_for(lambda: vcpucount_guest(name) == 4, "the delayed vCPU never came online", timeout=5)
    info = virsh("guestinfo", name).stdout
    assert re.search(r"^os\.id\s*:\s*debian$", info, re.M) and re.search(r"^timezone\.name\s*:\s*UTC$", info, re.M)
    assert re.search(rf"^hostname\s*:\s*{name}$", info, re.M)


def test_x86_pc(libvirtd, tmp_path):
    name = "cpuhot-ga-pc"
    flows(tmp_path, name, arch="x86_64", machine="pc")
    # an agent that stops answering: libvirt waits forever by default (seconds = -2, "block"
    # in its log), so a management stack sets a response timeout, and libvirt gives up after it
    qmp(name, "x-cpuhot-guest-agent", '{"mode": "never"}')
    virsh("guest-agent-timeout", name, "--timeout", "3")
    t = time.monotonic()
    r = virsh("guestvcpus", name, check=False, timeout=30)
    assert r.returncode != 0 and "Guest agent is not responding" in r.stderr, r.stderr
    assert time.monotonic() - t >= 2.5
    # the guest shuts down through the agent: the port closes, the domain goes away
    qmp(name, "x-cpuhot-guest-agent", '{"mode": "answering"}')
    virsh("shutdown", "--mode", "agent", name)
    wait_for(lambda: virsh("domstate", name).stdout.strip() == "shut off", "the guest did not shut down", 20)
    virsh("undefine", name)


def test_pseries(libvirtd, tmp_path):
    name = "cpuhot-ga-ppc"
    flows(tmp_path, name, arch="ppc64", machine="pseries")
    # a Windows-like guest: nothing offlinable, and libvirt refuses before asking the agent
    qmp(name, "x-cpuhot-guest-agent", '{"os": "windows"}')
    assert guestvcpus(name) == {"vcpus": "0-3", "online": "0-3", "offlinable": ""}
    r = virsh("setvcpus", name, "2", "--guest", check=False)
    assert r.returncode != 0 and "Cannot offline enough CPUs" in r.stderr, r.stderr
    assert vcpucount_guest(name) == 4
    virsh("destroy", name)
    virsh("undefine", name)
