"""Domain flows shared by the libvirt 9.0 and 11.3 tests: the same steps, through either daemon's virsh."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu placement='static' current='{current}'>{maximum}</vcpu>
  <os><type arch='{arch}' machine='{machine}'>hvm</type></os>
  <cpu><topology sockets='{sockets}' dies='{dies}' cores='{cores}' threads='{threads}'/></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>{extra}</qemu:commandline>
</domain>
"""

#: domains with vCPUs hot-plugged out of order (the highest slot first); ``unplug`` afterwards
PC = dict(arch="x86_64", machine="pc", memory=64, current=1, maximum=4, sockets=4, dies=1, cores=1, threads=1,
          extra_args=(), plug=["3", "1"], unplug="3", after=2, count=3)
Q35 = dict(arch="x86_64", machine="q35", memory=64, current=2, maximum=8, sockets=1, dies=2, cores=2, threads=2,
           extra_args=(), plug=["7", "4"], unplug="7", after=3, count=4)
PSERIES = dict(arch="ppc64", machine="pseries", memory=512, current=2, maximum=8, sockets=1, dies=1, cores=4,
               threads=2, extra_args=("--force-kvm",), plug=["6-7", "2-3"], unplug="6-7", after=4, count=6)


class Virsh:
    """One daemon's virsh (a callable like ``libvirtd.virsh``) and its emulators."""

    def __init__(self, run: Callable, emulators: dict[str, str]):
        self.run = run
        self.emulators = emulators

    def __call__(self, *args, check=True, timeout=120):
        return self.run(*args, check=check, timeout=timeout)

    def define(self, tmp_path: Path, name: str, cfg: dict) -> None:
        extra = "".join(f"<qemu:arg value='{a}'/>" for a in cfg["extra_args"])
        keys = ("memory", "current", "maximum", "arch", "machine", "sockets", "dies", "cores", "threads")
        xml = DOMAIN.format(name=name, emulator=self.emulators[cfg["arch"]], extra=extra, **{k: cfg[k] for k in keys})
        f = tmp_path / f"{name}.xml"
        f.write_text(xml)
        self("define", str(f))

    def start_plugged(self, tmp_path: Path, name: str, cfg: dict) -> None:
        self.define(tmp_path, name, cfg)
        self("start", name)
        for ids in cfg["plug"]:
            self("setvcpu", name, ids, "--enable", "--live")

    def state(self, name: str) -> str:
        return self("domstate", name).stdout.strip()

    def monitor(self, name: str, command: str):
        return json.loads(self("qemu-monitor-command", name, json.dumps({"execute": command})).stdout)["return"]

    def vcpu_view(self, name: str):
        """What must survive save, restore and migration: both queries (no host thread ids), libvirt's list."""
        fast = [{k: v for k, v in c.items() if k != "thread-id"} for c in self.monitor(name, "query-cpus-fast")]
        ids = re.findall(r"^VCPU:\s+(\d+)", self("vcpuinfo", name).stdout, re.M)
        return self.monitor(name, "query-hotpluggable-cpus"), fast, ids

    def vcpucount_live(self, name: str) -> int:
        return int(self("vcpucount", name, "--live", "--active").stdout.strip())

    def cleanup(self, names) -> None:
        for name in names:
            self("destroy", name, check=False)
            self("undefine", name, "--managed-save", check=False)


def save_restore_managedsave(v: Virsh, tmp_path: Path, name: str, cfg: dict) -> None:
    """virsh save/restore (the file's fd), then managedsave/start with --bypass-cache (a pipe to
    libvirt's I/O helper): the vCPUs survive both; unplug works after."""
    v.start_plugged(tmp_path, name, cfg)
    before = v.vcpu_view(name)
    assert len(before[1]) == len(before[2]) == cfg["count"]
    saved = tmp_path / f"{name}.save"
    v("save", name, str(saved))
    assert v.state(name) == "shut off"
    v("restore", str(saved))
    assert v.state(name) == "running"
    assert v.vcpu_view(name) == before
    # --bypass-cache: libvirt puts its I/O helper between QEMU and the file, so the fd is a pipe
    v("managedsave", "--bypass-cache", name)
    assert v.state(name) == "shut off"
    v("start", "--bypass-cache", name)            # from the managed save image
    assert v.state(name) == "running"
    assert v.vcpu_view(name) == before
    v("setvcpu", name, cfg["unplug"], "--disable", "--live")
    assert v.vcpucount_live(name) == cfg["after"]
    v("destroy", name)
    v("undefine", name, "--managed-save")


def restore_of_a_stream_naming_a_missing_vcpu(v: Virsh, tmp_path: Path, name: str) -> str:
    """Save a pc domain, make its stream name a vCPU (cpu-index 2) the domain never had, restore:
    QEMU's error comes back through libvirt.  Returns virsh's stderr."""
    v.start_plugged(tmp_path, name, PC)
    saved = tmp_path / f"{name}.save"
    v("save", name, str(saved))
    data = saved.read_bytes()
    marker = b'{"section": "cpu_common", "instance": 3,'
    assert marker in data
    extra = b'{"section": "cpu_common", "instance": 2, "state": {}}\n'
    saved.write_bytes(data.replace(marker, extra + marker, 1))
    r = v("restore", str(saved), check=False)
    print(f"virsh restore of the altered stream: {r.stderr.strip()}")
    assert r.returncode != 0
    assert ("Unknown savevm section or instance 'cpu_common' 2. Make sure that your current VM setup matches "
            "your saved VM setup, including any hotplugged devices") in r.stderr
    assert "load of migration failed: Invalid argument" in r.stderr
    assert v.state(name) == "shut off"
    v("undefine", name)
    return r.stderr
