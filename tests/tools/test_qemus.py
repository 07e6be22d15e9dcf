"""tools/qemus.py builds several releases side by side and reports the first failure after all end."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import qemus  # noqa: E402


def test_ensure_all_builds_releases_concurrently_and_waits_for_all(monkeypatch):
    running: set[str] = set()
    overlap: list[frozenset[str]] = []
    done: list[str] = []
    guard = threading.Lock()

    def fake_ensure(version: str, groups: tuple[str, ...]) -> None:
        with guard:
            running.add(version)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:          # until the other build is seen running
            with guard:
                if len(running) == 2:
                    overlap.append(frozenset(running))
                    break
            time.sleep(0.01)
        time.sleep(0.05)
        with guard:
            running.discard(version)
            done.append(version)
        if version == "5.2":
            raise qemus.QemusError("debootstrap bullseye failed")

    monkeypatch.setattr(qemus, "ensure", fake_ensure)
    with pytest.raises(qemus.QemusError, match="bullseye"):
        qemus.ensure_all({"5.2": ("qemu",), "10.0": ("qemu", "libvirt")})
    assert overlap and overlap[0] == frozenset({"5.2", "10.0"})
    assert sorted(done) == ["10.0", "5.2"]           # the failure did not abandon the other build


def test_a_lock_is_per_name_across_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(qemus, "CACHE", tmp_path)
    inside: list[str] = []
    def second() -> None:
        with qemus._locked("host-apt"):
            inside.append("second")

    with qemus._locked("host-apt"):
        t = threading.Thread(target=second, daemon=True)
        t.start()
        t.join(0.3)
        assert inside == []                           # the same name waits
        with qemus._locked("5.2"):                    # another name does not
            inside.append("other")
    t.join(5)
    assert inside == ["other", "second"]
    assert (tmp_path / ".lock-host-apt").exists()
