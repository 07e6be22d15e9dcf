"""QEMU's command-line conventions (``-version``, ``-h``, ``help``, ``-accel foo``, signals), HMP's
informational commands and cpuhot's own usage texts.

Expectations are QEMU 7.2's output, written down here from a live ``qemu-system-x86_64`` 7.2
(Debian 12) and, where a QEMU is installed, compared with it in the same run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cpuhot.client import QMPClient

from .helpers import Server, require_qemu, run_both, script

QEMU_VERSION_LINE = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"


def run(*argv: str, binary: str = "cpuhot-system-x86_64") -> subprocess.CompletedProcess:
    return subprocess.run([script(binary), *argv], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("option", ["-version", "--version"])
def test_version(option):
    r = run(option, "-machine", "pc")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [QEMU_VERSION_LINE,
                                      "cpuhot 0.1.0: a simulation of QEMU 7.2's CPU hotplug (QMP), not QEMU"]


@pytest.mark.parametrize("option", ["-h", "-help"])
def test_help_is_qemus(option):
    r = run(option)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[:3] == [QEMU_VERSION_LINE, "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers",
                         "usage: cpuhot-system-x86_64 [options] [disk_image]"]
    assert "-machine [type=]name[,prop[=value][,...]]" in lines
    assert len(lines) == 558                          # qemu-system-x86_64 7.2 -h | wc -l


@pytest.mark.parametrize("argv, first_lines", [
    (["-machine", "help"], ["Supported machines are:", "microvm              microvm (i386)"]),
    (["-M", "?"], ["Supported machines are:", "microvm              microvm (i386)"]),
    (["-cpu", "help"], ["Available CPUs:", "x86 486                   (alias configured by machine type)"]),
    (["-accel", "help"], ["Accelerators supported in QEMU binary:", "tcg", "kvm"]),
    (["-device", "help"], ["Controller/Bridge/Hub devices:",
                           'name "cxl-downstream", bus PCI, desc "CXL Switch Downstream Port"']),
    # QEMU's order: -machine help and -accel help as the option loop reaches them, -cpu help after it
    (["-accel", "help", "-machine", "help"], ["Accelerators supported in QEMU binary:"]),
    (["-device", "help", "-machine", "help"], ["Supported machines are:"]),
    (["-device", "help", "-cpu", "help"], ["Available CPUs:"]),
    (["-machine", "help", "-smp", "x"], ["Supported machines are:"]),
    (["-machine", "help", "-version"], ["Supported machines are:"]),
    (["-version", "-h"], [QEMU_VERSION_LINE]),
])
def test_help_options(argv, first_lines):
    r = run(*argv)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines()[:len(first_lines)] == first_lines


def test_ppc64_machine_help():
    r = run("-machine", "help", binary="cpuhot-system-ppc64")
    assert r.returncode == 0
    assert r.stdout.splitlines()[:3] == ["Supported machines are:", "40p                  IBM RS/6000 7020 (40p)",
                                         "bamboo               bamboo"]
    assert run("-accel", "help", binary="cpuhot-system-ppc64").stdout == "Accelerators supported in QEMU binary:\ntcg\n"


def test_an_invalid_option_wins_over_version():
    r = run("-version", "-bogus")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "cpuhot-system-x86_64: -bogus: invalid option\n")


@pytest.mark.parametrize("argv, stderr", [
    (["-accel", "foo"], "PROG: -accel foo: invalid accelerator foo\n"),
    (["-accel", "kvm:tcg"], "PROG: -accel kvm:tcg: invalid accelerator kvm:tcg\n"),
    (["-accel", "foo", "-accel", "bar"], "PROG: -accel foo: invalid accelerator foo\n"
                                         "PROG: -accel bar: invalid accelerator bar\n"),
    (["-accel", "foo", "-smp", "x"], "PROG: Parameter 'smp.cpus' expects integer\n"),
    (["-accel", "foo", "-cpu", "bogus"], "PROG: -accel foo: invalid accelerator foo\n"),
    (["-accel", "foo", "-machine", "bogus"], "PROG: unsupported machine type\n"
                                             "Use -machine help to list supported machines\n"),
])
def test_invalid_accelerator(argv, stderr):
    full = ["-S", "-nodefaults", "-display", "none", *argv]
    r = run(*full, "-qmp", "unix:/nonexistent/dir/q.sock,server=on,wait=off")
    assert (r.returncode, r.stderr.replace("cpuhot-system-x86_64", "PROG")) == (1, stderr)


def test_invalid_accelerator_against_qemu():
    require_qemu()
    qemu, cpuhot = run_both(["-S", "-nodefaults", "-display", "none", "-accel", "foo"])
    assert qemu == cpuhot == (1, "PROG: -accel foo: invalid accelerator foo\n")


def test_fall_back_to_a_later_accelerator(tmp_path):
    srv = Server(script("cpuhot-system-x86_64"), ["-S", "-nodefaults", "-accel", "foo", "-accel", "tcg"])
    try:
        c = srv.client()
        assert c.execute("query-kvm") == {"enabled": False, "present": True}
        c.close()
    finally:
        err = srv.stop()
    assert err.startswith("cpuhot-system-x86_64: -accel foo: invalid accelerator foo\n"
                          "cpuhot-system-x86_64: falling back to tcg\n")


def test_serve_help_lists_every_option_and_profile():
    r = run("serve", "--help", binary="cpuhot")
    assert r.returncode == 0
    for word in ("--state", "--seed", "--clock", "--vcpu-threads", "--force-kvm", "-incoming", "--compat",
                 "--arch", "--guest", "--trace", "--validate-returns", "--verbose", "-qmp", "-chardev",
                 "cpuhot, qemu-7.2, qemu-5.2, qemu-10.0, qemu-5.1, qemu-2.7",
                 "auto, none, cooperative, slow, unresponsive, refuse, flaky", "replay", "fleet", "show"):
        assert word in r.stdout, word


def test_unknown_subcommand():
    r = run("bogus", binary="cpuhot")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("cpuhot: 'bogus' is not a cpuhot command (one of: serve, replay, show, fleet); "
                        "see 'cpuhot --help'\n")


def test_fleet_without_count():
    r = subprocess.run([sys.executable, "-m", "cpuhot", "fleet", "-smp", "2"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "cpuhot fleet: --count N is required (how many VMs)",
        "usage: python -m cpuhot fleet --count N [--dir DIR] [--summary] [--first K] [serve options]"]


def test_replay_show_argv_without_against(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"t": 0, "dir": "meta", "argv": ["-machine", "q35", "-S"], "prog": "cpuhot"}) + "\n")
    r = subprocess.run([sys.executable, "-m", "cpuhot", "replay", str(trace), "--show-argv"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "-machine q35 -S\n", "")
    r = subprocess.run([sys.executable, "-m", "cpuhot", "replay", str(trace)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--against" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_terminating_on_signal(sig):
    srv = Server(script("cpuhot-system-x86_64"), ["-S", "-nodefaults"])
    c = srv.client()
    c.execute("query-status")
    srv.proc.send_signal(sig)
    assert srv.proc.wait(30) == 0                     # QEMU exits 0 on SIGINT/SIGTERM
    event = None
    for _ in range(10):
        if c.events:
            event = c.events[0]
            break
        try:
            c.execute("query-status", timeout=0.5)
        except Exception:
            break
    err = srv.stop()
    with open("/proc/self/cmdline", "rb") as f:           # QEMU names the sender by its argv[0]
        me = f.read().split(b"\0")[0].decode()
    assert err == f"cpuhot-system-x86_64: terminating on signal {int(sig)} from pid {os.getpid()} ({me})\n"
    if event is not None:
        assert (event["event"], event["data"]) == ("SHUTDOWN", {"guest": False, "reason": "host-signal"})


def test_verbose_logs_connections_and_commands():
    srv = Server(script("cpuhot"), ["serve", "-S", "-v"])
    c = srv.client()
    c.execute("query-status")
    c.close()
    import time
    time.sleep(0.3)
    err = srv.stop()
    lines = [line for line in err.splitlines() if "terminating" not in line]
    assert lines[0].startswith("cpuhot: client 0 connected")
    assert lines[1:] == ['cpuhot: client 0: {"execute": "qmp_capabilities", "id": "cpuhot-1"}',
                         'cpuhot: client 0: {"execute": "query-status", "id": "cpuhot-2"}',
                         "cpuhot: client 0 disconnected"]


def test_client_hint_names_what_clients_accept():
    from cpuhot.cli import client_hint
    assert client_hint("unix:/run/q.sock", "cpuhot") == (
        "cpuhot: QMP monitor on /run/q.sock: qmp-shell /run/q.sock | socat - UNIX-CONNECT:/run/q.sock | "
        "qemu.qmp QMPClient().connect('/run/q.sock')\n")
    assert client_hint("tcp:127.0.0.1:4444", "cpuhot") == (
        "cpuhot: QMP monitor on 127.0.0.1:4444: qmp-shell 127.0.0.1:4444 | socat - TCP:127.0.0.1:4444 | "
        "qemu.qmp QMPClient().connect(('127.0.0.1', 4444))\n")


# -- HMP -----------------------------------------------------------------------------------------

def hmp(c: QMPClient, line: str) -> str:
    return c.execute("human-monitor-command", {"command-line": line})


def test_hmp_informational_commands():
    """Recorded from qemu-system-x86_64 7.2: -S -nodefaults -accel tcg -machine pc -name guest=g1 -uuid ..."""
    srv = Server(script("cpuhot-system-x86_64"), ["-S", "-nodefaults", "-accel", "tcg", "-machine", "pc",
                                                  "-name", "guest=g1", "-uuid", "12345678-1234-1234-1234-123456789abc"])
    try:
        c = srv.client()
        assert hmp(c, "info status") == "VM status: paused (prelaunch)\r\n"
        assert hmp(c, "stop") == ""
        assert hmp(c, "info status") == "VM status: paused (prelaunch)\r\n"
        assert hmp(c, "cont") == ""
        assert hmp(c, "info status") == "VM status: running\r\n"
        assert hmp(c, "s") == ""
        assert hmp(c, "info status") == "VM status: paused\r\n"
        assert hmp(c, "c") == ""
        assert hmp(c, "info version") == "7.2.22cpuhot 0.1.0\r\n"       # QEMU: "7.2.22" + its package
        assert hmp(c, "info kvm") == "kvm support: disabled\r\n"
        assert hmp(c, "info name") == "g1\r\n"
        assert hmp(c, "info uuid") == "12345678-1234-1234-1234-123456789abc\r\n"
        assert hmp(c, "info status foo") == ('status: extraneous characters at the end of line\r\n'
                                             'Try "help info status" for more information\r\n')
        assert hmp(c, "stop foo") == ('stop|s: extraneous characters at the end of line\r\n'
                                      'Try "help stop" for more information\r\n')
        assert hmp(c, "info version x") == ('version: extraneous characters at the end of line\r\n'
                                            'Try "help info version" for more information\r\n')
        assert hmp(c, "info bogus") == "unknown command: 'info bogus'\r\n"
        text = hmp(c, "help")
        assert len(text) == 11212 and text.startswith(
            "announce_self [interfaces] [id] -- Trigger GARP/RARP announcements\r\n")
        assert hmp(c, "help stop") == "stop|s  -- stop emulation\r\n"
        c.close()
    finally:
        srv.stop()


def test_hmp_defaults_without_name_and_uuid():
    srv = Server(script("cpuhot-system-ppc64"), ["-nodefaults", "-accel", "tcg", "-machine", "pseries"])
    try:
        c = srv.client()
        assert hmp(c, "info name") == ""
        assert hmp(c, "info uuid") == "00000000-0000-0000-0000-000000000000\r\n"
        assert hmp(c, "info kvm") == "kvm support: not compiled\r\n"     # ppc64 on an x86 host
        assert hmp(c, "info status") == "VM status: running\r\n"
        c.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("machine, arch, names", [
    # qom-list /machine of QEMU 7.2 (-S -nodefaults -accel tcg), the entries cpuhot models, QEMU's order
    ("pc", "x86_64", ["type", "unattached", "peripheral-anon", "peripheral"]),
    ("q35", "x86_64", ["type", "unattached", "peripheral-anon", "peripheral"]),
    ("pseries", "ppc64", ["type", "peripheral", "unattached", "peripheral-anon"]),
])
def test_qom_list_machine(machine, arch, names):
    srv = Server(script(f"cpuhot-system-{arch}"), ["-S", "-nodefaults", "-accel", "tcg", "-machine", machine])
    try:
        c = srv.client()
        got = c.execute("qom-list", {"path": "/machine"})
        types = {"type": "string", "unattached": "child<container>", "peripheral-anon": "child<container>",
                 "peripheral": "child<container>"}
        assert got == [{"name": n, "type": types[n]} for n in names]
        c.close()
    finally:
        srv.stop()
