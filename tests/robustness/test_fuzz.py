"""Fuzzing the QMP layer: random commands, random JSON and random bytes, thousands of them.

Most cases run sans-IO (JSONStreamParser + Monitor, no sockets: fast); a smaller number go
through a real socket to a real QMPServer.  After every case the VM must still answer
``query-status`` and its two views of the CPUs must agree (same present set, same qom-paths,
unique cpu-index).  ``CPUHOT_FUZZ_EXAMPLES=20000 python -m pytest tests/robustness/test_fuzz.py``
runs a longer campaign (the default is what CI runs); ``CPUHOT_FUZZ_RANDOM=1`` explores new
cases instead of replaying the same pseudo-random ones.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cpuhot.cli import prepare
from cpuhot.qmp.commands import COMMANDS
from cpuhot.qmp.framing import JSONStreamParser, Parsed, encode
from cpuhot.qmp.server import fast_encode

from .helpers import SENTINEL, Client, ServerThread, check_consistency

EXAMPLES = int(os.environ.get("CPUHOT_FUZZ_EXAMPLES", "3000"))
RANDOM = os.environ.get("CPUHOT_FUZZ_RANDOM") == "1"


def fuzz_settings(n: int):
    return settings(max_examples=max(1, n), deadline=None, derandomize=not RANDOM, database=None,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


MACHINES = [
    ["-machine", "pc", "-smp", "2,maxcpus=8"],
    ["-machine", "q35", "-smp", "1,maxcpus=8,sockets=2,cores=2,threads=2"],
    ["-machine", "pc", "-smp", "2,maxcpus=4,sockets=2,cores=2", "-m", "256M",
     "-object", "memory-backend-ram,id=m0,size=128M", "-object", "memory-backend-ram,id=m1,size=128M",
     "-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=1,memdev=m1"],
    ["-machine", "pseries", "-smp", "1,maxcpus=8"],
    ["-machine", "pseries", "-smp", "2,maxcpus=16,threads=2", "-accel", "kvm"],
]
GUESTS = ["cooperative", "none", "refuse", "unresponsive", "flaky:0.5", "auto"]
#: device ids the cases share, so that adds and deletes meet
IDS = ["cpu1", "cpu2", "c-3", "x", "a.b_c"]

def build(machine: list[str], guest: str, seed: int):
    prepared = prepare([*machine, "-S", "--compat", "cpuhot", "--guest", guest, "--clock", "virtual",
                        "--seed", str(seed)], prog="cpuhot", default_endpoint=False)
    assert prepared.exit_code is None, prepared.stderr
    return prepared.monitor


class SansIO:
    """One client of a Monitor, fed bytes through the stream parser."""

    def __init__(self, monitor):
        self.monitor = monitor
        self.session = monitor.open_session()
        self.parser = JSONStreamParser()
        self.feed(b'{"execute": "qmp_capabilities"}')

    def feed(self, data: bytes) -> list[dict]:
        out = []
        for item in self.parser.feed(data):
            msgs = self.monitor.handle(self.session, item)      # must never raise
            assert msgs and msgs[-1][0] is self.session
            reply = msgs[-1][1]
            assert ("return" in reply) != ("error" in reply), reply
            assert "cpuhot internal error" not in json.dumps(reply), (item, reply)
            if isinstance(item, Parsed) and isinstance(item.value, dict) and "id" in item.value:
                assert "id" in reply and _same(reply["id"], item.value["id"]), (item, reply)
            for _, m in msgs:
                encode(m)                                       # every message can be written
            out.extend(m for _, m in msgs)
        return out

    def call(self, execute: str, **arguments):
        msg = {"execute": execute, **({"arguments": arguments} if arguments else {})}
        out = self.feed(json.dumps(msg).encode())
        assert "return" in out[-1], (msg, out[-1])
        return out[-1]["return"]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


HMP = ["info hotpluggable-cpus", "info cpus", "info numa", "info status", "device_del cpu1", "device_del",
       "device_add qemu64-x86_64-cpu,id=cpu2,socket-id=0,core-id=1,thread-id=0",
       "device_add power9_v2.0-spapr-cpu-core,id=cpu2,core-id=2", "cpu-add 1", "help", "", "  ", "\x00"]
STRINGS = ["", "a", "cpu1", "query-status", "\u00e9\u2603", "\ud800", "\x00", "\x7f", "\ufffe", "x" * 300,
           "/machine/peripheral/cpu1", "\\", '"', "on", "off", "2", "0x10", "-1", "1e3"]
NUMBERS = [0, 1, -1, 2, 7, 255, 2**31, -2**31 - 1, 2**63 - 1, 2**63, 2**64, -2**63, 10**30, 0.5, -0.0, 1e308,
           float("inf"), 2.0]
GARBAGE = [b"{", b"}", b"[[[", b"]]", b'"', b"'", b"\\", b"\x00", b"\xff\xfe", b"\xc0\x80", b"nul", b"1e400 ",
           b'{"execute": ', b'{"execute": "query-status"', b"-", b"\n", b"{}", b"[]", b"123 ", b"\x1b[A"]


def random_value(rnd: random.Random, depth: int = 0):
    """A random JSON value, biased towards nasty ones."""
    k = rnd.randrange(10 if depth < 3 else 6)
    if k == 0:
        return None
    if k == 1:
        return rnd.random() < 0.5
    if k == 2:
        return rnd.choice(NUMBERS)
    if k == 3:
        return rnd.randrange(-5, 40)
    if k in (4, 5):
        return rnd.choice(STRINGS) if rnd.random() < 0.7 else "".join(
            chr(rnd.randrange(0x110000)) for _ in range(rnd.randrange(6)))
    if k in (6, 7):
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(STRINGS + ["id", "execute", "arguments"]): random_value(rnd, depth + 1)
            for _ in range(rnd.randrange(4))}


def random_command(rnd: random.Random, monitor) -> dict:
    """A command that is mostly meaningful for this VM as it is now (plugs, unplugs, guest
    actions, queries), sometimes not at all."""
    vm = monitor.vm
    kind = rnd.choice(["device_add"] * 4 + ["device_del"] * 3 + ["query"] * 2 +
                      ["guest", "clock", "hmp", "other", "cpu-add", "runstate", "qom"])
    if kind == "device_add" and vm.slots:
        slot = rnd.choice(vm.slots)
        args = {"driver": rnd.choice([slot.type] * 3 + ["qemu64-x86_64-cpu", "x86_64-cpu", "virtio-net-pci",
                                                       "power9_v2.0-spapr-cpu-core", "nope"]),
                **slot.props}
        if rnd.random() < 0.6:
            args["id"] = rnd.choice(IDS + ["1bad", "", "a" * 200])
        for _ in range(rnd.randrange(3) if rnd.random() < 0.3 else 0):
            key = rnd.choice(["socket-id", "core-id", "thread-id", "node-id", "die-id", "apic-id",
                              "nr-threads", "bus", "hotplugged", "junk"])
            args[key] = rnd.randrange(-3, 20) if rnd.random() < 0.5 else random_value(rnd, 2)
        if rnd.random() < 0.1:
            args.pop(rnd.choice(sorted(args)))
        msg = {"execute": "device_add", "arguments": args}
    elif kind == "device_del":
        targets = IDS + [v.device.qom_path for v in vm.vcpus] + [v.qom_path for v in vm.vcpus] + [
            "/machine/unattached/device[0]", "/machine/peripheral", "/machine/unattached/device[1]/lapic", "/",
            "cpu1/lapic", rnd.choice(STRINGS)]
        msg = {"execute": "device_del", "arguments": {"id": rnd.choice(targets)}}
    elif kind == "query":
        msg = {"execute": rnd.choice(["query-hotpluggable-cpus", "query-cpus-fast", "query-cpus",
                                      "query-status", "x-cpuhot-guest-cpus"])}
    elif kind == "guest":
        if rnd.random() < 0.6 and vm.vcpus:
            v = rnd.choice(vm.vcpus)
            msg = rnd.choice([{"execute": "x-cpuhot-guest-eject", "arguments": {"id": v.device.qom_path}},
                              {"execute": "x-cpuhot-guest-online",
                               "arguments": {"cpu-index": v.cpu_index, "online": rnd.random() < 0.5}}])
        else:
            msg = {"execute": "x-cpuhot-guest-mode",
                   "arguments": {"mode": rnd.choice(GUESTS + ["slow:0.01", "bogus", "flaky:2", "cooperative:0"])}}
    elif kind == "clock":
        msg = {"execute": "x-cpuhot-clock-step",
               "arguments": {"seconds": rnd.choice([0, 0.001, 0.01, 1, 5, -1, 0.5, "1", None])}}
    elif kind == "hmp":
        line = rnd.choice(HMP) if rnd.random() < 0.8 else rnd.choice(STRINGS)
        msg = {"execute": "human-monitor-command", "arguments": {"command-line": line}}
    elif kind == "cpu-add":
        msg = {"execute": "cpu-add", "arguments": {"id": rnd.randrange(-2, 20)}}
    elif kind == "runstate":
        msg = {"execute": rnd.choice(["cont", "stop", "system_reset", "system_powerdown"])}
    elif kind == "qom":
        path = rnd.choice([v.qom_path for v in vm.vcpus] + ["/machine/peripheral", "/machine/unattached", "/x"])
        msg = rnd.choice([{"execute": "qom-list", "arguments": {"path": path}},
                          {"execute": "qom-get", "arguments": {"path": path, "property": rnd.choice(
                              ["type", "core-id", "apic-id", "node-id", "hotplugged", "x"])}}])
    else:
        msg = {"execute": rnd.choice(sorted(n for n in COMMANDS.commands if n != "quit") + STRINGS)}
        if rnd.random() < 0.5:
            msg["arguments"] = {rnd.choice(STRINGS + ["id", "path"]): random_value(rnd, 1)
                                for _ in range(rnd.randrange(3))}
    if rnd.random() < 0.5:
        msg["id"] = random_value(rnd, 1)
    return msg


def random_bytes(rnd: random.Random, monitor) -> bytes:
    """One piece of client input: mostly a command, sometimes garbage."""
    k = rnd.randrange(8)
    if k == 0:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))
    if k == 1:
        return rnd.choice(GARBAGE)
    if k == 2:
        return json.dumps(random_value(rnd)).encode()
    return json.dumps(random_command(rnd, monitor)).encode()


#: a piece of input is drawn as a seed for random_bytes: cheap to generate, and hypothesis still
#: shrinks a failure to the fewest and simplest pieces
seeds = st.integers(0, 2**32 - 1)


@fuzz_settings(EXAMPLES)
@given(data=st.data())
def test_fuzz_monitor_sans_io(data):
    """Random command sequences (and random bytes between them) never break the monitor or the VM."""
    monitor = build(data.draw(st.sampled_from(MACHINES), label="machine"),
                    data.draw(st.sampled_from(GUESTS), label="guest"), data.draw(st.integers(0, 9)))
    client = SansIO(monitor)
    other = SansIO(monitor)          # a second client: events fan out, its view must agree
    for seed in data.draw(st.lists(seeds, min_size=1, max_size=30), label="inputs"):
        client.feed(random_bytes(random.Random(seed), monitor))
    client.feed(b'"]}' * 2 + b"]" * 4 + b"}" * 4 + b"\n")     # close whatever is still open
    other.call("x-cpuhot-clock-step", seconds=30)
    check_consistency(other.call)


@fuzz_settings(max(1, EXAMPLES // 3))
@given(data=st.data())
def test_fuzz_replies_do_not_depend_on_how_bytes_are_split(data):
    """The same byte stream, cut anywhere, gives byte-identical output (same VM, virtual clock)."""
    machine = data.draw(st.sampled_from(MACHINES), label="machine")
    guest = data.draw(st.sampled_from(GUESTS), label="guest")
    probe = build(machine, guest, 1)
    stream = b"".join(random_bytes(random.Random(seed), probe)
                      for seed in data.draw(st.lists(seeds, min_size=1, max_size=12), label="inputs")) + b"\n"
    whole = SansIO(build(machine, guest, 1))
    expected = [encode(m) for m in whole.feed(stream)]
    cut = SansIO(build(machine, guest, 1))
    got = []
    start = 0
    for p in sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")) + [len(stream)]:
        got.extend(encode(m) for m in cut.feed(stream[start:p]))
        start = max(start, p)
    assert got == expected


# -- through a real socket ----------------------------------------------------------------------

#: commands for the socket cases are drawn against this VM as it starts (never against the live one,
#: so that hypothesis draws the same cases for the same choices)
SOCKET_VM = ["-machine", "pc", "-smp", "2,maxcpus=8", "--compat", "cpuhot", "--guest", "cooperative"]


@fuzz_settings(max(1, EXAMPLES // 15))
@given(data=st.data())
def test_fuzz_over_a_socket(data):
    """Random traffic from a real client, in random pieces, possibly abandoned half-way; then
    the server still answers and the VM is consistent."""
    probe = build(SOCKET_VM[:4], "cooperative", 0)
    with ServerThread(*SOCKET_VM, write_stall_timeout=2.0) as live_vm:
        _socket_case(live_vm, probe, data)


def _socket_case(live_vm, probe, data):
    c = Client(live_vm.path, timeout=5)
    try:
        blob = b"".join(random_bytes(random.Random(seed), probe)
                        for seed in data.draw(st.lists(seeds, min_size=1, max_size=10), label="inputs"))
        step = data.draw(st.integers(1, 64))
        for i in range(0, len(blob), step):
            c.send(blob[i:i + step])
        if data.draw(st.booleans()):
            c.sock.shutdown(socket.SHUT_WR)       # leave mid-stream: the server finishes and closes
            assert c.at_eof()
        else:
            c.send(b'\n' + b'"]}' * 2 + b"]" * 4 + b"}" * 4 + b"\n" + SENTINEL)
            deadline = time.monotonic() + 1       # (a stream left in a '...' string swallows it)
            while True:
                line = c.line(max(0.0, deadline - time.monotonic()))
                if line is None or b'"id": "sentinel"' in line:
                    break
    finally:
        c.close()
    control = Client(live_vm.path)
    try:
        deadline = time.monotonic() + 5
        while True:         # pending unplugs finish within the guest's delay
            try:
                check_consistency(control.ok)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        control.close()


# -- the server's encoder is framing.encode, byte for byte ----------------------------------------

@fuzz_settings(max(1, EXAMPLES // 3))
@given(seed=seeds)
def test_server_encode_is_framing_encode(seed):
    """QMPServer.encode caches list elements by identity; the bytes must not differ from
    framing.encode, however the same objects come back in later replies."""
    from cpuhot.qmp.server import QMPServer
    rnd = random.Random(seed)
    server = QMPServer(build(MACHINES[0], "none", 0))
    ret = [random_value(rnd) for _ in range(rnd.randrange(30))]
    for _ in range(4):
        reply = {"return": ret} if rnd.random() < 0.3 else {"return": ret, "id": random_value(rnd)}
        assert server.encode(reply) == encode(reply)
        ret = rnd.sample(ret, len(ret)) + [random_value(rnd) for _ in range(rnd.randrange(3))]
    event = {"event": "X", "data": {"a": ret}}
    assert server.encode(event) == encode(event)
    for _ in range(5):
        value = random_value(rnd)
        assert fast_encode(value) == encode(value)
        msg = {"return": value, "id": random_value(rnd)}
        assert server.encode(msg) == encode(msg)


@pytest.mark.parametrize("value", [
    "\x7f", "\x1b", "\u00e9", "\ud800", "\ufffe", "\U0001f600", 'a"b\\c/d', "e1.5", "1e5", "Infinity", "NaN",
    0.1, -0.0, 1e16, 1e400, float("nan"), 2.0, 2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1, 10**30,
    [[[[]]]], {"": {}}, [True, False, None], ("tuple", 1), "x" * 100_000,
    {"deep": __import__("functools").reduce(lambda acc, _: [acc], range(3000), 0)},
])
def test_fast_encode_edge_cases(value):
    assert fast_encode(value) == encode(value)
    assert fast_encode({"return": [value] * 3, "id": value}) == encode({"return": [value] * 3, "id": value})
