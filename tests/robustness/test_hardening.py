"""Issue 11, "Faults under bad input and load": each fault found from outside, tested.

Time and memory properties are tested on modest inputs as growth (linear, bounded), never as
absolute timings; the figures next to QEMU's are in ``benchmarks/hardening.py``.
"""

from __future__ import annotations

import json
import time

import pytest

from cpuhot.cli import prepare
from cpuhot.qmp.framing import JSONStreamParser


def _monitor(*argv: str):
    prepared = prepare(["--smp", "1,maxcpus=4", *argv], prog="cpuhot", default_endpoint=False)
    assert prepared.exit_code is None, prepared.stderr
    monitor = prepared.monitor
    session = monitor.open_session(peer="test")
    return monitor, session


def _handle(monitor, session, msg: dict) -> dict:
    items = JSONStreamParser().feed(json.dumps(msg).encode())
    assert len(items) == 1
    replies = [m for s, m in monitor.handle(session, items[0]) if "event" not in m]
    assert len(replies) == 1, replies
    return replies[0]


# -- 1. device_add with many properties is linear ------------------------------------------

def _device_add_seconds(monitor, session, driver: str, n: int) -> float:
    args: dict = {"driver": driver}
    args.update({f"x{i}": "1" for i in range(n)})
    items = JSONStreamParser().feed(json.dumps({"execute": "device_add", "arguments": args}).encode())
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = monitor.handle(session, items[0])
        best = min(best, time.perf_counter() - start)
    reply = out[-1][1]
    assert reply["error"]["class"] == "GenericError"
    assert reply["error"]["desc"].startswith(f"Property '{driver}.x"), reply
    return best


@pytest.mark.parametrize("argv,driver", [
    (("--machine", "pc"), "qemu64-x86_64-cpu"),
    (("--machine", "pseries", "--smp", "1,maxcpus=4"), "power9_v2.0-spapr-cpu-core"),
])
def test_device_add_with_many_properties_is_linear(argv, driver):
    """8x the properties may cost about 8x the time, not 64x (it was quadratic: 80,000 keys
    froze the server for 30 s)."""
    monitor, session = _monitor(*argv)
    _handle(monitor, session, {"execute": "qmp_capabilities"})
    small = _device_add_seconds(monitor, session, driver, 2_500)
    large = _device_add_seconds(monitor, session, driver, 20_000)
    assert large < 24 * max(small, 1e-3), (small, large)
