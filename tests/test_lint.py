"""ruff and mypy, as configured in pyproject.toml, over the whole tree: any finding fails.

Both are in the ``[test]`` extra, so a checkout set up as the README says has them; a missing
one is a failure here, not a skip (CI must not pass without the checks).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff():
    r = run("ruff", "check", "--no-cache", "src", "tests", "tools", "benchmarks", "examples")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy():
    # strict for every module but the command-line front ends pyproject.toml lists (machine/ and qmp/ all strict)
    r = run("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


def test_strict_modules_are_checked_strictly(tmp_path):
    """The configuration really is strict for the VM model: an unannotated function in a strict
    module is a finding (so test_mypy cannot pass by checking nothing)."""
    probe = ROOT / "src/cpuhot/machine/topology.py"
    text = probe.read_text() + "\n\ndef _lint_probe(x):\n    return x\n"
    copy = tmp_path / "cpuhot/machine"
    copy.mkdir(parents=True)
    (tmp_path / "cpuhot/__init__.py").write_text("")
    (copy / "__init__.py").write_text("")
    (copy / "topology.py").write_text(text)
    config = ROOT / "pyproject.toml"
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental",
                        "--cache-dir", "/dev/null", "cpuhot/machine/topology.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Function is missing a type annotation" in r.stdout, r.stdout + r.stderr
