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

import pytest

from .flows import PC, PSERIES, Virsh, restore_of_a_stream_naming_a_missing_vcpu, save_restore_managedsave
from .libvirtd import Libvirtd, ensure_installed, virsh
from .test_virsh_e2e import EMULATORS

pytestmark = pytest.mark.libvirt

NAMES = ("cpuhot-save-pc", "cpuhot-save-ppc", "cpuhot-save-bad")


@pytest.fixture(scope="module")
def v90(tmp_path_factory):
    reason = ensure_installed()
    if reason:
        pytest.skip(f"!!! LIBVIRT END-TO-END TEST SKIPPED: {reason} !!!")
    daemon = Libvirtd(tmp_path_factory.mktemp("libvirtd"))
    daemon.configure()
    v = Virsh(virsh, EMULATORS)
    try:
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.start()
        yield v
    finally:
        v.cleanup(NAMES)
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.restore()


@pytest.mark.parametrize("cfg", [PC, PSERIES], ids=["pc", "pseries-smt2"])
def test_save_restore_then_managedsave_start_then_unplug(v90, tmp_path, cfg):
    save_restore_managedsave(v90, tmp_path, "cpuhot-save-pc" if cfg is PC else "cpuhot-save-ppc", cfg)


def test_restore_of_a_stream_with_a_vcpu_the_domain_lacks_fails_with_qemus_error(v90, tmp_path):
    restore_of_a_stream_naming_a_missing_vcpu(v90, tmp_path, "cpuhot-save-bad")
