"""One host libvirtd (libvirt 9.0) for every libvirt test module of a run.

It starts once, with libvirt's capability cache of cpuhot's drop-in binaries dropped first (a
libvirt that has never probed them, as on a new machine), and is put back as it was at the end of
the session.  A module names the domains it defines in ``DOMAIN_NAMES``; the module-scoped
``libvirtd`` fixture destroys and undefines them when the module ends, whatever happened.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .libvirtd import Libvirtd, ensure_installed, unavailable, virsh

BIN = Path(sys.executable).parent
#: cpuhot's drop-in binaries, by libvirt's arch name
EMULATORS = {arch: str(BIN / f"cpuhot-system-{arch}") for arch in ("x86_64", "ppc64", "s390x")}


@pytest.fixture(scope="session")
def host_libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirtd]:
    reason = ensure_installed()
    if reason:
        unavailable(reason)
    for path in EMULATORS.values():
        if not os.path.exists(path):
            pytest.fail(f"drop-in binary {path} missing: is cpuhot installed (pip install -e .)?")
    daemon = Libvirtd(tmp_path_factory.mktemp("libvirtd"))
    daemon.configure()
    try:
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.start()
        yield daemon
    finally:
        daemon.forget_capabilities(list(EMULATORS.values()))
        daemon.restore()


@pytest.fixture(scope="module")
def libvirtd(host_libvirtd: Libvirtd, request: pytest.FixtureRequest) -> Iterator[Libvirtd]:
    try:
        yield host_libvirtd
    finally:
        for name in getattr(request.module, "DOMAIN_NAMES", ()):
            virsh("destroy", name, check=False)
            virsh("undefine", name, "--managed-save", check=False)
