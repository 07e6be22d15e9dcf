"""Real libvirt 9.0 saves and restores cpuhot domains with out-of-order hot-plugged vCPUs.

What libvirt sends (recorded with QEMU 7.2 as the emulator, libvirtd's log, filter
``1:qemu.qemu_monitor``): ``virsh save`` = ``stop``, ``migrate-set-capabilities`` (all off),
``migrate-set-parameters {"max-bandwidth": 9223372036853727232}``, ``getfd {"fdname":
"migrate"}`` with the file over SCM_RIGHTS, ``migrate {"uri": "fd:migrate", "detach": true,
"resume": false}``, ``query-migrate`` until completed; ``virsh restore`` = QEMU started with
``-incoming defer`` and the file (or a pipe) as an inherited fd, ``device_add`` of each
hot-plugged vCPU in the saved order, ``migrate-incoming {"uri": "fd:25"}``, events
``MIGRATION`` setup/active/completed, then ``cont``.  ``managedsave`` + ``start`` is the same.

Each test checks that the restored domain has the same vCPUs (ids, qom-paths, cpu-index,
order in both queries) and that unplug works afterwards.  A saved file whose stream names a
vCPU the domain does not have fails the restore with QEMU's message, through libvirt.
"""

from __future__ import annotations

import json
import re

import pytest

from .libvirtd import Libvirtd, ensure_installed, virsh
from .test_virsh_e2e import EMULATORS, define, vcpucount_live

pytestmark = pytest.mark.libvirt

NAMES = ("cpuhot-save-pc", "cpuhot-save-ppc", "cpuhot-save-bad")


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    reason = ensure_installed()
    if reason:
        pytest.skip(f"!!! LIBVIRT END-TO-END TEST SKIPPED: {reason} !!!")
    daemon = Libvirtd(tmp_path_factory.mktemp("libvirtd"))
    daemon.configure()
    try:
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.start()
        yield daemon
    finally:
        for name in NAMES:
            virsh("destroy", name, check=False)
            virsh("undefine", name, "--managed-save", check=False)
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.restore()


def monitor(name: str, command: str):
    return json.loads(virsh("qemu-monitor-command", name, json.dumps({"execute": command})).stdout)["return"]


def vcpu_view(name: str):
    """What must survive: both queries without the host thread ids, and libvirt's vCPU list."""
    fast = [{k: v for k, v in c.items() if k != "thread-id"} for c in monitor(name, "query-cpus-fast")]
    ids = re.findall(r"^VCPU:\s+(\d+)", virsh("vcpuinfo", name).stdout, re.M)
    return monitor(name, "query-hotpluggable-cpus"), fast, ids


PC = dict(arch="x86_64", machine="pc", current=1, maximum=4, sockets=4, cores=1, threads=1,
          plug=["3", "1"], unplug="3", after=2, count=3)
PSERIES = dict(arch="ppc64", machine="pseries", memory=512, current=2, maximum=8, sockets=1, cores=4, threads=2,
               extra_args=("--force-kvm",), plug=["6-7", "2-3"], unplug="6-7", after=4, count=6)


def _plugged(tmp_path, name, cfg):
    cfg = dict(cfg)
    plug, unplug, after = cfg.pop("plug"), cfg.pop("unplug"), cfg.pop("after")
    cfg.pop("count")
    define(tmp_path, name, **cfg)
    virsh("start", name)
    for ids in plug:                                  # out of order: the highest slot first
        virsh("setvcpu", name, ids, "--enable", "--live")
    return unplug, after


@pytest.mark.parametrize("cfg", [PC, PSERIES], ids=["pc", "pseries-smt2"])
def test_save_restore_then_managedsave_start_then_unplug(libvirtd, tmp_path, cfg):
    name = "cpuhot-save-pc" if cfg["arch"] == "x86_64" else "cpuhot-save-ppc"
    unplug, after = _plugged(tmp_path, name, cfg)
    before = vcpu_view(name)
    assert len(before[1]) == len(before[2]) == cfg["count"]
    saved = tmp_path / f"{name}.save"
    virsh("save", name, str(saved))
    assert virsh("domstate", name).stdout.strip() == "shut off"
    virsh("restore", str(saved))
    assert virsh("domstate", name).stdout.strip() == "running"
    assert vcpu_view(name) == before
    virsh("managedsave", name)
    assert virsh("domstate", name).stdout.strip() == "shut off"
    virsh("start", name)                              # starts from the managed save image
    assert virsh("domstate", name).stdout.strip() == "running"
    assert vcpu_view(name) == before
    virsh("setvcpu", name, unplug, "--disable", "--live")
    assert vcpucount_live(name) == after
    virsh("destroy", name)
    virsh("undefine", name, "--managed-save")


def test_restore_of_a_stream_with_a_vcpu_the_domain_lacks_fails_with_qemus_error(libvirtd, tmp_path):
    name = "cpuhot-save-bad"
    cfg = dict(PC)
    _plugged(tmp_path, name, cfg)
    saved = tmp_path / f"{name}.save"
    virsh("save", name, str(saved))
    # the stream (after libvirt's header and XML) claims a vCPU at cpu-index 2 that the domain never had
    data = saved.read_bytes()
    marker = b'{"section": "cpu_common", "instance": 3,'
    assert marker in data
    extra = b'{"section": "cpu_common", "instance": 2, "state": {}}\n'
    saved.write_bytes(data.replace(marker, extra + marker, 1))
    r = virsh("restore", str(saved), check=False)
    print(r.stderr)
    assert r.returncode != 0
    assert ("Unknown savevm section or instance 'cpu_common' 2. Make sure that your current VM setup matches "
            "your saved VM setup, including any hotplugged devices") in r.stderr
    assert "load of migration failed: Invalid argument" in r.stderr
    assert virsh("domstate", name).stdout.strip() == "shut off"
    virsh("undefine", name)
