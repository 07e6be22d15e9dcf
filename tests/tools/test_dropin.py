"""cpuhot-system-* as a drop-in for qemu-system-*: every refusal and accepted option checked against
the real QEMU 7.2 (same argv, same exit status, same stderr but for the program name)."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from .helpers import QEMU, Server, require_qemu, run_both, script

P = ["-S", "-nodefaults", "-display", "none"]
SOCK = "socket,id=c0,path={tmp}/m.sock,server=on,wait=off"

#: command lines QEMU 7.2 refuses (after the common prefix P), each with the message cpuhot must give
REFUSED = {
    "invalid-option": (["-foo"], "PROG: -foo: invalid option\n"),
    "invalid-option-double-dash": (["--foo", "x"], "PROG: --foo: invalid option\n"),
    "invalid-option-wins-over-syntax": (["-uuid", "bad", "-foo"], "PROG: -foo: invalid option\n"),
    "requires-argument": (["-smp"], "PROG: -smp: requires an argument\n"),
    "uuid": (["-uuid", "bogus"], "PROG: -uuid bogus: failed to parse UUID string: wrong format\n"),
    "uuid-before-rtc": (["-uuid", "bad", "-rtc", "foo=bar"], None),
    "rtc-before-uuid": (["-rtc", "foo=bar", "-uuid", "bad"], "PROG: -rtc foo=bar: Invalid parameter 'foo'\n"),
    "name-param": (["-name", "guest=x,bogus=1"], "PROG: -name guest=x,bogus=1: Invalid parameter 'bogus'\n"),
    "name-bool": (["-name", "guest=x,debug-threads=maybe"], None),
    "msg-param": (["-msg", "bogus=1"], None),
    "msg-bool": (["-msg", "timestamp=maybe"], None),
    "overcommit-param": (["-overcommit", "bogus=on"], None),
    "overcommit-bool": (["-overcommit", "mem-lock=maybe"], None),
    "rtc-base": (["-rtc", "base=foo"], None),
    "rtc-clock": (["-rtc", "base=utc,clock=foo"], None),
    "rtc-driftfix": (["-rtc", "driftfix=x"], None),
    "boot-param": (["-boot", "foo=bar"], "PROG: Parameter 'boot.foo' is unexpected\n"),
    "boot-device": (["-boot", "order=xyz"], None),
    "boot-twice": (["-boot", "order=cc"], None),
    "boot-once": (["-boot", "once=z"], None),
    "boot-bool": (["-boot", "menu=maybe"], None),
    "boot-int": (["-boot", "menu=on,splash-time=abc"], None),
    "boot-before-machine-props": (["-boot", "order=xyz", "-machine", "pc,bogus=1"], None),
    "sandbox-enable": (["-sandbox", "bogus"], None),
    "sandbox-param": (["-sandbox", "on,foo=bar"], None),
    "sandbox-value": (["-sandbox", "on,spawn=maybe"], None),
    "sandbox-before-rtc": (["-rtc", "base=foo", "-sandbox", "on,spawn=maybe"], None),
    "global-short-form": (["-global", "bogus"], None),
    "global-no-dot": (["-global", "nosuchprop=1"], None),
    "global-incomplete": (["-global", "driver=kvm-pit"], None),
    "chardev-no-id": (["-chardev", "socket,path={tmp}/m.sock,server=on,wait=off"], None),
    "chardev-driver": (["-chardev", "bogus,id=c0"], None),
    "chardev-param": (["-chardev", "socket,id=c0,bogus=1"], None),
    "chardev-fd-parse": (["-chardev", "socket,id=c0,fd=abc,server=on,wait=off"], None),
    "chardev-fd-not-socket": (["-chardev", "socket,id=c0,fd=99,server=on,wait=off"], None),
    "chardev-two-addresses": (["-chardev", SOCK + ",host=1.2.3.4"], None),
    "chardev-no-port": (["-chardev", "socket,id=c0,host=127.0.0.1,server=on,wait=off"], None),
    "chardev-duplicate": (["-chardev", SOCK, "-chardev", "socket,id=c0,path={tmp}/n.sock,server=on,wait=off"], None),
    "chardev-client-missing": (["-chardev", "socket,id=c0,path={tmp}/none.sock"], None),
    "chardev-before-machine": (["-machine", "pc,bogus=1", "-chardev", "socket,id=c0,fd=abc,server=on,wait=off"],
                               None),
    "rtc-before-chardev": (["-chardev", "socket,id=c0,fd=abc,server=on,wait=off", "-rtc", "base=foo"], None),
    "mon-not-found": (["-mon", "chardev=nope,mode=control"], None),
    "mon-no-chardev": (["-mon", "mode=control"], None),
    "mon-mode": (["-mon", "chardev=c0,mode=bogus"], None),
    "mon-param": (["-mon", "chardev=c0,bogus=1", "-uuid", "bad"], None),
    "mon-in-use": (["-chardev", SOCK, "-mon", "chardev=c0,mode=control", "-mon", "chardev=c0,mode=control"], None),
    "mon-after-smp": (["-mon", "chardev=nope,mode=control", "-smp", "1000"], None),
    "mon-before-cpu": (["-mon", "chardev=nope,mode=control", "-cpu", "nosuch"], None),
    "mon-after-machine-props": (["-mon", "chardev=nope,mode=control", "-machine", "pc,bogus=1"], None),
    "machine-prop": (["-machine", "pc,bogus=on"], "PROG: Property 'pc-i440fx-7.2-machine.bogus' not found\n"),
    "machine-prop-q35": (["-machine", "q35,nosuch=1"], None),
    "machine-prop-before-smp": (["-machine", "pc,bogus=on", "-smp", "1000"], None),
    "machine-bool": (["-machine", "pc,usb=maybe"], None),
    "machine-onoffauto": (["-machine", "pc,vmport=foo"], None),
    "machine-dump-guest-core": (["-machine", "pc,dump-guest-core=x"], None),
    "machine-merged": (["-machine", "q35", "-machine", "usb=maybe"], None),
    "machine-accel-and-accel": (["-machine", "pc,accel=tcg", "-accel", "tcg"], None),
    "enable-kvm-and-accel": (["-enable-kvm", "-accel", "tcg"], None),
    "machine-accel-invalid": (["-machine", "pc,accel=bogus"], None),
    "machine-accel-fallback-then-smp": (["-machine", "pc,accel=bogus:tcg", "-smp", "1000"], None),
    "machine-accel-fallback-then-cpu": (["-machine", "pc,accel=bogus:tcg", "-cpu", "nosuch"], None),
    "machine-accel-invalid-after-smp": (["-machine", "pc,accel=bogus", "-smp", "1000"], None),
    "machine-accel-invalid-before-mon": (["-machine", "pc,accel=bogus", "-mon", "chardev=nope,mode=control"], None),
    "memory-backend-missing": (["-machine", "pc,memory-backend=ram0"], "PROG: Memory backend 'ram0' not found\n"),
    "memory-backend-size": (["-machine", "pc,memory-backend=ram0", "-object", "memory-backend-ram,id=ram0,size=128M",
                             "-m", "256M"], None),
    "memory-backend-after-cpu": (["-machine", "pc,memory-backend=x", "-cpu", "nosuch"], None),
    "memory-backend-before-numa": (["-machine", "pc,memory-backend=x", "-numa", "node,nodeid=5"], None),
    "short-form-booleans": (["-chardev", "socket,id=c0,path={tmp}/m.sock,server,nowait", "-mon",
                             "chardev=c0,mode=control", "-name", "g,debug-threads", "-smp", "1000"], None),
    "msg-timestamp": (["-msg", "timestamp=on", "-smp", "1000"], None),
    "msg-guest-name": (["-msg", "timestamp=on,guest-name=on", "-name", "g1", "-smp", "1000"], None),
    "daemonize-refused": (["-daemonize", "-smp", "1000", "-qmp", "unix:{tmp}/d.sock,server=on,wait=off"], None),
    "daemonize-stdio": (["-daemonize", "-chardev", "stdio,id=c", "-mon", "chardev=c,mode=control"], None),
    "daemonize-pidfile-dir": (["-daemonize", "-pidfile", "{tmp}/no/such/dir/x.pid", "-qmp",
                               "unix:{tmp}/d.sock,server=on,wait=off"], None),
    "qmp-bind": (["-qmp", "unix:{tmp}/no/such/dir/q.sock,server=on,wait=off"], None),
}
REFUSED_PPC = {
    "machine-prop-pseries": (["-machine", "pseries,vmport=off"], "PROG: Property 'pseries-7.2-machine.vmport' not found\n"),
}

#: cases that need a real process (file descriptors, binding, daemonizing, the program name)
PROCESS = {"invalid-option", "chardev-fd-not-socket", "daemonize-refused", "daemonize-stdio",
           "daemonize-pidfile-dir", "qmp-bind", "chardev-client-missing", "machine-prop"}

_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ", re.M)


def _parity(cases: dict, arch: str):
    require_qemu(arch)
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(cases, pool.map(lambda name: run_both(P + cases[name][0], arch,
                                                                 in_process=name not in PROCESS), cases)))
    problems = []
    for name, ((q_rc, q_err), (c_rc, c_err)) in results.items():
        q_err, c_err = _TS.sub("<timestamp> ", q_err), _TS.sub("<timestamp> ", c_err)
        expected = cases[name][1]
        if q_rc != 1 or (expected is not None and q_err != expected):
            problems.append(f"{name}: QEMU itself changed: rc={q_rc} {q_err!r}")
        if (c_rc, c_err) != (q_rc, q_err):
            problems.append(f"{name}:\n  QEMU   rc={q_rc} {q_err!r}\n  cpuhot rc={c_rc} {c_err!r}")
    assert not problems, "\n".join(problems)


def test_refusals_match_qemu_x86():
    _parity(REFUSED, "x86_64")


def test_refusals_match_qemu_ppc64():
    _parity(REFUSED_PPC, "ppc64")


def test_refusals_without_qemu_use_the_program_name():
    """The same messages, checked without QEMU: the program's own name is the prefix."""
    for prog in ("cpuhot-system-x86_64", "cpuhot-system-ppc64", "cpuhot"):
        r = subprocess.run([script(prog), "-foo"], capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stderr, r.stdout) == (1, f"{prog}: -foo: invalid option\n", "")
    r = subprocess.run([script("cpuhot-system-x86_64"), *P, "-machine", "pc,bogus=on"], capture_output=True,
                       text=True, timeout=30)
    assert r.stderr == "cpuhot-system-x86_64: Property 'pc-i440fx-7.2-machine.bogus' not found\n"


def test_readline_monitor_is_refused_clearly(tmp_path):
    r = subprocess.run([script("cpuhot-system-x86_64"), *P, "-chardev", f"socket,id=c0,path={tmp_path}/m.sock,"
                        "server=on,wait=off", "-mon", "chardev=c0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("cpuhot-system-x86_64: -mon chardev=c0: cpuhot serves QMP monitors only")
    assert "mode=readline" in r.stderr and "human-monitor-command" in r.stderr


def test_arch_comes_from_the_program_name(tmp_path):
    srv = Server(script("cpuhot-system-ppc64"), P)
    try:
        with srv.client() as q:
            assert q.execute("query-target") == {"arch": "ppc64"}
            assert q.execute("query-hotpluggable-cpus")[0]["type"].endswith("-spapr-cpu-core")
    finally:
        srv.stop()


#: accepted command lines: the queries must answer as QEMU's do, stderr must say the same
ACCEPTED = [
    P + ["-machine", "q35,accel=tcg,usb=off,vmport=off,dump-guest-core=off,memory-backend=pc.ram",
         "-object", "memory-backend-ram,id=pc.ram,size=256M", "-m", "256M",
         "-uuid", "12345678-1234-1234-1234-123456789ABC", "-name", "guest=vm1,debug-threads=on",
         "-smp", "2,maxcpus=4", "-overcommit", "mem-lock=off", "-rtc", "base=utc,driftfix=slew", "-no-shutdown",
         "-boot", "strict=on", "-msg", "timestamp=on", "-global", "kvm-pit.lost_tick_policy=delay",
         "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"],
    P + ["-name", "debug-threads=on", "-global", "nosuch.prop=1", "-machine", "pc,accel=bogus:tcg",
         "-global", "driver=kvm-pit,property=lost_tick_policy,value=delay", "-boot", "cd"],
    P + ["-enable-kvm", "-machine", "pc,accel=tcg", "-uuid", "00000000-0000-0000-0000-0000000000ff",
         "-name", "plain"],
]
QUERIES = ["query-name", "query-uuid", "query-status", "query-kvm", "query-hotpluggable-cpus"]


def _observe(binary: str, argv: list[str]):
    srv = Server(binary, argv)
    try:
        with srv.client() as q:
            answers = {c: q.execute(c) for c in QUERIES}
            answers["cpus"] = [(c["cpu-index"], c["qom-path"], c["props"]) for c in q.execute("query-cpus-fast")]
            q.execute("quit")
        srv.proc.wait(10)
    finally:
        err = srv.stop()
    return answers, _TS.sub("<timestamp> ", err)


@pytest.mark.parametrize("argv", ACCEPTED, ids=["libvirt-like", "warnings", "enable-kvm-then-machine-accel"])
def test_accepted_options_answer_like_qemu(argv):
    qemu = require_qemu()
    with ThreadPoolExecutor(2) as pool:
        (q_answers, q_err), (c_answers, c_err) = pool.map(lambda b: _observe(b, argv),
                                                          [qemu, script("cpuhot-system-x86_64")])
    assert c_answers == q_answers
    assert c_err.replace("cpuhot-system-x86_64", "PROG") == q_err.replace(QEMU["x86_64"], "PROG")
