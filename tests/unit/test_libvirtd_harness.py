"""The libvirt harness waits as long as a cold capability probe takes (issue 11, fresh machine).

A fake ``libvirtd`` and a fake ``virsh`` whose first ``version`` answers after 11 s (the cold
probe took about 14 s on a fresh machine, where the harness used to give up after 10 s).
"""

from __future__ import annotations

import os
import time

from tests.libvirt import libvirtd as harness


def test_start_waits_for_a_slow_first_probe(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "libvirtd").write_text("#!/bin/sh\nexec sleep 60\n")
    (bindir / "virsh").write_text(f"#!/bin/sh\n[ -e {tmp_path}/probed ] || sleep 11\ntouch {tmp_path}/probed\n"
                                  "echo 'Compiled against library: libvirt 9.0.0'\n")
    for name in ("libvirtd", "virsh"):
        os.chmod(bindir / name, 0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setattr(harness, "SOCKET", tmp_path / "no-such-socket")       # no real daemon is asked
    assert harness.PROBE_TIMEOUT >= 120, "a cold probe on a loaded machine takes far more than 10 s"
    daemon = harness.Libvirtd(tmp_path)
    start = time.monotonic()
    try:
        daemon.start()
        assert time.monotonic() - start >= 11
        assert (tmp_path / "probed").exists()
    finally:
        daemon.stop()
