"""Live migration across libvirt releases: 9.0 (the host's) to 11.3 (the Debian 13 chroot) and back.

Domains with out-of-order hot-plugged vCPUs, cpuhot on both ends.  The host's virsh is the client
for both (the 11.3 daemon's socket is reachable from the host; see libvirtd113.py).  What libvirt
sends (recorded from these daemons' logs): the target is started with ``-incoming defer``, gets
``migrate-set-capabilities``, ``migrate-set-parameters`` (every parameter, e.g. ``max-bandwidth``,
``downtime-limit``, ``tls-creds: ""``), ``device_add`` of each hot-plugged vCPU, then
``migrate-incoming {"uri": "tcp:[::]:49152"}``; the source gets ``migrate`` to
``tcp:127.0.0.1:49152`` (``--migrateuri tcp://127.0.0.1``, so no host name is resolved).
``--xml`` gives the other side's emulator path (the same drop-in, in the other root); libvirt's
ABI check keeps the rest, vCPU states and order included.

After each hop the domain has the same vCPUs (both queries, libvirt's list) and a vCPU unplugs.
"""

from __future__ import annotations

import subprocess

import pytest

from .flows import PC, PSERIES, Virsh
from .libvirtd import Libvirtd, ensure_installed, virsh
from .libvirtd113 import EMULATORS as EMULATORS_113
from .libvirtd113 import Libvirtd113, uri, virsh113
from .libvirtd113 import ensure_installed as ensure_113
from .test_virsh_e2e import EMULATORS as EMULATORS_90

pytestmark = pytest.mark.libvirt

NAMES = ("mig-pc", "mig-ppc")


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    for why in (ensure_installed(), ensure_113()):
        if why:
            pytest.skip(f"!!! LIBVIRT MIGRATION TEST SKIPPED: {why} !!!")
    host = Libvirtd(tmp_path_factory.mktemp("libvirtd"))
    chroot = Libvirtd113(tmp_path_factory.mktemp("libvirtd113"))
    host.configure()                    # the host's lock first, then 11.3's (always in this order)
    v90, v113 = Virsh(virsh, EMULATORS_90), Virsh(virsh113, EMULATORS_113)
    try:
        chroot.configure()
        host.forget_capabilities(list(EMULATORS_90.values()))
        host.start()
        chroot.start()
        yield v90, v113
    finally:
        v90.cleanup(NAMES)
        v113.cleanup(NAMES)
        chroot.restore()
        host.forget_capabilities(list(EMULATORS_90.values()))
        host.restore()


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
    v90, v113 = daemons
    name = "mig-pc" if cfg is PC else "mig-ppc"
    v90.start_plugged(tmp_path, name, cfg)
    before = v90.vcpu_view(name)
    assert len(before[1]) == len(before[2]) == cfg["count"]
    migrate(v90, "qemu:///system", v113, uri(), name, tmp_path)
    assert v113.vcpu_view(name) == before
    migrate(v113, uri(), v90, "qemu:///system", name, tmp_path)
    assert v90.vcpu_view(name) == before
    v90("setvcpu", name, cfg["unplug"], "--disable", "--live")
    assert v90.vcpucount_live(name) == cfg["after"]
    v90("destroy", name)
    v90("undefine", name)
    v113("undefine", name, check=False)                  # defined there by the first migration
