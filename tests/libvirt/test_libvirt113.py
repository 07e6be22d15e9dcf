"""Real libvirt 11.3 (Debian 13, in the QEMU 10.0 chroot) drives cpuhot: the 9.0 tests' flows.

define, start, setvcpus up and down, setvcpu, vcpuinfo and a libvirtd restart on pc, q35 and
pseries SMT; save/restore and managedsave/start with out-of-order hot-plugged vCPUs on pc and
pseries, unplug afterwards; a stream naming a vCPU the domain lacks fails with QEMU's error.
The daemon runs beside the host's (its own root, sockets and host UUID; see libvirtd113.py).
"""

from __future__ import annotations

import re

import pytest

from .flows import PC, PSERIES, Q35, Virsh, restore_of_a_stream_naming_a_missing_vcpu, save_restore_managedsave
from .libvirtd113 import EMULATORS, Libvirtd113, ensure_installed, virsh113

pytestmark = pytest.mark.libvirt

NAMES = ("c113-pc", "c113-q35", "c113-ppc", "c113-save-pc", "c113-save-ppc", "c113-bad")


@pytest.fixture(scope="module")
def daemon113(tmp_path_factory):
    reason = ensure_installed()
    if reason:
        pytest.skip(f"!!! LIBVIRT 11.3 TEST SKIPPED: {reason} !!!")
    daemon = Libvirtd113(tmp_path_factory.mktemp("libvirtd113"))
    daemon.configure()
    v = Virsh(virsh113, EMULATORS)
    try:
        daemon.start()
        yield daemon, v
    finally:
        v.cleanup(NAMES)
        daemon.restore()


@pytest.mark.parametrize("name,cfg,up,down", [("c113-pc", PC, 4, 2), ("c113-q35", Q35, 8, 2),
                                              ("c113-ppc", PSERIES, 6, 2)], ids=["pc", "q35-dies", "pseries-smt2"])
def test_setvcpus_setvcpu_vcpuinfo_restart(daemon113, tmp_path, name, cfg, up, down):
    daemon, v = daemon113
    v.define(tmp_path, name, cfg)
    v("start", "--paused", name)
    v("setvcpus", name, str(up), "--live")
    assert v.vcpucount_live(name) == up
    assert len(re.findall(r"^VCPU:", v("vcpuinfo", name).stdout, re.M)) == up
    daemon.restart()
    assert v.state(name) == "paused"
    v("resume", name)
    step = cfg["threads"] if cfg["arch"] == "ppc64" else 1
    last = f"{up - step}-{up - 1}" if step > 1 else str(up - 1)
    v("setvcpu", name, last, "--disable", "--live")
    assert v.vcpucount_live(name) == up - step
    v("setvcpu", name, last, "--enable", "--live")
    assert v.vcpucount_live(name) == up
    v("setvcpus", name, str(down), "--live")
    assert v.vcpucount_live(name) == down
    v("destroy", name)
    v("undefine", name)


@pytest.mark.parametrize("cfg", [PC, PSERIES], ids=["pc", "pseries-smt2"])
def test_save_restore_then_managedsave_start_then_unplug(daemon113, tmp_path, cfg):
    save_restore_managedsave(daemon113[1], tmp_path, "c113-save-pc" if cfg is PC else "c113-save-ppc", cfg)


def test_restore_of_a_stream_with_a_vcpu_the_domain_lacks_fails_with_qemus_error(daemon113, tmp_path):
    restore_of_a_stream_naming_a_missing_vcpu(daemon113[1], tmp_path, "c113-bad")
