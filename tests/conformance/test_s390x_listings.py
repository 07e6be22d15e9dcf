"""``-machine help`` and ``-cpu help`` of qemu-system-s390x, per release: cpuhot prints what the real
binary prints (stdout, exit 0), compared live against QEMU 5.2, 7.2 and 10.0."""

import subprocess
import sys
from pathlib import Path

import pytest

from cpuhot.cli import prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qemu_versions import RELEASES, require  # noqa: E402

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("what", ["-machine", "-cpu"])
def test_help_listing_matches_qemu(release, what):
    argv = require(release, "s390x")
    real = subprocess.run(argv + [what, "help"], capture_output=True, text=True, timeout=60)
    ours = prepare([what, "help", "--compat", f"qemu-{release}"], prog="qemu-system-s390x")
    assert (ours.exit_code, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr)
