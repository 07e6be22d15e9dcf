"""The real QEMUs the tests compare against, one launcher per release and arch (tools/qemus.py).

``require("10.0", "x86_64")`` returns the argv prefix that starts that QEMU, or skips the test
loudly when it is not installed; under ``CI=true`` a missing QEMU fails the test instead, because
``.ci/run`` installs every release (a green CI must never hide a QEMU that was not there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import qemus  # noqa: E402

RELEASES = tuple(qemus.RELEASES)
IN_CI = os.environ.get("CI") == "true"


def missing(version: str, arch: str = "x86_64") -> str | None:
    return qemus.missing(version, arch)


def require(version: str, arch: str = "x86_64") -> list[str]:
    why = qemus.missing(version, arch)
    if why is not None:
        msg = f"!!! real QEMU {version} ({arch}) not available: {why} !!!"
        if IN_CI:
            pytest.fail(msg + " (CI=true: .ci/run must have installed it)")
        pytest.skip(msg)
    return qemus.launcher(version, arch)
