"""Save/restore, managedsave/start and live migration of cpuhot domains with out-of-order
hot-plugged vCPUs, through real libvirt 9.0 (the host's) and 11.3 (Debian 13, in the QEMU 10.0
chroot), and live migration between the two, both ways.

One pair of daemons serves the whole module (each cold start probes every QEMU binary, ~15 s).

What libvirt sends (recorded with QEMU 7.2 as the emulator, libvirtd's log, filter
``1:qemu.qemu_monitor``):

* ``virsh save`` / ``managedsave``: ``stop``, ``migrate-set-capabilities`` (all off),
  ``migrate-set-parameters {"max-bandwidth": 9223372036853727232}``, ``getfd {"fdname":
  "migrate"}`` with the file over SCM_RIGHTS, ``migrate {"uri": "fd:migrate", "detach": true,
  "resume": false}``, ``query-migrate`` until completed.
* ``virsh restore`` / ``start`` of a managed save: QEMU started with ``-incoming defer`` and the
  file (or a pipe) as an inherited fd, ``device_add`` of each hot-plugged vCPU in the saved
  order, ``migrate-incoming {"uri": "fd:25"}``, ``MIGRATION`` setup/active/completed, ``cont``.
* ``virsh migrate --live``: the target is started with ``-incoming defer``, gets
  ``migrate-set-capabilities``, ``migrate-set-parameters`` (libvirt 11.3 sends every parameter
  it read with ``query-migrate-parameters``), ``device_add`` of the hot-plugged vCPUs, then
  ``migrate-incoming {"uri": "tcp:[::]:49152"}``; the source gets ``migrate`` to
  ``tcp:127.0.0.1:49152`` (``--migrateuri tcp://127.0.0.1``: no host name is resolved).
  ``--xml`` gives the other root's emulator path; libvirt's ABI check keeps the rest.

After each step the domain has the same vCPUs (ids, qom-paths, cpu-index, order in both queries,
libvirt's list) and a vCPU unplugs.  A saved stream naming a vCPU the domain lacks fails the
restore with QEMU's error, through libvirt (libvirt's own ABI check stops a target XML without
a hot-plugged vCPU before QEMU ever sees it).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from .flows import PC, PSERIES, Q35, Virsh, restore_of_a_stream_naming_a_missing_vcpu, save_restore_managedsave
from .conftest import EMULATORS as EMULATORS_90
from .libvirtd import Libvirtd, virsh
from .libvirtd113 import EMULATORS as EMULATORS_113
from .libvirtd113 import Libvirtd113, uri, virsh113
from .libvirtd113 import ensure_installed as ensure_113

pytestmark = pytest.mark.libvirt

NAMES = ("v90-save-pc", "v90-save-ppc", "v90-bad", "c113-pc", "c113-q35", "c113-ppc", "c113-save-pc",
         "c113-save-ppc", "c113-bad", "mig-pc", "mig-ppc")


@pytest.fixture(scope="module")
def daemons(host_libvirtd: Libvirtd, tmp_path_factory):
    why = ensure_113()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"libvirt 11.3 cannot run: {why}")
        pytest.skip(f"!!! LIBVIRT 11.3 TEST SKIPPED: {why} !!!")
    host = host_libvirtd                # the host's lock is held first, then 11.3's (always in this order)
    chroot = Libvirtd113(tmp_path_factory.mktemp("libvirtd113"))
    v90, v113 = Virsh(virsh, EMULATORS_90), Virsh(virsh113, EMULATORS_113)
    try:
        chroot.configure()
        chroot.start()
        yield {"9.0": (host, v90), "11.3": (chroot, v113)}
    finally:
        v90.cleanup(NAMES)
        v113.cleanup(NAMES)
        chroot.restore()


PREFIX = {"9.0": "v90", "11.3": "c113"}


# -- save / restore, managedsave / start (both releases) ------------------------------------

@pytest.mark.parametrize("release", ["9.0", "11.3"])
@pytest.mark.parametrize("cfg", [PC, PSERIES], ids=["pc", "pseries-smt2"])
def test_save_restore_then_managedsave_start_then_unplug(daemons, tmp_path, release, cfg):
    _, v = daemons[release]
    save_restore_managedsave(v, tmp_path, f"{PREFIX[release]}-save-{'pc' if cfg is PC else 'ppc'}", cfg)


@pytest.mark.parametrize("release", ["9.0", "11.3"])
def test_restore_of_a_stream_with_a_vcpu_the_domain_lacks_fails_with_qemus_error(daemons, tmp_path, release):
    _, v = daemons[release]
    restore_of_a_stream_naming_a_missing_vcpu(v, tmp_path, f"{PREFIX[release]}-bad")


# -- libvirt 11.3: the 9.0 end-to-end test's steps ------------------------------------------

@pytest.mark.parametrize("name,cfg,up,down", [("c113-pc", PC, 4, 2), ("c113-q35", Q35, 8, 2),
                                              ("c113-ppc", PSERIES, 6, 2)], ids=["pc", "q35-dies", "pseries-smt2"])
def test_libvirt113_setvcpus_setvcpu_vcpuinfo_restart(daemons, tmp_path, name, cfg, up, down):
    daemon, v = daemons["11.3"]
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


# -- live migration 9.0 -> 11.3 -> 9.0 --------------------------------------------------------

def host_virsh(connect: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", connect, *args], capture_output=True, text=True, timeout=180)


def migrate(src: Virsh, src_uri: str, dst: Virsh, dst_uri: str, name: str, tmp_path) -> None:
    xml = src("dumpxml", "--migratable", name).stdout
    arch = "ppc64" if "arch='ppc64'" in xml else "x86_64"
    f = tmp_path / f"{name}-for-target.xml"
    f.write_text(xml.replace(src.emulators[arch], dst.emulators[arch]))
    r = host_virsh(src_uri, "migrate", "--live", "--xml", str(f), name, dst_uri, "tcp://127.0.0.1")
    assert r.returncode == 0, f"migrate failed: {r.stderr}"
    assert dst.state(name) == "running"
    left = src("domstate", name, check=False)             # persistent there: shut off; transient: gone
    assert (left.returncode == 0 and left.stdout.strip() == "shut off") or "failed to get domain" in left.stderr


@pytest.mark.parametrize("cfg", [PC, PSERIES], ids=["pc", "pseries-smt2"])
def test_live_migration_9_0_to_11_3_and_back(daemons, tmp_path, cfg):
    (_, v90), (_, v113) = daemons["9.0"], daemons["11.3"]
    name = "mig-pc" if cfg is PC else "mig-ppc"
    v90.start_plugged(tmp_path, name, cfg)
    before = v90.vcpu_view(name)
    assert len(before[1]) == len(before[2]) == cfg["count"]
    migrate(v90, "qemu:///system", v113, uri(), name, tmp_path)
    assert v113.vcpu_view(name) == before
    v113("setvcpu", name, cfg["unplug"], "--disable", "--live")     # unplug works on the new side
    assert v113.vcpucount_live(name) == cfg["after"]
    v113("setvcpu", name, cfg["unplug"], "--enable", "--live")     # re-plugged: now the newest vCPU
    mid = v113.vcpu_view(name)
    assert mid[2] == before[2] and mid[1] != before[1]             # same ids, a new creation order
    migrate(v113, uri(), v90, "qemu:///system", name, tmp_path)
    assert v90.vcpu_view(name) == mid
    v90("setvcpu", name, cfg["unplug"], "--disable", "--live")
    assert v90.vcpucount_live(name) == cfg["after"]
    v90("destroy", name)
    v90("undefine", name)
