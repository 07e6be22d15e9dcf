"""The agent's chardev over real sockets: query-chardev as QEMU 7.2 shows it, late and silent
agents, bad input, and the port following the guest's life (VSERPORT_CHANGE)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest


class Served:
    def __init__(self, tmp_path, *args):
        self.qmp_path, self.agent_path = str(tmp_path / "q.sock"), str(tmp_path / "a.sock")
        self.proc = subprocess.Popen([sys.executable, "-m", "cpuhot", "serve", "-machine", "pc", "-smp", "2,maxcpus=4",
                                      "-qmp", f"unix:{self.qmp_path},server=on,wait=off", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline(), self.proc.stderr.read()
        q = socket.socket(socket.AF_UNIX)
        q.connect(self.qmp_path)
        q.settimeout(10)
        self.q = q.makefile("rwb")
        self.q.readline()
        self.cmd("qmp_capabilities")

    def send(self, name, args=None):
        self.q.write(json.dumps({"execute": name, **({"arguments": args} if args else {})}).encode() + b"\n")
        self.q.flush()

    def cmd(self, name, args=None, events=None):
        self.send(name, args)
        while True:
            msg = json.loads(self.q.readline())
            if "event" in msg:
                if events is not None:
                    events.append((msg["event"], msg.get("data")))
                continue
            assert "return" in msg, msg
            return msg["return"]

    def agent(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.agent_path)
        return s

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def served(tmp_path):
    made = []

    def make(*args):
        made.append(Served(tmp_path, *args))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_query_chardev_and_vserport_change_follow_qemu(served, tmp_path):
    s = served("-S", "-chardev", f"socket,id=charchannel0,path={tmp_path / 'a.sock'},server=on,wait=off",
               "-device", "virtio-serial-pci,id=virtio-serial0,bus=pci.0,addr=0x3",
               "-device", "virtserialport,bus=virtio-serial0.0,nr=1,chardev=charchannel0,id=channel0,"
                          "name=org.qemu.guest_agent.0")
    path = str(tmp_path / "a.sock")
    # QEMU 7.2 (same argv, paused, no guest): disconnected until a client connects, frontend closed
    assert s.cmd("query-chardev") == [{"frontend-open": False, "filename": f"disconnected:unix:{path},server=on",
                                       "label": "charchannel0"}]
    a = s.agent()
    time.sleep(0.2)
    assert s.cmd("query-chardev")[0]["filename"] == f"unix:{path},server=on"
    a.sendall(b'{"execute": "guest-ping"}\n')       # the guest is not running: nobody reads it yet
    a.settimeout(0.3)
    with pytest.raises(socket.timeout):
        a.recv(100)
    events = []
    s.cmd("cont", events=events)
    assert ("VSERPORT_CHANGE", {"id": "channel0", "open": True}) in events
    a.settimeout(5)
    assert a.recv(100) == b'{"return": {}}\n'        # the queued request, answered once qemu-ga reads
    assert s.cmd("query-chardev")[0]["frontend-open"] is True


def test_late_agent_and_garbage(served, tmp_path):
    s = served("--guest-agent", str(tmp_path / "a.sock"), "--agent-mode", "late:0.5")
    a = s.agent()
    a.settimeout(5)
    t = time.monotonic()
    a.sendall(b'{"execute": "guest-sync", "arguments": {"id": 5}}\n')
    assert a.recv(100) == b'{"return": 5}\n' and time.monotonic() - t >= 0.45
    s.cmd("x-cpuhot-guest-agent", {"mode": "answering"})
    a.sendall(b'{"execute": ]\n{"execute": "guest-ping"}\n' + b"[" * 2000 + b"\n")
    got = b""
    while got.count(b"\n") < 2:
        got += a.recv(1000)
    lines = got.splitlines()
    assert json.loads(lines[0])["error"]["class"] == "GenericError"
    assert b'{"return": {}}' in lines
    assert s.cmd("query-status")["status"] == "running"    # the VM is fine


def test_silent_agent_is_bounded_and_recovers(served, tmp_path):
    s = served("--guest-agent", str(tmp_path / "a.sock"), "--agent-mode", "never")
    a = s.agent()
    a.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    chunk = b'{"execute": "guest-ping"}\n' * 1000
    while time.monotonic() < deadline and sent < (64 << 20):
        try:
            sent += a.send(chunk)
        except BlockingIOError:
            break                       # the agent stopped reading: the kernel's buffer is full
    assert sent < (64 << 20)
    a.setblocking(True)
    a.settimeout(10)
    s.cmd("x-cpuhot-guest-agent", {"mode": "answering"})
    assert a.recv(100).startswith(b'{"return": {}}\n')


def test_agent_options_need_an_agent(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cpuhot", "serve", "--agent-mode", "never",
                        "-qmp", f"unix:{tmp_path / 'q.sock'},server=on,wait=off"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "need a guest agent" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cpuhot", "serve", "--guest-agent", str(tmp_path / "a"),
                        "--agent-mode", "sometimes", "-qmp", f"unix:{tmp_path / 'q.sock'},server=on,wait=off"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "unknown agent mode 'sometimes'" in r.stderr


@pytest.mark.parametrize("devices,message", [
    # texts recorded from qemu-system-x86_64 7.2 with the same -device options
    (["virtio-serial-pci,id=vs0", "virtserialport,chardev=nope,name=org.qemu.guest_agent.0"],
     "-device virtserialport,chardev=nope,name=org.qemu.guest_agent.0: "
     "Property 'virtserialport.chardev' can't find value 'nope'"),
    (["virtserialport,chardev=c,name=org.qemu.guest_agent.0"],
     "-device virtserialport,chardev=c,name=org.qemu.guest_agent.0: "
     "No 'virtio-serial-bus' bus found for device 'virtserialport'"),
])
def test_refused_ports(tmp_path, devices, message):
    argv = [sys.executable, "-m", "cpuhot", "serve", "-S", "-machine", "pc",
            "-chardev", f"socket,id=c,path={tmp_path / 'a.sock'},server=on,wait=off"]
    for d in devices:
        argv += ["-device", d]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == f"cpuhot: {message}\n"


def test_one_client_at_a_time(served, tmp_path):
    """QEMU's server socket chardev serves one client; the next is answered once the first leaves."""
    s = served("--guest-agent", str(tmp_path / "a.sock"))
    first, second = s.agent(), s.agent()
    first.settimeout(5)
    second.settimeout(0.3)
    second.sendall(b'{"execute": "guest-sync", "arguments": {"id": 2}}\n')
    first.sendall(b'{"execute": "guest-sync", "arguments": {"id": 1}}\n')
    assert first.recv(100) == b'{"return": 1}\n'
    with pytest.raises(socket.timeout):
        second.recv(100)
    first.close()
    second.settimeout(5)
    assert second.recv(100) == b'{"return": 2}\n'


@pytest.mark.parametrize("subprocess_", [False, True])
def test_launch_with_an_agent(tmp_path, subprocess_):
    import cpuhot
    path = str(tmp_path / "qga.sock")
    with cpuhot.launch(machine="pc", smp="2,maxcpus=4", guest_agent=path, guest_onlining="offline",
                       subprocess=subprocess_) as vm:
        with vm.client() as qmp:
            free = [e for e in qmp.execute("query-hotpluggable-cpus") if "qom-path" not in e]
            qmp.execute("device_add", {"driver": free[-1]["type"], "id": "vcpu2", **free[-1]["props"]})
            a = socket.socket(socket.AF_UNIX)
            a.connect(path)
            a.settimeout(5)
            a.sendall(b'{"execute": "guest-get-vcpus"}\n')
            got = json.loads(a.makefile("rb").readline())["return"]
            assert [(e["logical-id"], e["online"]) for e in got] == [(2, False), (1, True), (0, True)]
            assert [c["online"] for c in qmp.execute("x-cpuhot-guest-cpus")] == [True, True, False]
            a.close()


def test_a_client_that_does_not_read_its_replies_is_held_back(served, tmp_path):
    s = served("--guest-agent", str(tmp_path / "a.sock"))
    a = s.agent()
    a.setblocking(False)
    sent, deadline = 0, time.monotonic() + 10
    chunk = b'{"execute": "guest-info"}\n' * 200        # about 3 KiB of reply per 26 bytes sent
    while time.monotonic() < deadline and sent < (16 << 20):
        try:
            sent += a.send(chunk)
        except BlockingIOError:
            break
    assert sent < (16 << 20)            # the agent stopped reading once its replies piled up
    assert s.cmd("query-status")["status"] == "running"
    a.setblocking(True)
    a.settimeout(10)
    got = b""
    while got.count(b"\n") < 100:
        got += a.recv(1 << 16)
    assert all(json.loads(line)["return"]["version"] == "7.2.22" for line in got.split(b"\n")[:100])
