"""Scenarios recorded from real QEMU 7.2 by record.py.

A scenario is a dict built by :func:`sc`; its ``steps`` are *actions* (dicts with an ``op``)
that record.py executes against real QEMU, recording everything into the transcript.
The helpers below keep the scenario list terse:

    connect(c="c0", vm="vm0")  connect a client (reads the greeting unless greeting=False)
    negotiate()                {"execute": "qmp_capabilities"}
    qmp(cmd, {...}, cid=ID, replies=1, settle=None, **kw)
                               send {"execute": cmd, "arguments": {...}/kw, "id": cid};
                               kw names use '_' for '-' (socket_id -> socket-id)
    raw(b"...", replies=1)     send exact bytes; replies=0 records a quiet period (recv_none)
    settle(t)                  record what arrives until t seconds of silence, then recv_none
    recv(n)                    record the next n messages (e.g. a delayed greeting)
    close(), eof()             close the client / read until the server closes
    wait_exit(vm)              wait until the VM process exits by itself (exit code recorded)
    until(pred), poll(obj, pred)  wait for an event / repeat a command until pred(reply)

``start()`` = connect + negotiate; ``queries()`` = query-hotpluggable-cpus + query-cpus-fast.
"""

from __future__ import annotations

X86 = "qemu-system-x86_64"
PPC = "qemu-system-ppc64"
PREFIX = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg"]
VOLATILE = ["timestamp", "thread-id", "thread_id", "package"]   # thread_id: query-cpus (<= 5.2)
QUIET = 0.3  # seconds of silence recorded as recv_none when no reply is expected

QEMU64 = "qemu64-x86_64-cpu"
P9 = "power9_v2.0-spapr-cpu-core"
P8 = "power8_v2.0-spapr-cpu-core"

_SCENARIOS: list[dict] = []


# --------------------------------------------------------------------------- building blocks


def _kw(kw: dict) -> dict:
    return {k.replace("_", "-"): v for k, v in kw.items()}


def _flat(items) -> list:
    out = []
    for i in items:
        if isinstance(i, (list, tuple)):
            out.extend(_flat(i))
        elif i is not None:
            out.append(i)
    return out


def _on(a: dict, c, vm) -> dict:
    if c is not None:
        a["c"] = c
    if vm is not None:
        a["vm"] = vm
    return a


def connect(c="c0", vm="vm0", greeting=True):
    return {"op": "connect", "c": c, "vm": vm, "greeting": greeting}


_NO = object()  # "no id": cid=None sends "id": null


def qmp(cmd, args=None, *, cid=_NO, replies=1, settle=None, c=None, oob=False, timeout=None, **kw):
    obj = {("exec-oob" if oob else "execute"): cmd}
    if args is None and kw:
        args = _kw(kw)
    elif kw:
        args = dict(args, **_kw(kw))
    if args is not None:
        obj["arguments"] = args
    if cid is not _NO:
        obj["id"] = cid
    return send(obj, replies=replies, settle=settle, c=c, timeout=timeout)


def send(obj, replies=1, settle=None, c=None, timeout=None):
    a = {"op": "send", "obj": obj, "replies": replies}
    if settle is not None:
        a["settle"] = settle
    if timeout is not None:
        a["timeout"] = timeout
    return _on(a, c, None)


def raw(data, replies=1, settle=None, c=None):
    if isinstance(data, str):
        data = data.encode()
    a = {"op": "raw", "data": data, "replies": replies}
    if settle is not None:
        a["settle"] = settle
    return _on(a, c, None)


def settle(t=QUIET, c=None):
    return _on({"op": "settle", "t": t}, c, None)


def recv(n=1, c=None):
    return _on({"op": "recv", "n": n}, c, None)


def close(c=None):
    return _on({"op": "close"}, c, None)


def eof(c=None):
    return _on({"op": "eof"}, c, None)


def wait_exit(vm="vm0", timeout=10.0):
    return {"op": "wait_exit", "vm": vm, "timeout": timeout}


def until(pred, c=None, timeout=30.0):
    return _on({"op": "until", "pred": pred, "timeout": timeout}, c, None)


def poll(obj, pred, c=None, interval=0.5, timeout=30.0):
    return _on({"op": "poll", "obj": obj, "pred": pred, "interval": interval, "timeout": timeout}, c, None)


def negotiate(c=None, **kw):
    return qmp("qmp_capabilities", c=c, **kw)


def start(c="c0", vm="vm0"):
    return [connect(c, vm), negotiate(c=c)]


def qhc(c=None, **kw):
    return qmp("query-hotpluggable-cpus", c=c, **kw)


def qcf(c=None, **kw):
    return qmp("query-cpus-fast", c=c, **kw)


def queries(c=None):
    return [qhc(c=c), qcf(c=c)]


def dadd(driver, c=None, cid=_NO, **props):
    return qmp("device_add", {"driver": driver, **_kw(props)}, c=c, cid=cid)


def cpu(s=None, core=None, t=None, id=None, driver=QEMU64, c=None, **extra):
    """x86 device_add by topology ids (None = leave the property out)."""
    p = {}
    if id is not None:
        p["id"] = id
    if s is not None:
        p["socket-id"] = s
    if core is not None:
        p["core-id"] = core
    if t is not None:
        p["thread-id"] = t
    p.update(_kw(extra))
    return qmp("device_add", {"driver": driver, **p}, c=c)


def core(cid_=None, id=None, driver=P9, c=None, **extra):
    """pseries core device_add."""
    p = {}
    if id is not None:
        p["id"] = id
    if cid_ is not None:
        p["core-id"] = cid_
    p.update(_kw(extra))
    return qmp("device_add", {"driver": driver, **p}, c=c)


def ddel(id, c=None, settle=None, cid=_NO):
    return qmp("device_del", {"id": id}, c=c, settle=settle, cid=cid)


def hmp(line, c=None):
    return qmp("human-monitor-command", {"command-line": line}, c=c)


def qom_get(path, prop, c=None):
    return qmp("qom-get", {"path": path, "property": prop}, c=c)


def vm(args, binary=X86, prefix=None):
    return {"binary": binary, "args": list(args), "prefix": list(PREFIX if prefix is None else prefix)}


def sc(name, description, tags, args=None, steps=(), binary=X86, vms=None, prefix=None,
       volatile_keys=(), volatile_patterns=(), only_versions=None):
    """A scenario; ``only_versions=["10.0"]`` records it only against those QEMU releases."""
    if vms is None:
        vms = {"vm0": vm(args or [], binary, prefix)}
    s = {
        "name": name,
        "description": description,
        "tags": list(tags),
        "vms": vms,
        "steps": _flat(steps),
        "volatile_keys": VOLATILE + [k for k in volatile_keys if k not in VOLATILE],
        "volatile_patterns": list(volatile_patterns),
    }
    if only_versions is not None:
        s["only_versions"] = list(only_versions)
    _SCENARIOS.append(s)
    return s


def refused(name, description, tags, args, binary=X86, only_versions=None):
    """A start-up that QEMU refuses: only the exit code and stderr are recorded."""
    return sc(name, description, list(tags) + ["startup-refusal"], args=args, binary=binary, steps=[],
              only_versions=only_versions)


def started(name, description, tags, args, binary=X86, extra=(), only_versions=None):
    """A start-up that works: negotiate, then both CPU queries (and `extra`)."""
    return sc(name, description, tags, args=args, binary=binary, steps=[start(), queries(), extra],
              only_versions=only_versions)


def all_scenarios() -> list[dict]:
    return list(_SCENARIOS)


# =========================================================================== 1. protocol

PC = ["-machine", "pc"]
PCS = ["-machine", "pc", "-smp", "1,maxcpus=4"]

sc("proto-greeting", "the greeting is the first line on connect; negotiation answers {}",
   ["protocol", "x86"], PC, [connect(), negotiate(), close()])

sc("proto-greeting-ppc64", "qemu-system-ppc64 sends the same greeting",
   ["protocol", "ppc"], ["-machine", "pseries"], [connect(), negotiate(), close()], binary=PPC)

sc("proto-pre-negotiation", "every execute before qmp_capabilities (known, unknown, empty, with ids) is CommandNotFound",
   ["protocol", "negotiation"], PC,
   [connect(),
    qmp("query-status"),
    qmp("query-status", cid="pre-1"),
    qmp("nosuch-command", cid=2),
    qmp("device_add", {"driver": QEMU64}, cid="da"),
    qmp("quit", cid="q"),
    qmp("qmp_capabilities", {"bogus": 1}, cid="bad-neg"),
    qmp(""),
    raw('{"execute": "query-status", "arguments": [], "id": 9}\n'),
    raw('[1]\n'),
    raw('{"id": 5}\n'),
    negotiate(cid="neg"),
    qmp("query-status", cid="post")])

sc("proto-caps-enable-empty", "qmp_capabilities with enable: [] succeeds",
   ["protocol", "negotiation"], PC,
   [connect(), qmp("qmp_capabilities", {"enable": []}), qmp("query-status")])

sc("proto-caps-enable-oob-twice", "enable: [\"oob\", \"oob\"] is accepted",
   ["protocol", "negotiation", "oob"], PC,
   [connect(), qmp("qmp_capabilities", {"enable": ["oob", "oob"]}), qmp("query-status")])

sc("proto-caps-enable-nosuch", "an unknown capability is refused (Parameter 'null' ...) and leaves the session un-negotiated",
   ["protocol", "negotiation"], PC,
   [connect(), qmp("qmp_capabilities", {"enable": ["nosuch"]}, cid=1), qmp("query-status", cid=2),
    qmp("qmp_capabilities", {"enable": ["oob", "nosuch"]}, cid=3),
    negotiate(), qmp("query-status", cid=4)])

sc("proto-caps-enable-not-list", "enable given as a string, object, null is a type error",
   ["protocol", "negotiation"], PC,
   [connect(), qmp("qmp_capabilities", {"enable": "oob"}), qmp("qmp_capabilities", {"enable": {}}),
    qmp("qmp_capabilities", {"enable": None}), qmp("qmp_capabilities", {"enable": [1]}),
    qmp("query-status")])

sc("proto-caps-bogus-arg", "an unknown qmp_capabilities argument is refused; session stays un-negotiated",
   ["protocol", "negotiation"], PC,
   [connect(), qmp("qmp_capabilities", {"bogus": 1}), qmp("query-status"), negotiate(), qmp("query-status")])

sc("proto-caps-twice", "a second qmp_capabilities is CommandNotFound (already complete), also with id and with args",
   ["protocol", "negotiation"], PC,
   [connect(), negotiate(cid="first"), negotiate(cid="second"), negotiate(),
    qmp("qmp_capabilities", {"enable": ["oob"]}, cid="third"), qmp("query-status")])

sc("proto-caps-per-connection", "negotiation state belongs to the connection: a new client must negotiate again",
   ["protocol", "negotiation"], PC,
   [start(), qmp("query-status"), close(),
    connect("c1"), qmp("query-status", c="c1"), negotiate(c="c1"), qmp("query-status", c="c1")])

_IDS = ["str", "", 42, 0, -7, 12345678901234567890, 18446744073709551616, 123456789012345678901234567890,
        -9223372036854775809, 1.5, 0.1, 2.0, -0.0, 1e300, {"a": [1, {"b": None}]}, {}, [1, "two"], [],
        True, False, None, "caf\u00e9 \u2603"]

sc("proto-id-echo-success", "the id of every JSON type is echoed on a successful reply",
   ["protocol", "id"], PC, [start(), [qmp("query-status", cid=i) for i in _IDS]])

sc("proto-id-echo-error", "the id of every JSON type is echoed on an error reply (unknown command)",
   ["protocol", "id"], PC, [start(), [qmp("nosuch", cid=i) for i in _IDS]])

sc("proto-id-echo-raw", "ids whose wire text matters: 1e400 makes QEMU emit invalid JSON (inf), exponent forms, escapes",
   ["protocol", "id", "malformed-output"], PC,
   [start(),
    raw('{"execute": "query-status", "id": 1e400}\n'),
    raw('{"execute": "query-status", "id": -1e400}\n'),
    raw('{"execute": "query-status", "id": 1E2}\n'),
    raw('{"execute": "query-status", "id": 1.0e-5}\n'),
    raw('{"execute": "query-status", "id": 100000000000000000000.0}\n'),
    raw('{"execute": "query-status", "id": -0}\n'),
    raw('{"execute": "query-status", "id": "tab\\there \\"q\\" \\\\ \\/ \\u0001 \\u007f"}\n'),
    raw('{"execute": "query-status", "id": "\\ud83d\\ude00"}\n'),
    raw('{"execute": "query-status", "id": "caf\xc3\xa9"}\n'.encode("latin-1")),
    raw('{"execute": "nosuch", "id": 1e400}\n')])

sc("proto-shape-not-object", "top-level values that are not objects (id cannot be echoed)",
   ["protocol", "shape"], PC,
   [start(), raw("[]\n"), raw('[{"execute": "query-status"}]\n'), raw('"query-status"\n'), raw("42\n"),
    raw("1.5\n"), raw("null\n"), raw("true\n"), raw('"\\u0000"\n')])

sc("proto-shape-lacks-execute", "objects without execute",
   ["protocol", "shape"], PC,
   [start(), raw("{}\n"), raw('{"id": 1}\n'), raw('{"arguments": {}}\n'), raw('{"arguments": {}, "id": "x"}\n'),
    raw('{"Execute": "query-status", "id": "case"}\n')])

sc("proto-shape-execute-not-string", "execute of a non-string type",
   ["protocol", "shape"], PC,
   [start(), raw('{"execute": 1, "id": 1}\n'), raw('{"execute": null, "id": 2}\n'),
    raw('{"execute": ["query-status"], "id": 3}\n'), raw('{"execute": {}, "id": 4}\n'),
    raw('{"execute": true}\n')])

sc("proto-shape-arguments-not-object", "arguments that are not an object",
   ["protocol", "shape"], PC,
   [start(), raw('{"execute": "query-status", "arguments": [], "id": 1}\n'),
    raw('{"execute": "query-status", "arguments": "x", "id": 2}\n'),
    raw('{"execute": "query-status", "arguments": null, "id": 3}\n'),
    raw('{"execute": "query-status", "arguments": 0}\n'),
    raw('{"execute": "nosuch", "arguments": []}\n'),
    raw('{"execute": "query-status", "arguments": {}, "id": 4}\n')])

sc("proto-shape-unknown-key", "unknown top-level keys are refused",
   ["protocol", "shape"], PC,
   [start(), raw('{"execute": "query-status", "extra": 1, "id": 1}\n'),
    raw('{"execute": "query-status", "control": {"run-oob": true}}\n'),
    raw('{"execute": "nosuch", "extra": 1}\n'),
    raw('{"extra": 1}\n')])

sc("proto-shape-exec-oob-without-oob", "exec-oob when oob was not enabled; execute+exec-oob clash",
   ["protocol", "shape", "oob"], PC,
   [start(), raw('{"exec-oob": "query-status", "id": 1}\n'),
    raw('{"execute": "query-status", "exec-oob": "query-status", "id": 2}\n'),
    raw('{"exec-oob": 5, "id": 3}\n')])

sc("proto-empty-command", "execute \"\" is CommandNotFound with two spaces",
   ["protocol"], PC, [start(), qmp(""), qmp("", cid="e"), qmp(" "), qmp("query-status ")])

sc("proto-unknown-commands", "commands absent in 7.2",
   ["protocol", "legacy"], PC,
   [start(), [qmp(n, cid=n) for n in ["cpu-add", "cpu_add", "query-cpus", "query-events", "x-oob-test", "nosuch",
                                      "QUERY-STATUS", "query_status", "device-add", "device-del"]],
    qmp("cpu-add", {"id": 1})])

sc("proto-unknown-argument", "unknown arguments of known commands",
   ["protocol"], PC,
   [start(), qmp("query-cpus-fast", {"x": 1}), qmp("query-hotpluggable-cpus", {"x": 1}, cid=2),
    qmp("quit", {"x": 1}), qmp("device_del", {"id": "a", "x": 1}), qmp("query-status", {"x": 1}),
    qmp("query-version", {"verbose": True}), qmp("query-status")])

sc("proto-json-expecting-value", "JSON syntax errors: expecting value",
   ["protocol", "malformed"], PC,
   [start(), raw('{"execute": }\n'), raw("{]\n"), raw('{"execute": "query-status",}\n'),
    raw('{"execute" "query-status"}\n'), raw("]\n"), raw("}\n"), raw(":\n"), raw(",\n"), qmp("query-status")])

sc("proto-json-invalid-keyword", "bare words",
   ["protocol", "malformed"], PC,
   [start(), raw("nonsense\n"), raw('{"execute": nonsense}\n', replies=None, settle=QUIET),
    raw("True\n"), raw("nul\n", replies=None, settle=QUIET), qmp("query-status")])

sc("proto-json-stray-bytes", "bytes ff fe give two stray-byte errors; connection stays usable",
   ["protocol", "malformed"], PC,
   [start(), raw(b"\xff\xfe\n", replies=2), qmp("query-status")])

sc("proto-json-stray-bytes-misc", "other invalid bytes: NUL, invalid UTF-8 inside a string, control char in a string",
   ["protocol", "malformed"], PC,
   [start(), raw(b"\x00\n", replies=None, settle=QUIET),
    raw(b'{"execute": "query-status", "id": "\xff"}\n', replies=None, settle=QUIET),
    raw(b'{"execute": "query-status", "id": "a\tb"}\n', replies=None, settle=QUIET),
    raw(b"\xc3\n", replies=None, settle=QUIET),
    qmp("query-status")])

sc("proto-json-duplicate-key", "duplicate keys are a parse error",
   ["protocol", "malformed"], PC,
   [start(), raw('{"execute": "query-status", "execute": "query-status"}\n'),
    raw('{"execute": "query-status", "id": 1, "id": 2}\n'),
    raw('{"execute": "query-status", "arguments": {"a": 1, "a": 1}}\n'), qmp("query-status")])

sc("proto-json-nesting-1024", "1024 nesting levels still parse (then: not an object)",
   ["protocol", "malformed"], PC,
   [start(), raw("[" * 1024 + "]" * 1024 + "\n"), raw('{"execute": "query-status", "id": ' + "[" * 100 + "]" * 100 + "}\n"),
    qmp("query-status")])

sc("proto-json-nesting-1025", "1025 nesting levels: depth limit error, then the closing brackets",
   ["protocol", "malformed"], PC,
   [start(), raw("[" * 1025 + "\n", replies=1, settle=QUIET), raw("]" * 1025 + "\n", replies=1025, settle=QUIET),
    qmp("query-status")])

sc("proto-json-nesting-1025-one-write", "1025 '[' and 1025 ']' in one write",
   ["protocol", "malformed"], PC,
   [start(), raw("[" * 1025 + "]" * 1025 + "\n", replies=1026, settle=QUIET), qmp("query-status")])

sc("proto-json-incomplete-then-complete", "an incomplete object waits for more input",
   ["protocol", "malformed"], PC,
   [start(), raw('{"execute": "query-status"\n', replies=0), raw("}\n")])

sc("proto-json-two-objects-one-write", "two objects in one write give two replies in order",
   ["protocol"], PC,
   [start(), raw('{"execute": "query-status", "id": 1}{"execute": "nosuch", "id": 2}\n', replies=2),
    raw('{"execute": "query-status", "id": 3}\n{"execute": "query-kvm", "id": 4}\n', replies=2)])

sc("proto-json-single-quotes", "single-quoted strings are accepted",
   ["protocol"], PC,
   [start(), raw("{'execute': 'query-status', 'id': 'single-quotes'}\n"),
    raw("{'execute': 'query-status', 'id': 'it\\'s'}\n"),
    raw("{\"execute\": 'query-status', 'id': \"mixed\"}\n")])

sc("proto-json-unicode-escapes", "\\u escapes in names and values",
   ["protocol"], PC,
   [start(), raw('{"execute": "query-\\u0073tatus", "id": "\\u0041"}\n'),
    raw('{"\\u0065xecute": "query-status"}\n'),
    raw('{"execute": "query-status", "id": "\\u00e9\\u20ac"}\n')])

sc("proto-json-split-sends", "one command split across several sends, no trailing newline",
   ["protocol"], PC,
   [start(), raw('{"exe', replies=0, settle=0.1), raw('cute": "query-', replies=0, settle=0.1),
    raw('status", "id": "sp', replies=0, settle=0.1), raw('lit"}'),
    raw('{"execute": "query-status"}')])

sc("proto-json-whitespace", "whitespace, CRLF and blank lines between commands",
   ["protocol"], PC,
   [start(), raw("\n\n   \r\n", replies=0), raw(' \t{ "execute" :\r\n "query-status" , "id" : 1 }  \r\n')])

sc("proto-oob-enabled", "with oob enabled: exec-oob of a non-OOB command, of an unknown command, without id, and migrate-pause",
   ["protocol", "oob"], PC,
   [connect(), qmp("qmp_capabilities", {"enable": ["oob"]}),
    raw('{"exec-oob": "query-status", "id": "o1"}\n'),
    raw('{"exec-oob": "nosuch", "id": "o2"}\n'),
    raw('{"exec-oob": "query-status"}\n'),
    raw('{"exec-oob": "migrate-pause", "id": "o3"}\n'),
    raw('{"execute": "query-status", "exec-oob": "query-status", "id": "o4"}\n'),
    qmp("query-status", cid="normal")])

sc("proto-second-client-waits", "a second client gets no greeting until the first closes, then must negotiate",
   ["protocol", "multi-client"], PC,
   [start(), connect("c1", greeting=False), settle(QUIET, c="c1"), qmp("query-status", cid="c0"),
    settle(0.1, c="c1"), close("c0"), recv(1, c="c1"), qmp("query-status", c="c1"), negotiate(c="c1"),
    qmp("query-status", c="c1")])

sc("proto-quit", "quit: SHUTDOWN event, then the reply, then EOF; exit code 0",
   ["protocol", "events", "quit"], PC, [start(), qmp("quit"), eof(), wait_exit()])

sc("proto-quit-with-id", "quit with an id",
   ["protocol", "events", "quit"], PC, [start(), qmp("quit", cid="q"), eof(), wait_exit()])

sc("proto-quit-running", "quit of a running VM (after cont)",
   ["protocol", "events", "quit"], PC, [start(), qmp("cont"), qmp("quit"), eof(), wait_exit()])

sc("proto-queries-x86", "misc queries on x86_64",
   ["protocol", "queries", "x86"], PC,
   [start(), [qmp(q) for q in ["query-status", "query-version", "query-target", "query-kvm", "query-name",
                               "query-uuid"]]])

sc("proto-queries-ppc64", "misc queries on ppc64",
   ["protocol", "queries", "ppc"], ["-machine", "pseries"],
   [start(), [qmp(q) for q in ["query-status", "query-version", "query-target", "query-kvm", "query-name",
                               "query-uuid"]]], binary=PPC)

sc("proto-queries-name-uuid", "query-name / query-uuid with -name and -uuid",
   ["protocol", "queries", "x86"], PC + ["-name", "guest1", "-uuid", "12345678-1234-1234-1234-123456789abc"],
   [start(), qmp("query-name"), qmp("query-uuid")])

sc("proto-events-cont-stop", "cont from prelaunch (RESUME), stop (STOP), stop again (no event), cont again",
   ["protocol", "events"], PC,
   [start(), qmp("query-status"), qmp("cont"), qmp("query-status"), qmp("stop"), qmp("query-status"),
    qmp("stop", settle=QUIET), qmp("query-status"), qmp("cont"), qmp("cont", settle=QUIET), qmp("query-status")])

sc("proto-events-system-reset", "system_reset in prelaunch and when running",
   ["protocol", "events"], PC,
   [start(), qmp("system_reset", settle=QUIET), qmp("query-status"), qmp("cont"),
    qmp("system_reset", settle=QUIET), qmp("query-status")])

sc("proto-events-system-powerdown", "system_powerdown in prelaunch and when running (no guest: only POWERDOWN)",
   ["protocol", "events"], PC,
   [start(), qmp("system_powerdown", settle=QUIET), qmp("query-status"), qmp("cont"),
    qmp("system_powerdown", settle=QUIET), qmp("query-status")])

sc("proto-no-S-running", "without -S the VM starts running (no event for that)",
   ["protocol", "events"], PC, [start(), qmp("query-status"), qmp("stop"), qmp("query-status")],
   prefix=["-nodefaults", "-display", "none", "-accel", "tcg"])

sc("proto-events-ppc64", "cont/stop/system_reset/system_powerdown on pseries",
   ["protocol", "events", "ppc"], ["-machine", "pseries"],
   [start(), qmp("cont"), qmp("stop"), qmp("system_reset", settle=QUIET), qmp("system_powerdown", settle=QUIET),
    qmp("query-status")], binary=PPC)

sc("proto-query-commands-x86", "query-commands on qemu-system-x86_64",
   ["protocol", "queries", "x86"], PC, [start(), qmp("query-commands")])

sc("proto-query-commands-ppc64", "query-commands on qemu-system-ppc64",
   ["protocol", "queries", "ppc"], ["-machine", "pseries"], [start(), qmp("query-commands")], binary=PPC)

sc("machines-query-x86", "query-machines on qemu-system-x86_64",
   ["machines", "queries", "x86"], PC, [start(), qmp("query-machines")])

sc("machines-query-ppc64", "query-machines on qemu-system-ppc64",
   ["machines", "queries", "ppc"], ["-machine", "pseries"], [start(), qmp("query-machines")], binary=PPC)


# =========================================================================== 3. -smp parsing

def _pc(smp=None, machine="pc"):
    a = ["-machine", machine]
    if smp is not None:
        a += ["-smp", smp]
    return a


def _ps(smp=None, machine="pseries"):
    return _pc(smp, machine)


for _name, _smp, _what in [
    ("none", None, "no -smp: 1 CPU"),
    ("3", "3", "-smp 3 -> 1 socket x 3 cores"),
    ("2-maxcpus-6", "2,maxcpus=6", "-smp 2,maxcpus=6 -> 1 x 6 cores, 2 present"),
    ("sockets-2", "sockets=2", "only sockets=2 -> 2 CPUs (maxcpus = product)"),
    ("cores2-threads2", "cores=2,threads=2", "cores=2,threads=2 -> 4 CPUs"),
    ("2-maxcpus9-cores3", "2,maxcpus=9,cores=3", "cores given, sockets derived: 3 sockets"),
    ("4-maxcpus8-threads2", "4,maxcpus=8,threads=2", "threads given: 1 x 4 x 2"),
    ("6-sockets2-threads3", "6,sockets=2,threads=3", "sockets and threads given: 2 x 1 x 3"),
    ("sockets2-cores2-maxcpus8", "2,sockets=2,cores=2,maxcpus=8", "threads derived: 2 x 2 x 2"),
    ("dies2", "4,maxcpus=8,sockets=2,dies=2", "dies on pc: 2 sockets x 2 dies x 2 cores, die-id in props"),
]:
    started(f"smp-pc-{_name}", _what, ["smp", "x86", "pc"], _pc(_smp))

for _name, _smp, _what in [
    ("0", "0", "-smp 0: deprecated zero warning, 1 CPU"),
    ("empty", "", "-smp \"\": 1 CPU"),
    ("0-maxcpus0", "0,maxcpus=0", "-smp 0,maxcpus=0: 1 CPU"),
    ("zero-sockets", "2,sockets=0,cores=2", "sockets=0 is treated as omitted and warns"),
    ("zero-threads", "4,threads=0,maxcpus=4", "threads=0 is treated as omitted and warns"),
]:
    started(f"smp-pc-{_name}", _what, ["smp", "x86", "pc", "warning"], _pc(_smp))

started("smp-q35-dies2", "dies on q35 (accepted)", ["smp", "x86", "q35"], _pc("2,maxcpus=8,sockets=2,dies=2,cores=2", "q35"))
started("smp-q35-2-maxcpus-6", "q35 -smp 2,maxcpus=6", ["smp", "x86", "q35"], _pc("2,maxcpus=6", "q35"))
started("smp-pc-maxcpus-255", "pc -smp 1,maxcpus=255 works under TCG (max APIC id 254)", ["smp", "x86", "pc", "limits"],
        _pc("1,maxcpus=255"))
started("smp-q35-maxcpus-255", "q35 -smp 1,maxcpus=255 works under TCG", ["smp", "x86", "q35", "limits"],
        _pc("1,maxcpus=255", "q35"))
started("smp-pc-192-cores3", "pc 192 CPUs with cores=3 (APIC id 254) works", ["smp", "x86", "pc", "limits"],
        _pc("1,maxcpus=192,cores=3"))
started("smp-pseries-3", "pseries -smp 3", ["smp", "ppc", "pseries"], _ps("3"), binary=PPC)
started("smp-pseries-2-maxcpus-6", "pseries -smp 2,maxcpus=6", ["smp", "ppc", "pseries"], _ps("2,maxcpus=6"), binary=PPC)
started("smp-pseries-sockets2", "pseries 2,maxcpus=4,sockets=2,cores=2 (sockets invisible in props)",
        ["smp", "ppc", "pseries"], _ps("2,maxcpus=4,sockets=2,cores=2"), binary=PPC)
started("smp-pseries-0", "pseries -smp 0 (zero warning)", ["smp", "ppc", "pseries", "warning"], _ps("0"), binary=PPC)

for _name, _args, _bin, _what in [
    ("smp-refuse-product-pc", _pc("4,sockets=2,cores=2,threads=2,maxcpus=4"), X86, "product != maxcpus (x86)"),
    ("smp-refuse-product-q35", _pc("sockets=2,dies=2,cores=2,maxcpus=6", "q35"), X86, "product with dies != maxcpus (q35)"),
    ("smp-refuse-product-pseries", _ps("4,sockets=2,cores=3,maxcpus=4"), PPC, "product != maxcpus (pseries omits dies)"),
    ("smp-refuse-product-threads-zero-pc", _pc("2,sockets=2,cores=2"), X86,
     "cpus=2 with sockets=2,cores=2: maxcpus=2, derived threads=0, product mismatch"),
    ("smp-refuse-product-threads-zero-pseries", _ps("2,sockets=2,cores=2"), PPC,
     "pseries cpus=2 with sockets=2,cores=2: derived threads=0, product mismatch"),
    ("smp-refuse-maxcpus-lt-cpus", _pc("2,maxcpus=1"), X86, "maxcpus < cpus"),
    ("smp-refuse-maxcpus-lt-cpus-pseries", _ps("4,maxcpus=2"), PPC, "maxcpus < cpus on pseries"),
    ("smp-refuse-cpumax-pc", _pc("256"), X86, "pc cpu-max 255"),
    ("smp-refuse-cpumax-pc-maxcpus", _pc("1,maxcpus=256"), X86, "pc maxcpus above cpu-max"),
    ("smp-refuse-cpumax-q35", _pc("1,maxcpus=289", "q35"), X86, "q35 cpu-max 288"),
    ("smp-refuse-cpumax-pseries", _ps("1,maxcpus=4097"), PPC, "pseries cpu-max 4096"),
    ("smp-refuse-negative", _pc("-1"), X86, "-smp -1"),
    ("smp-refuse-negative-maxcpus", _pc("1,maxcpus=-1"), X86, "maxcpus=-1"),
    ("smp-refuse-x2apic-q35-256", _pc("256", "q35"), X86, "q35 256 CPUs needs x2apic"),
    ("smp-refuse-x2apic-q35-288", _pc("1,maxcpus=288", "q35"), X86, "q35 maxcpus=288 needs x2apic"),
    ("smp-refuse-x2apic-pc-sockets65", _pc("1,maxcpus=195,sockets=65,cores=3"), X86, "pc APIC id 255+ via sparse ids"),
    ("smp-refuse-clusters-pc", _pc("2,clusters=2"), X86, "clusters on x86"),
    ("smp-refuse-clusters-pseries", _ps("2,clusters=2"), PPC, "clusters on pseries"),
    ("smp-refuse-dies-pseries", _ps("2,dies=2"), PPC, "dies on pseries"),
    ("smp-refuse-books", _pc("2,books=2"), X86, "books is not an -smp parameter"),
    ("smp-refuse-foo", _pc("2,foo=1"), X86, "unknown -smp parameter"),
    ("smp-refuse-two", _pc("two"), X86, "non-numeric cpus"),
    ("smp-refuse-pseries-threads2", _ps("2,threads=2"), PPC, "pseries threads>1 under TCG"),
    ("smp-refuse-pseries-threads2-vsmt2", ["-machine", "pseries,vsmt=2", "-smp", "2,threads=2"], PPC,
     "pseries threads>1 under TCG, also with vsmt=2"),
    ("machine-refuse-unknown", ["-machine", "nosuch"], X86, "unknown machine type"),
    ("machine-refuse-unknown-ppc64", ["-machine", "nosuch"], PPC, "unknown machine type on ppc64"),
    ("cpu-refuse-unknown", ["-machine", "pc", "-cpu", "nosuchcpu"], X86, "unknown -cpu model"),
    ("cpu-refuse-unknown-ppc64", ["-machine", "pseries", "-cpu", "nosuchcpu"], PPC, "unknown -cpu model on ppc64"),
    ("cpu-refuse-pseries-power9-core-name", ["-machine", "pseries", "-cpu", "power9_v2.0-spapr-cpu-core"], PPC,
     "a core type name is not a -cpu model"),
]:
    refused(_name, _what, ["smp" if _name.startswith("smp") else _name.split("-")[0], "x86" if _bin == X86 else "ppc"],
            _args, binary=_bin,
            # QEMU 5.2's generic smp_parse ignores dies (see smp-pseries-dies-ignored)
            only_versions=["7.2", "10.0"] if _name == "smp-refuse-dies-pseries" else None)

sc("smp-pseries-dies-ignored", "pseries -smp 2,dies=2: QEMU 5.2 accepts dies and ignores it",
   ["smp", "ppc"], _ps("2,dies=2"), [start(), queries()], binary=PPC, only_versions=["5.2"])


# =========================================================================== 4. x86 pc / q35

T222 = "1,maxcpus=8,sockets=2,cores=2,threads=2"


def xm(machine, smp, *more):
    return ["-machine", machine, "-smp", smp, *more]


def apic(path):
    return qom_get(path, "apic-id")


for _m in ("pc", "q35"):
    sc(f"x86-{_m}-dies-plug", f"{_m}: dies=2 topology; plug with die-id, APIC id of (1,1,1,0), die-id errors",
       ["x86", _m, "device_add", "dies"], xm(_m, "2,maxcpus=8,sockets=2,dies=2,cores=2"),
       [start(), queries(),
        cpu(1, 1, 0, id="d7", die_id=1), apic("/machine/peripheral/d7"),
        cpu(1, 0, 0, id="d4", die_id=0), apic("/machine/peripheral/d4"),
        cpu(1, 1, 0), cpu(1, 0, 0, die_id=2), cpu(1, 0, 0, die_id=-1),
        qmp("device_add", {"driver": QEMU64, "apic-id": 6}),
        queries()])

    sc(f"x86-{_m}-plug-out-of-order", f"{_m}: plug (1,1,1),(1,0,0),(0,1,0),(0,1,1) with ids; cpu-index = slot",
       ["x86", _m, "device_add", "order"], xm(_m, T222),
       [start(), queries(), cpu(1, 1, 1, id="s1c1t1"), cpu(1, 0, 0, id="s1c0t0"), cpu(0, 1, 0, id="s0c1t0"),
        cpu(0, 1, 1, id="s0c1t1"), queries(),
        [apic(f"/machine/peripheral/{i}") for i in ("s1c1t1", "s1c0t0", "s0c1t0", "s0c1t1")]])

    sc(f"x86-{_m}-anon-numbering", f"{_m}: peripheral-anon numbering: failed adds past driver lookup consume numbers",
       ["x86", _m, "device_add", "anon"], xm(_m, "1,maxcpus=8"),
       [start(),
        cpu(0, 1, 0),                       # ok -> device[0]
        cpu(0, 9, 0),                       # out of range
        cpu(0, 1, 0),                       # exists
        cpu(0, 2, 0, bogus_prop=1),         # unknown property
        cpu(0, 2, 0, driver="nosuch"),      # unknown driver: no number
        cpu(0, 2, 0, driver="x86_64-cpu"),  # abstract driver
        cpu(0, 2, 0, driver="Haswell-x86_64-cpu"),  # wrong CPU type
        cpu(0, 2, 0, core_id="x"),          # bad value
        cpu(0, 2, 0),                       # ok
        cpu(0, 3, 0, id=5),                 # non-string id -> anonymous
        cpu(0, 4, 0, id="named"),
        cpu(0, 5, 0),
        queries()])

    sc(f"x86-{_m}-add-bus", f"{_m}: device_add of a CPU with bus=pci.0 / other buses",
       ["x86", _m, "device_add", "errors"], xm(_m, "1,maxcpus=4"),
       [start(), cpu(0, 1, 0, bus="pci.0"), cpu(0, 1, 0, bus="nosuch"), cpu(0, 1, 0, bus="pcie.0"),
        cpu(0, 1, 0, bus="main-system-bus"), cpu(0, 1, 0, bus=""), qhc()])

    sc(f"x86-{_m}-e1000", f"{_m}: non-CPU device_add (e1000) and its effect on peripheral-anon numbering",
       ["x86", _m, "device_add", "non-cpu"], xm(_m, "1,maxcpus=4"),
       [start(), dadd("e1000", id="nic0"), dadd("e1000"), cpu(0, 1, 0), qcf(),
        qmp("qom-list", {"path": "/machine/peripheral-anon"}), ddel("nic0", settle=QUIET),
        qmp("qom-list", {"path": "/machine/peripheral"})])

    sc(f"x86-{_m}-del-nic-children", f"{_m}: device_del of CPU-like child paths under a NIC (lapic, thread) names nothing",
       ["x86", _m, "device_del", "non-cpu", "errors"], xm(_m, "1,maxcpus=4"),
       [start(), dadd("e1000", id="nic0"), ddel("nic0/lapic"), ddel("nic0/thread[0]"), ddel("nic0/lapic/x"),
        ddel("nic0", settle=QUIET), queries()])

    sc(f"x86-{_m}-device-del", f"{_m}: device_del of boot, cold-plugged and hot-plugged CPUs and bad targets (no guest)",
       ["x86", _m, "device_del", "errors"], xm(_m, "2,maxcpus=4"),
       [start(), cpu(0, 2, 0, id="hp2"), cpu(0, 3, 0),
        ddel("/machine/unattached/device[0]"), ddel("/machine/unattached/device[2]"), ddel("hp2"),
        ddel("/machine/peripheral/hp2"), ddel("/machine/peripheral-anon/device[0]"), ddel("nosuch"),
        ddel("/machine/nosuch"), ddel("/machine/unattached/device[1]"), ddel("/machine/peripheral"),
        ddel("/machine/peripheral-anon"), ddel(""), qmp("device_del"), qmp("device_del", {"id": 3}),
        qmp("device_del", {"id": None}), ddel("hp2", cid="again", settle=QUIET), queries()])

    sc(f"x86-{_m}-plug-in-order", f"{_m}: plug the free slots in order with ids, then one too many",
       ["x86", _m, "device_add"], xm(_m, "1,maxcpus=4"),
       [start(), cpu(0, 1, 0, id="cpu1"), cpu(0, 2, 0, id="cpu2"), cpu(0, 3, 0, id="cpu3"), cpu(0, 4, 0, id="cpu4"),
        queries()])

    sc(f"x86-{_m}-apic-only", f"{_m}: device_add with only apic-id fills socket/core/thread",
       ["x86", _m, "device_add", "apic-id"], xm(_m, T222),
       [start(), qmp("device_add", {"driver": QEMU64, "apic-id": 5, "id": "a5"}),
        qmp("device_add", {"driver": QEMU64, "apic-id": 6}),
        qmp("device_add", {"driver": QEMU64, "apic-id": 7, "socket-id": 1, "core-id": 1, "thread-id": 1, "id": "a7"}),
        qom_get("/machine/peripheral/a5", "socket-id"), qom_get("/machine/peripheral/a5", "core-id"),
        qom_get("/machine/peripheral/a5", "thread-id"), queries()])

sc("x86-pc-plug-out-of-order-anon", "pc: anonymous out-of-order plug",
   ["x86", "pc", "device_add", "order", "anon"], xm("pc", T222),
   [start(), cpu(1, 1, 1), cpu(1, 0, 0), cpu(0, 1, 0), cpu(0, 1, 1), queries(),
    apic("/machine/peripheral-anon/device[0]"), apic("/machine/peripheral-anon/device[3]")])

sc("x86-pc-3x3", "pc 2 sockets x 3 cores x 3 threads: sparse APIC ids, plug by apic-id and by ids",
   ["x86", "pc", "device_add", "apic-id"], xm("pc", "1,maxcpus=18,sockets=2,cores=3,threads=3"),
   [start(), queries(), qmp("device_add", {"driver": QEMU64, "apic-id": 26, "id": "a26"}),
    cpu(1, 0, 0, id="s1c0t0"), cpu(0, 1, 1, id="s0c1t1"),
    apic("/machine/peripheral/a26"), apic("/machine/peripheral/s1c0t0"), apic("/machine/peripheral/s0c1t1"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 3}), qmp("device_add", {"driver": QEMU64, "apic-id": 12}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 27}), qmp("device_add", {"driver": QEMU64, "apic-id": 32}),
    cpu(0, 3, 0), cpu(0, 0, 3), queries()])

sc("x86-q35-3x3", "q35 3 cores x 3 threads on one socket",
   ["x86", "q35", "device_add", "apic-id"], xm("q35", "1,maxcpus=9,cores=3,threads=3"),
   [start(), queries(), qmp("device_add", {"driver": QEMU64, "apic-id": 10}), cpu(0, 2, 2), queries()])

sc("x86-pc-dies3-cores3", "pc dies=3,cores=3: APIC ids of (s1,d2,c2) and (s1,d0,c1)",
   ["x86", "pc", "device_add", "dies", "apic-id"], xm("pc", "1,maxcpus=18,sockets=2,dies=3,cores=3"),
   [start(), cpu(1, 2, 0, id="s1d2c2", die_id=2), cpu(1, 1, 0, id="s1d0c1", die_id=0),
    apic("/machine/peripheral/s1d2c2"), apic("/machine/peripheral/s1d0c1"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 7}), queries()])

sc("x86-pc-dies2-cores2-threads2", "pc 2x2x2x2: APIC id of (1,1,1,1) is 15",
   ["x86", "pc", "device_add", "dies", "apic-id"], xm("pc", "1,maxcpus=16,sockets=2,dies=2,cores=2,threads=2"),
   [start(), cpu(1, 1, 1, id="last", die_id=1), apic("/machine/peripheral/last"), queries()])

sc("x86-pc-add-args", "device_add argument-level errors",
   ["x86", "pc", "device_add", "errors"], xm("pc", "1,maxcpus=4"),
   [start(), qmp("device_add"), qmp("device_add", {}), raw('{"execute": "device_add", "arguments": []}\n'),
    qmp("device_add", {"driver": None}), qmp("device_add", {"driver": 5}), qmp("device_add", {"driver": ""}),
    qmp("device_add", {"id": "x"}), qhc()])

sc("x86-pc-add-id-syntax", "device_add id syntax is checked before the driver",
   ["x86", "pc", "device_add", "errors", "anon"], xm("pc", "1,maxcpus=8"),
   [start(), cpu(0, 1, 0, id="bad id!"), cpu(0, 1, 0, id=""), cpu(0, 1, 0, id="1abc"),
    cpu(0, 1, 0, id="bad id!", driver="nosuch"), cpu(0, 1, 0, id="-x"), cpu(0, 1, 0, id="a" * 200),
    cpu(0, 1, 0, id="a.b-c_d"), cpu(0, 2, 0, id="A1"), cpu(0, 3, 0), queries()])

sc("x86-pc-add-driver", "device_add driver names that are not x86 CPU models",
   ["x86", "pc", "device_add", "errors"], xm("pc", "1,maxcpus=4"),
   [start(), [cpu(0, 1, 0, driver=d) for d in ["nosuch", "qemu64", "QEMU64-x86_64-cpu", "help", "5", P9,
                                               "x86_64-cpu", "device", "cpu", "i386-cpu", "qemu32-i386-cpu"]],
    qhc()])

sc("x86-pc-add-duplicate-id", "duplicate device ids (CPU vs CPU, CPU vs NIC)",
   ["x86", "pc", "device_add", "errors"], xm("pc", "1,maxcpus=4"),
   [start(), cpu(0, 1, 0, id="dup"), cpu(0, 2, 0, id="dup"), cpu(0, 1, 0, id="dup"), dadd("e1000", id="nic"),
    cpu(0, 2, 0, id="nic"), cpu(0, 9, 0, id="dup"), cpu(0, 2, 0, id="ok2"), queries()])

sc("x86-pc-add-props-unknown", "unknown / read-only properties, unknown dict-valued key",
   ["x86", "pc", "device_add", "errors"], xm("pc", "1,maxcpus=8"),
   [start(), cpu(0, 1, 0, bogus_prop=1), cpu(0, 1, 0, help=1), cpu(0, 1, 0, hotplugged=True),
    cpu(0, 1, 0, hotpluggable=False), cpu(0, 1, 0, props={"x": 1}), cpu(0, 2, 0, props={}), queries()])

sc("x86-pc-add-props-values", "property value parsing: strings, floats, bools, overflows, lists, null",
   ["x86", "pc", "device_add", "errors", "values"], xm("pc", "1,maxcpus=8"),
   [start(),
    cpu("0", "1", "0", id="strs"), cpu(0.0, 2.0, 0.0, id="floats"),
    cpu(0, 0.5, 0), cpu(0, "abc", 0), cpu(0, "", 0), cpu(0, True, 0), cpu(0, "0x3", 0), cpu(0, " 3", 0),
    cpu(2147483648, 3, 0), cpu(0, 2147483648, 0), cpu(0, 3, 4294967296), cpu(0, -2147483649, 0),
    qmp("device_add", {"driver": QEMU64, "apic-id": -1}), qmp("device_add", {"driver": QEMU64, "apic-id": 4294967296}),
    cpu([1], 3, 0), cpu(None, 3, 0), cpu(0, [3], 0), cpu(0, 3, None, id="nullthread"),
    cpu(0, 4, 0, node_id="0"), cpu(0, 5, 0, id=None), queries()])

sc("x86-pc-add-wrong-type", "default -cpu qemu64: other x86 CPU models are refused",
   ["x86", "pc", "device_add", "errors", "cpu-model"], xm("pc", "1,maxcpus=4"),
   [start(), [cpu(0, 1, 0, driver=d) for d in ["Haswell-x86_64-cpu", "Haswell-noTSX-x86_64-cpu", "max-x86_64-cpu",
                                               "base-x86_64-cpu", "host-x86_64-cpu", "qemu32-x86_64-cpu",
                                               "kvm64-x86_64-cpu"]],
    cpu(0, 1, 0, driver=QEMU64), qhc()])

sc("x86-pc-add-topology-missing", "missing / negative topology ids (socket, core, thread order)",
   ["x86", "pc", "device_add", "errors", "topology"], xm("pc", T222),
   [start(), cpu(None, None, None), cpu(None, 1, 1), cpu(1, None, 1), cpu(1, 1, None), cpu(-1, 1, 1), cpu(1, -1, 1),
    cpu(1, 1, -1), cpu(1, 1, 1, die_id=-1), cpu(None, 9, 9), qhc()])

sc("x86-pc-add-topology-range", "out-of-range topology ids; die-id 0 accepted without dies; apic-id 0xffffffff",
   ["x86", "pc", "device_add", "errors", "topology"], xm("pc", T222),
   [start(), cpu(2, 0, 0), cpu(0, 2, 0), cpu(0, 0, 2), cpu(2, 2, 2), cpu(0, 1, 0, die_id=1),
    cpu(0, 1, 0, die_id=0, id="die0"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 4294967295}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 4294967295, "socket-id": 1, "core-id": 0, "thread-id": 0}),
    cpu(2147483647, 0, 0), queries()])

sc("x86-q35-add-topology-dies", "q35 dies=2: die-id missing / out of range",
   ["x86", "q35", "device_add", "errors", "topology", "dies"], xm("q35", "1,maxcpus=8,sockets=2,dies=2,cores=2"),
   [start(), cpu(0, 1, 0), cpu(0, 1, 0, die_id=2), cpu(0, 1, 0, die_id=-1), cpu(None, None, None, die_id=1),
    cpu(0, 1, 0, die_id=1, id="ok"), qhc()])

sc("x86-pc-add-apic-not-slot", "apic-id that decodes to no slot, beyond maxcpus, occupied",
   ["x86", "pc", "device_add", "errors", "apic-id"], xm("pc", "1,maxcpus=12,sockets=2,cores=3,threads=2"),
   [start(), [qmp("device_add", {"driver": QEMU64, "apic-id": a}) for a in [6, 7, 14, 16, 100, 0, 255, 256]],
    qmp("device_add", {"driver": QEMU64, "apic-id": 9, "id": "a9"}), qmp("device_add", {"driver": QEMU64, "apic-id": 9}),
    queries()])

sc("x86-pc-add-occupied", "occupied slots: boot CPU, a hot-plugged CPU (by ids and by apic-id)",
   ["x86", "pc", "device_add", "errors"], xm("pc", "2,maxcpus=4"),
   [start(), cpu(0, 0, 0), cpu(0, 1, 0), cpu(0, 2, 0, id="hp2"), cpu(0, 2, 0), cpu(0, 2, 0, id="other"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 2}), qmp("device_add", {"driver": QEMU64, "apic-id": 0}), qhc()])

sc("x86-pc-add-apic-mismatch", "ids given together with apic-id must match it",
   ["x86", "pc", "device_add", "errors", "apic-id"], xm("pc", "1,maxcpus=16,cores=4,threads=4"),
   [start(), qmp("device_add", {"driver": QEMU64, "apic-id": 15, "core-id": 2}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 15, "thread-id": 0}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 15, "socket-id": 1}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 15, "die-id": 1}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 15, "socket-id": 1, "core-id": 2, "thread-id": 0}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 15, "socket-id": 0, "core-id": 3, "thread-id": 3, "id": "ok"}),
    queries()])

sc("x86-pc-add-node-id-no-numa", "node-id without NUMA: must be 0; -1 and 0 accepted",
   ["x86", "pc", "device_add", "errors", "numa"], xm("pc", "1,maxcpus=4"),
   [start(), cpu(0, 1, 0, node_id=1), cpu(0, 1, 0, node_id=0, id="n0"), cpu(0, 2, 0, node_id=-1, id="nm1"),
    cpu(0, 3, 0, node_id=-2), queries()])

sc("x86-pc-hotplugged-then-queries-running", "hot-plug while running (after cont) behaves the same; no events",
   ["x86", "pc", "device_add"], xm("pc", "1,maxcpus=4"),
   [start(), qmp("cont"), cpu(0, 2, 0, id="r2"), settle(QUIET), queries(), qmp("query-status")])


# =========================================================================== 5. pseries

PS = ["-machine", "pseries"]


def ps(smp, *more, machine="pseries"):
    return ["-machine", machine, "-smp", smp, *more]


def _until_deleted(dev):
    return lambda m: m.get("event") == "DEVICE_DELETED" and m.get("data", {}).get("device") == dev


started("ppc-pseries-default-queries", "pseries 2 of 8 cores: query-hotpluggable-cpus / query-cpus-fast",
        ["ppc", "pseries", "queries"], ps("2,maxcpus=8"), binary=PPC)
started("ppc-pseries-power8-queries", "pseries -cpu POWER8: core type and boot core paths",
        ["ppc", "pseries", "queries", "cpu-model"], ps("2,maxcpus=4", "-cpu", "POWER8"), binary=PPC)
started("ppc-pseries-power10-queries", "pseries -cpu POWER10: core type and boot core paths",
        ["ppc", "pseries", "queries", "cpu-model"], ps("2,maxcpus=4", "-cpu", "POWER10"), binary=PPC)

sc("ppc-pseries-plug-unplug", "pseries: plug core 5 with id, then device_del removes it at once with events",
   ["ppc", "pseries", "device_add", "device_del", "events"], ps("2,maxcpus=8"),
   [start(), core(5, id="hp5"), settle(QUIET), queries(), ddel("hp5", settle=QUIET), queries(),
    qmp("qom-list", {"path": "/machine/peripheral"})], binary=PPC)

sc("ppc-pseries-del-nic-children", "pseries: device_del of CPU-like child paths under a NIC (a thread, its presenter, a lapic) names nothing",
   ["ppc", "pseries", "device_del", "non-cpu", "errors"], ps("1,maxcpus=4"),
   [start(), dadd("e1000", id="nic0"), ddel("nic0/thread[0]"), ddel("nic0/thread[0]/xive"), ddel("nic0/lapic"),
    ddel("nic0", settle=QUIET), queries()], binary=PPC)

# (after cont, SLOF's handling of the PCI DRCs makes the outcome timing-dependent: not recorded)
sc("ppc-pseries-del-nic-states", "pseries: device_del of a NIC hot-added before the first run goes at once; a cold-plugged one waits for the guest",
   ["ppc", "pseries", "device_del", "non-cpu", "events"], ps("1,maxcpus=4", "-device", "e1000,id=cold"),
   [start(), dadd("e1000", id="pre"), dadd("e1000"), ddel("cold", settle=QUIET), ddel("pre", settle=QUIET),
    ddel("/machine/peripheral-anon/device[0]", settle=QUIET), ddel("cold", settle=QUIET),
    qmp("qom-list", {"path": "/machine/peripheral"}), qmp("qom-list", {"path": "/machine/peripheral-anon"})],
   binary=PPC)

sc("ppc-pseries-plug-unplug-by-path", "pseries: device_del by QOM path, anonymous core (no device key in the last event)",
   ["ppc", "pseries", "device_add", "device_del", "events", "anon"], ps("1,maxcpus=4"),
   [start(), core(2), core(3, id="hp3"), queries(), ddel("/machine/peripheral-anon/device[0]", settle=QUIET),
    ddel("/machine/peripheral/hp3", settle=QUIET), queries()], binary=PPC)

sc("ppc-pseries-anon-numbering", "pseries: failed anonymous adds consume peripheral-anon numbers; deleted ones are not reused",
   ["ppc", "pseries", "device_add", "anon"], ps("1,maxcpus=8"),
   [start(), core(1), core(9), core(1), core(2, bogus=1), core(2, driver="nosuch"), core(2, driver=P8),
    core(2, driver="spapr-cpu-core"), core(2, nr_threads=2), core(2), ddel("/machine/peripheral-anon/device[0]", settle=QUIET),
    core(1), core(3, id=5), queries()], binary=PPC)

sc("ppc-pseries-add-errors-range", "pseries device_add: missing/occupied/out-of-range/negative/wrapping core-id",
   ["ppc", "pseries", "device_add", "errors"], ps("2,maxcpus=8"),
   [start(), core(None), core(1), core(0), core(8), core(2147483647), core(-1), core(-2), core(4294967296),
    core(4294967297), core(-2147483648), core(7, id="last"), qhc()], binary=PPC)

sc("ppc-pseries-add-errors-types", "pseries device_add: wrong core models, thread type, abstract core, x86 type",
   ["ppc", "pseries", "device_add", "errors", "cpu-model"], ps("1,maxcpus=4"),
   [start(), [core(1, driver=d) for d in [P8, "power10_v2.0-spapr-cpu-core", "power9_v2.0-powerpc64-cpu",
                                          "spapr-cpu-core", QEMU64, "host-spapr-cpu-core", "cpu-core",
                                          "power9-spapr-cpu-core", "POWER9"]], qhc()], binary=PPC)

sc("ppc-pseries-add-errors-props", "pseries device_add: nr-threads, socket-id/thread-id/unknown, value parsing, node-id",
   ["ppc", "pseries", "device_add", "errors", "values"], ps("1,maxcpus=8"),
   [start(), core(1, nr_threads=2), core(1, nr_threads=1, id="nt1"), core(2, socket_id=0), core(2, thread_id=0),
    core(2, bogus=1), core("5", id="s5"), core(6.0, id="f6"), core("x"), core(2.5), core(True), core(2, node_id=1),
    core(2, node_id=0, id="n0"), core(3, node_id=-1, id="nm1"), core(4, id="bad id"), core(4, id="s5"),
    core(4, bus="pci.0"), qcf()], binary=PPC)

sc("ppc-pseries-del-boot-core0", "pseries: device_del of boot core 0 is refused",
   ["ppc", "pseries", "device_del", "errors"], ps("2,maxcpus=4"),
   [start(), ddel("/machine/unattached/device[1]"), ddel("/machine/unattached/device[1]", cid=1), qhc()],
   binary=PPC)

sc("ppc-pseries-del-boot-core1", "pseries: device_del of another boot core returns {} and stays pending (repeatable)",
   ["ppc", "pseries", "device_del", "pending"], ps("2,maxcpus=4"),
   [start(), ddel("/machine/unattached/device[2]", settle=QUIET), ddel("/machine/unattached/device[2]", settle=QUIET),
    core(1), queries()], binary=PPC)

sc("ppc-pseries-replug-after-delete", "pseries: a deleted slot can be re-plugged (same id, new plug order in query-cpus-fast)",
   ["ppc", "pseries", "device_add", "device_del", "events"], ps("1,maxcpus=8"),
   [start(), core(2, id="hp2"), core(3, id="hp3"), ddel("hp2", settle=QUIET), qcf(), core(2, id="hp2"), qcf(),
    ddel("hp2", settle=QUIET), core(2), queries()], binary=PPC)

sc("ppc-pseries-crash-tcg-contexts", "QEMU DEFECT: every vCPU ever created uses one TCG context (max = maxcpus); "
   "the plug that would create vCPU number maxcpus+1 aborts QEMU (tcg_register_thread assertion), no reply",
   ["ppc", "pseries", "device_add", "device_del", "crash"], ps("1,maxcpus=4"),
   [start(), [[core(1, id="x"), ddel("x", settle=0.1)] for _ in range(3)], core(1, id="x"), eof(), wait_exit()],
   binary=PPC, only_versions=["5.2", "7.2"])   # 10.0's default POWER10 refuses the POWER9 core: no crash

sc("ppc-pseries-del-misc", "pseries device_del: spapr-xive path, unknown ids, bad argument types",
   ["ppc", "pseries", "device_del", "errors"], ps("1,maxcpus=4"),
   [start(), ddel("/machine/unattached/device[0]", settle=QUIET), ddel("nosuch"), ddel("/machine/nosuch"),
    ddel("/machine/peripheral"), qmp("device_del"), qmp("device_del", {"id": 3}), core(1, id="c1"),
    ddel("c1", cid="del-c1", settle=QUIET), ddel("c1"), queries()], binary=PPC)

sc("ppc-pseries-power8-plug", "pseries -cpu POWER8: plug the matching core type, power9 refused",
   ["ppc", "pseries", "device_add", "cpu-model"], ps("1,maxcpus=4", "-cpu", "POWER8"),
   [start(), core(1, driver=P9), core(1, driver=P8, id="p8"), queries(), ddel("p8", settle=QUIET)], binary=PPC)

sc("ppc-pseries-running-plug-unplug", "pseries: hot-plug/unplug while running (no guest): same immediate removal",
   ["ppc", "pseries", "device_add", "device_del", "events"], ps("1,maxcpus=4"),
   [start(), qmp("cont"), core(1, id="r1"), settle(QUIET), ddel("r1", settle=QUIET), queries()], binary=PPC,
   # QEMU 5.2 (TCG, no firmware) does not answer this device_add within 15 s once running
   only_versions=["7.2", "10.0"])


# =========================================================================== 6. NUMA

MEM2 = ["-m", "256M", "-object", "memory-backend-ram,id=m0,size=128M", "-object", "memory-backend-ram,id=m1,size=128M"]
N2 = ["-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=1,memdev=m1"]
PMEM2 = ["-m", "512M", "-object", "memory-backend-ram,id=m0,size=256M", "-object", "memory-backend-ram,id=m1,size=256M"]


def numa_x86(smp, *numa, machine="pc"):
    return ["-machine", machine, "-smp", smp] + MEM2 + list(numa)


def numa_ps(smp, *numa):
    return ["-machine", "pseries", "-smp", smp] + PMEM2 + list(numa)


started("numa-x86-default-mapping", "pc, 2 nodes without CPU assignment: node = socket-id % nodes",
        ["numa", "x86", "pc"], numa_x86("2,maxcpus=8,sockets=4,cores=2", *N2))

started("numa-x86-default-mapping-1-socket", "pc, 2 nodes, 1 socket: every CPU on node 0",
        ["numa", "x86", "pc"], numa_x86("2,maxcpus=4", *N2))

sc("numa-x86-node-cpus", "pc legacy -numa node,cpus= by cpu-index; device_add node-id checks",
   ["numa", "x86", "pc", "device_add"],
   numa_x86(T222, "-numa", "node,nodeid=0,cpus=0-3,memdev=m0", "-numa", "node,nodeid=1,cpus=4-7,memdev=m1"),
   [start(), queries(), cpu(1, 0, 0, node_id=0), cpu(1, 0, 0, node_id=1, id="n1"), cpu(1, 1, 0, node_id=-1, id="nm1"),
    cpu(1, 1, 1, id="noid"), cpu(0, 1, 0, node_id=1), cpu(0, 1, 0, node_id=2), qmp("device_add", {"driver": QEMU64, "apic-id": 5, "node-id": 0}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 6, "node-id": 0}), queries()])

started("numa-x86-node-cpus-multi", "pc legacy cpus= with several ranges per node (cpus=0,cpus=2-3)",
        ["numa", "x86", "pc"],
        numa_x86("2,maxcpus=4", "-numa", "node,nodeid=0,cpus=0,cpus=2,memdev=m0", "-numa", "node,nodeid=1,cpus=1,cpus=3,memdev=m1"))

started("numa-x86-cpu-socket", "pc -numa cpu at socket level",
        ["numa", "x86", "pc"],
        numa_x86(T222, *N2, "-numa", "cpu,node-id=1,socket-id=0", "-numa", "cpu,node-id=0,socket-id=1"))

started("numa-x86-cpu-thread-level", "pc -numa cpu for every thread (interleaved nodes)",
        ["numa", "x86", "pc"],
        numa_x86("1,maxcpus=4,cores=2,threads=2", *N2,
                 "-numa", "cpu,node-id=0,socket-id=0,core-id=0,thread-id=0",
                 "-numa", "cpu,node-id=1,socket-id=0,core-id=0,thread-id=1",
                 "-numa", "cpu,node-id=0,socket-id=0,core-id=1,thread-id=0",
                 "-numa", "cpu,node-id=1,socket-id=0,core-id=1,thread-id=1"))

started("numa-x86-mixed", "pc: node cpus= and -numa cpu mixed",
        ["numa", "x86", "pc"],
        numa_x86("2,maxcpus=4", "-numa", "node,nodeid=0,cpus=0-1,memdev=m0", "-numa", "node,nodeid=1,memdev=m1",
                 "-numa", "cpu,node-id=1,socket-id=0,core-id=2", "-numa", "cpu,node-id=1,socket-id=0,core-id=3"))

started("numa-x86-partial", "pc partial mapping: unassigned slots go to node 0, warnings on stderr",
        ["numa", "x86", "pc", "warning"],
        numa_x86(T222, *N2, "-numa", "cpu,node-id=1,socket-id=1"))

started("numa-x86-partial-core", "pc partial mapping of one core: warning lists every unassigned CPU",
        ["numa", "x86", "pc", "warning"],
        numa_x86("2,maxcpus=4", *N2, "-numa", "cpu,node-id=1,socket-id=0,core-id=3"))

started("numa-x86-memless-node", "pc: a memory-less node is fine",
        ["numa", "x86", "pc"],
        ["-machine", "pc", "-smp", "2,maxcpus=4,sockets=2,cores=2", "-m", "128M", "-object",
         "memory-backend-ram,id=m0,size=128M", "-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=1"])

started("numa-q35-cpu-dies", "q35 with dies: -numa cpu with die-id",
        ["numa", "x86", "q35", "dies"],
        numa_x86("2,maxcpus=8,sockets=2,dies=2,cores=2", *N2, "-numa", "cpu,node-id=0,socket-id=0,die-id=0",
                 "-numa", "cpu,node-id=1,socket-id=0,die-id=1", "-numa", "cpu,node-id=0,socket-id=1", machine="q35"))

sc("numa-q35-add-node-id", "q35 NUMA: device_add node-id mismatch / correct / omitted",
   ["numa", "x86", "q35", "device_add"],
   numa_x86("1,maxcpus=4,sockets=2,cores=2", *N2, machine="q35"),
   [start(), qhc(), cpu(1, 0, 0, node_id=0), cpu(1, 0, 0, node_id=1, id="a"), cpu(0, 1, 0, node_id=1),
    cpu(0, 1, 0, id="b"), cpu(1, 1, 0, node_id=5), queries()])

for _name, _args, _bin, _what in [
    ("numa-refuse-undefined-node", numa_x86(T222, *N2, "-numa", "cpu,node-id=3,socket-id=0"), X86,
     "-numa cpu with an undefined node"),
    ("numa-refuse-no-match-socket", numa_x86(T222, *N2, "-numa", "cpu,node-id=0,socket-id=5"), X86,
     "-numa cpu matching no slot (socket)"),
    ("numa-refuse-no-match-core", numa_x86(T222, *N2, "-numa", "cpu,node-id=0,socket-id=0,core-id=2"), X86,
     "-numa cpu matching no slot (core out of range)"),
    ("numa-refuse-die-id", numa_x86(T222, *N2, "-numa", "cpu,node-id=0,socket-id=0,die-id=0"), X86,
     "-numa cpu die-id without dies"),
    ("numa-refuse-remap", numa_x86(T222, *N2, "-numa", "cpu,node-id=1,socket-id=1", "-numa", "cpu,node-id=0,socket-id=1"),
     X86, "mapping a CPU twice"),
    ("numa-refuse-remap-node-cpus", numa_x86("2,maxcpus=4", "-numa", "node,nodeid=0,cpus=0-1,memdev=m0",
                                             "-numa", "node,nodeid=1,cpus=1-3,memdev=m1"), X86,
     "legacy cpus= ranges overlapping"),
    ("numa-refuse-cpus-index", numa_x86("2,maxcpus=4", "-numa", "node,nodeid=0,memdev=m0",
                                        "-numa", "node,nodeid=1,memdev=m1,cpus=2-7"), X86,
     "legacy cpus= index beyond maxcpus"),
    ("numa-refuse-memory-sum", ["-machine", "pc", "-m", "256M", "-object", "memory-backend-ram,id=m0,size=128M",
                                "-numa", "node,nodeid=0,memdev=m0"], X86, "node memory does not add up to -m"),
    ("numa-refuse-no-memory", ["-machine", "pc", "-m", "256M", "-numa", "node,nodeid=0", "-numa", "node,nodeid=1"], X86,
     "nodes without any memory"),
    ("numa-refuse-mem-option", ["-machine", "pc", "-m", "256M", "-numa", "node,nodeid=0,mem=256M"], X86,
     "-numa node,mem= on a 7.2 machine type"),
    ("numa-refuse-duplicate-node", numa_x86("2", "-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=0,memdev=m1"),
     X86, "the same nodeid twice"),
    ("numa-refuse-cpu-no-node-id", numa_x86("2", *N2, "-numa", "cpu,socket-id=0"), X86, "-numa cpu without node-id"),
    ("numa-refuse-pseries-socket-id", numa_ps("2,maxcpus=4", *N2, "-numa", "cpu,node-id=0,socket-id=0"), PPC,
     "pseries -numa cpu with socket-id"),
    ("numa-refuse-pseries-no-match", numa_ps("2,maxcpus=4", *N2, "-numa", "cpu,node-id=0,core-id=9"), PPC,
     "pseries -numa cpu core-id out of range"),
    ("numa-refuse-pseries-unaligned", ["-machine", "pseries", "-smp", "2", "-m", "256M", "-object",
                                       "memory-backend-ram,id=m0,size=128M", "-object", "memory-backend-ram,id=m1,size=128M"]
     + N2, PPC, "pseries node memory not a multiple of 256 MiB"),
]:
    refused(_name, _what, ["numa", "x86" if _bin == X86 else "ppc"], _args, binary=_bin)

started("numa-pseries-default-mapping", "pseries 2 nodes without assignment: (core-id / (cores*threads)) % nodes",
        ["numa", "ppc", "pseries"], numa_ps("2,maxcpus=8,sockets=2,cores=4", *N2), binary=PPC)

started("numa-pseries-default-mapping-1-socket", "pseries 2 nodes, 1 socket",
        ["numa", "ppc", "pseries"], numa_ps("2,maxcpus=4", *N2), binary=PPC)

started("numa-pseries-cpu-core", "pseries -numa cpu by core-id for every core",
        ["numa", "ppc", "pseries"],
        numa_ps("2,maxcpus=4", *N2, "-numa", "cpu,node-id=1,core-id=0", "-numa", "cpu,node-id=0,core-id=1",
                "-numa", "cpu,node-id=1,core-id=2", "-numa", "cpu,node-id=0,core-id=3"), binary=PPC)

started("numa-pseries-node-cpus", "pseries legacy node cpus=",
        ["numa", "ppc", "pseries"],
        numa_ps("2,maxcpus=4", "-numa", "node,nodeid=0,cpus=0-1,memdev=m0", "-numa", "node,nodeid=1,cpus=2-3,memdev=m1"),
        binary=PPC)

started("numa-pseries-partial", "pseries partial mapping: warnings on stderr",
        ["numa", "ppc", "pseries", "warning"],
        numa_ps("2,maxcpus=4", *N2, "-numa", "cpu,node-id=1,core-id=3"), binary=PPC)

sc("numa-pseries-add-node-id", "pseries NUMA: device_add node-id mismatch / correct / -1",
   ["numa", "ppc", "pseries", "device_add"],
   numa_ps("1,maxcpus=4", "-numa", "node,nodeid=0,cpus=0-1,memdev=m0", "-numa", "node,nodeid=1,cpus=2-3,memdev=m1"),
   [start(), core(2, node_id=0), core(2, node_id=1, id="c2"), core(1, node_id=1), core(1, node_id=-1, id="c1"),
    core(3), queries()], binary=PPC)


# =========================================================================== cold-plug (-device at start-up)

def xdev(s, c, t, id=None, driver=QEMU64):
    spec = f"{driver}" + (f",id={id}" if id else "") + f",socket-id={s},core-id={c},thread-id={t}"
    return ["-device", spec]


def pdev(core_id, id=None, driver=P9):
    return ["-device", f"{driver}" + (f",id={id}" if id else "") + f",core-id={core_id}"]


for _m in ("pc", "q35"):
    started(f"coldplug-{_m}-id", f"{_m}: -device CPU with id at start-up",
            ["coldplug", "x86", _m], xm(_m, "1,maxcpus=4", *xdev(0, 2, 0, id="cp2")))
    started(f"coldplug-{_m}-anon", f"{_m}: anonymous -device CPU at start-up",
            ["coldplug", "x86", _m, "anon"], xm(_m, "1,maxcpus=4", *xdev(0, 1, 0)))
    sc(f"coldplug-{_m}-out-of-order", f"{_m}: -device CPUs out of slot order (slot 3 then slot 1), then hot-plug",
       ["coldplug", "x86", _m, "order"], xm(_m, "1,maxcpus=4", *xdev(0, 3, 0), *xdev(0, 1, 0, id="cp1")),
       [start(), queries(), cpu(0, 2, 0), cpu(0, 3, 0), queries(), ddel("cp1")])

sc("coldplug-pc-apic-id", "pc: -device CPU by apic-id only",
   ["coldplug", "x86", "pc", "apic-id"], xm("pc", T222, "-device", f"{QEMU64},id=a5,apic-id=5"),
   [start(), queries(), qom_get("/machine/peripheral/a5", "socket-id")])

sc("coldplug-pc-with-boot-cpus", "pc: -smp 2,maxcpus=4 plus a -device CPU in slot 3: qom paths and order",
   ["coldplug", "x86", "pc"], xm("pc", "2,maxcpus=4", *xdev(0, 3, 0, id="cp3")),
   [start(), queries(), qmp("qom-list", {"path": "/machine/unattached"})])

for _name, _args, _what in [
    ("coldplug-refuse-pc-occupied", xm("pc", "2,maxcpus=4", *xdev(0, 1, 0)), "-device on a boot CPU's slot"),
    ("coldplug-refuse-pc-range", xm("pc", "1,maxcpus=4", *xdev(0, 4, 0)), "-device out of range"),
    ("coldplug-refuse-pc-missing", xm("pc", "1,maxcpus=4", "-device", f"{QEMU64},core-id=1"), "-device without socket-id"),
    ("coldplug-refuse-pc-duplicate-id", xm("pc", "1,maxcpus=4", *xdev(0, 1, 0, id="d"), *xdev(0, 2, 0, id="d")),
     "two -device with the same id"),
    ("coldplug-refuse-pc-wrong-type", xm("pc", "1,maxcpus=4", *xdev(0, 1, 0, driver="Haswell-x86_64-cpu")),
     "-device of another CPU model"),
]:
    refused(_name, _what, ["coldplug", "x86", "pc"], _args)

started("coldplug-pseries-id", "pseries: -device core with id", ["coldplug", "ppc", "pseries"],
        ps("1,maxcpus=4", *pdev(2, id="cp2")), binary=PPC)
started("coldplug-pseries-anon", "pseries: anonymous -device core", ["coldplug", "ppc", "pseries", "anon"],
        ps("1,maxcpus=4", *pdev(1)), binary=PPC)
sc("coldplug-pseries-out-of-order", "pseries: -device cores out of order (3 then 1), then hot-plug and unplug",
   ["coldplug", "ppc", "pseries", "order"], ps("1,maxcpus=4", *pdev(3), *pdev(1, id="cp1")),
   [start(), queries(), core(2), queries(), ddel("cp1", settle=QUIET), queries()], binary=PPC)

for _name, _args, _what in [
    ("coldplug-refuse-pseries-occupied", ps("2,maxcpus=4", *pdev(1)), "-device on a boot core"),
    ("coldplug-refuse-pseries-range", ps("1,maxcpus=4", *pdev(4)), "-device core out of range"),
]:
    refused(_name, _what, ["coldplug", "ppc", "pseries"], _args, binary=PPC)


# =========================================================================== old machine versions

started("old-pc-i440fx-2.6", "pc-i440fx-2.6: pre-6.2 machines derive missing -smp values preferring sockets "
        "(2,maxcpus=4 -> 4 sockets x 1 core); slots plug out of order like today",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-2.6", "2,maxcpus=4"),
        extra=[cpu(0, 3, 0), cpu(3, 0, 0, id="hp3"), cpu(2, 0, 0), queries()])
started("old-pc-q35-2.7", "pc-q35-2.7: sockets preferred; out-of-order plug; device_del refused as on 7.2",
        ["machines", "x86", "q35", "old", "smp"], xm("pc-q35-2.7", "2,maxcpus=4"),
        extra=[cpu(3, 0, 0, id="hp3"), queries(), ddel("hp3")])
started("old-pc-i440fx-6.1-smp", "pc-i440fx-6.1 (last prefer-sockets version): -smp 2,maxcpus=6",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-6.1", "2,maxcpus=6"))
started("old-pc-i440fx-6.2-smp", "pc-i440fx-6.2 (first prefer-cores version): -smp 2,maxcpus=6",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-6.2", "2,maxcpus=6"))
started("old-pc-i440fx-2.6-cores-given", "pc-i440fx-2.6 with cores given: sockets derived as on 7.2",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-2.6", "2,maxcpus=8,cores=2"))
refused("old-refuse-pc-q35-2.7-cpumax", "pc-q35-2.7 cpu-max is 255", ["machines", "x86", "q35", "old"],
        xm("pc-q35-2.7", "1,maxcpus=256"))
sc("old-pseries-2.6", "pseries-2.6: query-hotpluggable-cpus is not enabled; device_add of a core",
   ["machines", "ppc", "pseries", "old"], ps("2", machine="pseries-2.6"),
   [start(), qhc(), qcf(), core(2, id="c2"), core(1, id="c1"), qcf(), ddel("/machine/unattached/device[2]", settle=QUIET),
    qcf()], binary=PPC)
refused("old-refuse-pseries-2.6-maxcpus", "pseries-2.6 refuses maxcpus > cpus (no CPU hotplug)",
        ["machines", "ppc", "pseries", "old"], ps("2,maxcpus=4", machine="pseries-2.6"), binary=PPC)
sc("old-pseries-2.7", "pseries-2.7: hotpluggable CPUs enabled",
   ["machines", "ppc", "pseries", "old"], ps("2,maxcpus=4", machine="pseries-2.7"),
   [start(), queries(), core(3, id="p9"), core(3, id="c3", driver="power7_v2.3-spapr-cpu-core"), queries(),
    ddel("c3", settle=QUIET), queries()], binary=PPC)
started("old-pseries-6.1-smp", "pseries-6.1 (prefer sockets): -smp 2,maxcpus=6", ["machines", "ppc", "pseries", "old", "smp"],
        ps("2,maxcpus=6", machine="pseries-6.1"), binary=PPC)
# versioned machine types keep their version's rules inside newer QEMUs (10.0 -machine pc-i440fx-5.2
# prefers sockets as 5.2 did)
started("old-pc-i440fx-5.2-smp", "pc-i440fx-5.2 (prefer sockets): -smp 1,maxcpus=4 gives 4 sockets of 1 core",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-5.2", "1,maxcpus=4"))
started("old-pc-q35-5.2-smp", "pc-q35-5.2 (prefer sockets): -smp 2,maxcpus=8,threads=2",
        ["machines", "x86", "q35", "old", "smp"], xm("pc-q35-5.2", "2,maxcpus=8,threads=2"))
started("old-pseries-5.2-smp", "pseries-5.2 (prefer sockets, POWER9 default): -smp 1,maxcpus=4",
        ["machines", "ppc", "pseries", "old", "smp"], ps("1,maxcpus=4", machine="pseries-5.2"), binary=PPC)
started("old-pc-i440fx-7.2-smp", "pc-i440fx-7.2 (prefer cores) inside newer QEMUs: -smp 1,maxcpus=4",
        ["machines", "x86", "pc", "old", "smp"], xm("pc-i440fx-7.2", "1,maxcpus=4"), only_versions=["7.2", "10.0"])
started("old-pseries-7.2-smp", "pseries-7.2 (POWER9 default) inside newer QEMUs: -smp 1,maxcpus=4",
        ["machines", "ppc", "pseries", "old", "smp"], ps("1,maxcpus=4", machine="pseries-7.2"), binary=PPC,
        only_versions=["7.2", "10.0"])
started("smp-pc-modules1", "QEMU 10.0 x86 -smp modules=1: modules (1) in the topology, no module-id",
        ["smp", "x86", "pc"], xm("pc", "2,maxcpus=4,sockets=1,modules=1,cores=4"), only_versions=["10.0"])
started("smp-q35-modules2", "QEMU 10.0 x86 -smp modules=2: module-id in query-hotpluggable-cpus",
        ["smp", "x86", "q35"], xm("q35", "2,maxcpus=8,sockets=1,modules=2,cores=2,threads=2"),
        only_versions=["10.0"])
# x86 modules (QEMU 9.1+): a level between die and core, module-id in the CPU properties and
# module bits in the APIC ID; 5.2/7.2 do not know the key
started("smp-pc-modules2", "QEMU 10.0 pc -smp modules=2 with 2 sockets: module-id per slot, APIC ids with a module bit",
        ["smp", "x86", "pc"], xm("pc", "4,maxcpus=8,sockets=2,modules=2,cores=2"), only_versions=["10.0"])
started("smp-q35-modules3-dies2", "QEMU 10.0 q35 -smp dies=2,modules=3,cores=3: die-id and module-id, sparse APIC ids",
        ["smp", "x86", "q35"], xm("q35", "2,maxcpus=36,sockets=2,dies=2,modules=3,cores=3"), only_versions=["10.0"])
started("smp-q35-modules-derived", "QEMU 10.0 q35 -smp 8,modules=2: sockets/cores derived around the modules",
        ["smp", "x86", "q35"], xm("q35", "8,modules=2"), only_versions=["10.0"])
sc("x86-q35-modules-plug", "QEMU 10.0 q35 modules=2: device_add with/without/wrong module-id, by apic-id, mismatches",
   ["x86", "q35", "device_add", "errors", "smp"], xm("q35", "1,maxcpus=16,sockets=2,modules=2,cores=2,threads=2"),
   [start(), cpu(0, 1, 0, id="nomod"), cpu(0, 1, 0, module_id=2), cpu(0, 1, 0, module_id=-1),
    cpu(0, 1, 1, module_id=1, id="m1c1t1"), apic("/machine/peripheral/m1c1t1"),
    cpu(1, 0, 0, module_id=1, die_id=0, id="s1m1"), apic("/machine/peripheral/s1m1"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 6, "id": "byapic"}), apic("/machine/peripheral/byapic"),
    qmp("device_add", {"driver": QEMU64, "apic-id": 7, "module-id": 0}),
    qmp("device_add", {"driver": QEMU64, "apic-id": 32}), cpu(0, 1, 1, module_id=1), cpu(2, 0, 0, module_id=0),
    qmp("device_add", {"driver": QEMU64, "apic-id": 3, "module-id": 0, "core-id": 1, "socket-id": 0,
                       "thread-id": 1, "id": "all"}),
    queries(), hmp("info hotpluggable-cpus")], only_versions=["10.0"])
sc("x86-pc-modules-unplug", "QEMU 10.0 pc modules=2: hot-plug then device_del of a module-1 CPU",
   ["x86", "pc", "device_add", "device_del", "smp"], xm("pc", "2,maxcpus=8,sockets=2,modules=2,cores=2"),
   [start(), cpu(0, 0, 0, module_id=1, id="m1"), qcf(), ddel("m1", settle=QUIET), qhc()], only_versions=["10.0"])
for _name, _smp, _what in [
        ("smp-refuse-modules-product", "4,sockets=1,modules=2,cores=3,maxcpus=8", "modules in the product message"),
        ("smp-refuse-modules-zero", "2,modules=0", "modules=0 is an error on 10.0"),
        ("smp-refuse-modules-cpus-gt-max", "9,sockets=1,modules=2,cores=2,threads=2", "cpus above the product"),
        ("smp-refuse-modules-maxcpus-lt", "4,modules=2,cores=2,sockets=2,maxcpus=6", "maxcpus != product")]:
    refused(_name, f"QEMU 10.0 x86 -smp {_smp}: {_what}", ["smp", "x86"], _pc(_smp, "q35"), only_versions=["10.0"])
refused("smp-refuse-modules-pseries", "QEMU 10.0 pseries -smp modules=2: not supported", ["smp", "ppc"],
        _ps("2,modules=2"), binary=PPC, only_versions=["10.0"])

# x86 APIC IDs >= 255 under TCG in 10.0: the local APIC refuses the id unless the CPU has x2apic
# (apic_common_set_id, set with &error_abort: QEMU aborts)
for _name, _args, _what in [
        ("smp-x2apic-q35-256-plus", xm("q35", "256", "-cpu", "qemu64,+x2apic"), "qemu64,+x2apic starts 256 CPUs"),
        ("smp-x2apic-q35-256-on", xm("q35", "256", "-cpu", "qemu64,x2apic=on"), "qemu64,x2apic=on starts"),
        ("smp-x2apic-q35-256-max", xm("q35", "256", "-cpu", "max"), "-cpu max has x2apic")]:
    sc(_name, f"QEMU 10.0 q35 -smp 256: {_what}", ["smp", "x86", "q35", "cpu-model"], _args,
       [start(), qmp("query-status")], only_versions=["10.0"])
for _name, _args, _what in [
        ("smp-refuse-x2apic-q35-256-minus", xm("q35", "256", "-cpu", "qemu64,-x2apic,+x2apic"), "-x2apic wins over +x2apic"),
        ("smp-refuse-x2apic-q35-256-off", xm("q35", "256", "-cpu", "Haswell,x2apic=off"), "Haswell,x2apic=off"),
        ("smp-refuse-x2apic-pc-sockets65-boot", xm("pc", "195,sockets=65,cores=3"), "pc: the first boot APIC ID >= 255 is 256"),
        ("smp-refuse-x2apic-q35-256-kvm64", xm("q35", "256", "-cpu", "kvm64"), "kvm64 has no x2apic"),
        ("smp-refuse-x2apic-q35-256-threads2", xm("q35", "256,threads=2"), "the AMD HT warning comes first"),
        ("smp-refuse-x2apic-q35-256-phenom-threads2", xm("q35", "256,threads=2", "-cpu", "phenom"),
         "TCG warnings per CPU and the AMD HT warning, in realize order"),
        ("smp-refuse-x2apic-pc-deprecated", xm("pc-i440fx-2.4", "195,sockets=65,cores=3"),
         "a deprecated machine's warning comes first")]:
    refused(_name, f"QEMU 10.0 -smp with APIC IDs >= 255: {_what} (abort)", ["smp", "x86", "cpu-model"], _args,
            only_versions=["10.0"])
sc("x86-q35-x2apic-plug-crash", "QEMU DEFECT (10.0): hot-plugging a qemu64 CPU with APIC ID 255 aborts QEMU "
   "(apic_common_set_id's error goes to &error_abort); cpuhot refuses the device_add instead",
   ["x86", "q35", "device_add", "crash"], xm("q35", "1,maxcpus=288"),
   [start(), cpu(0, 254, 0, id="c254"), cpu(0, 255, 0, id="c255"), eof(), wait_exit()], only_versions=["10.0"])
sc("x86-q35-x2apic-plug-flag", "QEMU 10.0 q35 qemu64: device_add's own x2apic=true lets APIC ID 255 plug; "
   "QEMU DEFECT: x2apic=false for APIC ID 256 aborts QEMU (cpuhot refuses it)",
   ["x86", "q35", "device_add", "cpu-model", "crash"], xm("q35", "1,maxcpus=288"),
   [start(), cpu(0, 255, 0, id="c255", x2apic=True), qcf(), cpu(0, 256, 0, id="c256", x2apic=False), eof(),
    wait_exit()], only_versions=["10.0"])
sc("x86-q35-x2apic-plug", "QEMU 10.0 q35 -cpu qemu64,+x2apic: hot-plugging APIC IDs 255 and 287 works",
   ["x86", "q35", "device_add", "cpu-model"], xm("q35", "1,maxcpus=288", "-cpu", "qemu64,+x2apic"),
   [start(), cpu(0, 255, 0, id="c255"), cpu(0, 287, 0, id="c287"), qcf()], only_versions=["10.0"])

# device_add's JSON read with typed visitors (10.0): unknown members of any JSON type, wrong types
sc("x86-pc-add-json-types", "QEMU 10.0 device_add: unknown members of every JSON type, wrong types for flags",
   ["x86", "pc", "device_add", "errors", "values"], xm("pc", "1,maxcpus=8"),
   [start(), cpu(0, 1, 0, bogus=None), cpu(0, 1, 0, bogus=[1]), cpu(0, 1, 0, bogus="x"), cpu(0, 1, 0, x2apic="on"),
    cpu(0, 1, 0, pmu=1), cpu(0, 1, 0, check={}), cpu(0, 1, 0, start_powered_off=None), cpu(0, "1", 0, bogus=1),
    cpu(0, 1, 0, bogus=1, node_id="0"), cpu(0, 1, 0, id="flags", x2apic=True, pmu=False), queries()],
   only_versions=["10.0"])
sc("ppc-pseries-add-json-types", "QEMU 10.0 pseries device_add: unknown members of every JSON type, wrong types",
   ["ppc", "pseries", "device_add", "errors", "values"], ps("1,maxcpus=4"),
   [start(), core(1, bogus={}), core(1, bogus=None), core(1, bogus=[]), core(1, nr_threads="1"),
    core(1, node_id=[0]), core("1", bogus=1), core(1, id="ok"), qhc()], binary=PPC, only_versions=["10.0"])
started("machines-pc-alias", "-machine pc-i440fx-7.2 (the alias target) behaves like pc",
        ["machines", "x86", "pc"], xm("pc-i440fx-7.2", "1,maxcpus=2"))


# =========================================================================== -cpu variants

for _cpu, _drv, _other in [("qemu64", QEMU64, "Haswell-x86_64-cpu"), ("Haswell", "Haswell-x86_64-cpu", QEMU64),
                           ("max", "max-x86_64-cpu", QEMU64), ("Haswell-noTSX", "Haswell-noTSX-x86_64-cpu",
                                                                "Haswell-x86_64-cpu")]:
    sc(f"cpu-x86-{_cpu.lower()}", f"-cpu {_cpu}: matching device_add driver works, others refused",
       ["cpu-model", "x86", "pc", "device_add"], xm("pc", "1,maxcpus=4", "-cpu", _cpu),
       [start(), qhc(), cpu(0, 1, 0, driver=_other), cpu(0, 1, 0, driver="max-x86_64-cpu" if _cpu != "max" else
                                                      "base-x86_64-cpu"),
        cpu(0, 1, 0, driver=_drv, id="ok"), queries()])

sc("cpu-x86-qemu64-features", "-cpu qemu64,+x2apic: device_add still takes the plain type",
   ["cpu-model", "x86", "pc", "device_add"], xm("pc", "1,maxcpus=4", "-cpu", "qemu64,+x2apic"),
   [start(), qhc(), cpu(0, 1, 0, id="ok")])

started("cpu-x86-qemu64-threads2", "-cpu qemu64 with threads=2 prints the AMD hyperthreading warning once",
        ["cpu-model", "x86", "pc", "warning"], xm("pc", "2,threads=2", "-cpu", "qemu64"))
started("cpu-x86-phenom-threads2", "QEMU 10.0 -cpu phenom (AMD, TCG warnings) with threads=2: the hyperthreading "
        "warning after the first CPU's TCG warnings", ["cpu-model", "x86", "pc", "warning"],
        xm("pc", "4,threads=2", "-cpu", "phenom"), only_versions=["10.0"])
started("cpu-x86-epyc-threads2", "QEMU 10.0 -cpu EPYC with threads=2: TCG drops topoext, so it warns as qemu64 does",
        ["cpu-model", "x86", "pc", "warning"], xm("pc", "2,threads=2", "-cpu", "EPYC"), only_versions=["10.0"])
started("cpu-x86-haswell-threads2", "-cpu Haswell with threads=2 (Intel: no hyperthreading warning)",
        ["cpu-model", "x86", "pc", "warning"], xm("pc", "2,threads=2", "-cpu", "Haswell"))
started("cpu-x86-q35-qemu64-threads2", "q35 default CPU with threads=2",
        ["cpu-model", "x86", "q35", "warning"], xm("q35", "4,maxcpus=8,threads=2"))


# =========================================================================== human-monitor-command

sc("hmp-pc-numa", "HMP info hotpluggable-cpus / cpus / numa on pc with 2 of 4 CPUs and NUMA",
   ["hmp", "x86", "pc", "numa"], numa_x86("2,maxcpus=4,sockets=2,cores=2", *N2),
   [start(), hmp("info hotpluggable-cpus"), hmp("info cpus"), hmp("info numa"),
    cpu(1, 1, 0, id="hp3"), hmp("info hotpluggable-cpus"), hmp("info cpus"), hmp("info numa"),
    hmp("info nosuch"), hmp("nosuchcmd"), hmp("")],
   volatile_patterns=[r"thread_id=\d+"])

sc("hmp-pc-plain", "HMP info hotpluggable-cpus / cpus / numa on pc without NUMA, with dies",
   ["hmp", "x86", "pc"], xm("pc", "2,maxcpus=4,dies=2"),
   [start(), hmp("info hotpluggable-cpus"), hmp("info cpus"), hmp("info numa"), hmp("device_add " + QEMU64 + ",id=h,socket-id=0,die-id=1,core-id=1,thread-id=0"),
    hmp("info cpus"), hmp("device_del h"), hmp("device_add nosuch")],
   volatile_patterns=[r"thread_id=\d+"])

sc("hmp-pseries", "HMP info hotpluggable-cpus / cpus / numa on pseries (NUMA), plus device_add/del via HMP",
   ["hmp", "ppc", "pseries", "numa"],
   numa_ps("2,maxcpus=4", "-numa", "node,nodeid=0,cpus=0-1,memdev=m0", "-numa", "node,nodeid=1,cpus=2-3,memdev=m1"),
   [start(), hmp("info hotpluggable-cpus"), hmp("info cpus"), hmp("info numa"),
    hmp(f"device_add {P9},id=h3,core-id=3"), settle(QUIET), hmp("info hotpluggable-cpus"), hmp("info cpus"),
    hmp("device_del h3"), settle(QUIET), hmp("info cpus")], binary=PPC,
   volatile_patterns=[r"thread_id=\d+"])


# =========================================================================== migration (two VMs)

MIG_URI = "unix:{tmp}/mig.sock"
#: query-migrate's durations and rates; every other ram statistic is compared (FORMAT.md)
MIG_VOLATILE = ["total-time", "downtime", "setup-time", "expected-downtime", "mbps", "pages-per-second"]
#: pseries' default 512 MiB of RAM takes one RAM pass or two, at random (measured with
#: tools/record_migration_ram.py): each extra pass adds an end marker (8 bytes) and a bitmap sync
MIG_VOLATILE_MULTIPASS = ["transferred", "downtime-bytes", "dirty-sync-count"]


def _mig_done(m):
    return m.get("event") == "MIGRATION" and m.get("data", {}).get("status") in ("completed", "failed")


def _mig_final(m):
    return isinstance(m, dict) and m.get("return", {}).get("status") in ("completed", "failed")


def migration(name, description, tags, src_args, dst_args, src_setup=(), binary=X86, events=True, dst_fails=False,
              after=(), return_path=False, only_versions=None):
    """src and dst are both paused (-S); dst listens on {tmp}/mig.sock; src migrates to it.

    Without the return-path capability the source's verdict on a migration that the target
    rejects is a race (completed or failed, depending on whether the target closes the socket
    before the source has flushed everything); return_path=True makes it deterministic.
    """
    cap_list = [{"capability": "events", "state": True}]
    if return_path:
        cap_list.append({"capability": "return-path", "state": True})
    caps = qmp("migrate-set-capabilities", {"capabilities": cap_list})
    steps = [connect("s", "src"), negotiate(c="s"), connect("d", "dst"), negotiate(c="d")]
    if events:
        steps += [dict(caps, c="s"), dict(caps, c="d")]
    steps += [_on(a, "s", None) if isinstance(a, dict) and "c" not in a else a for a in _flat(src_setup)]
    steps += [qcf(c="s"), qmp("query-status", c="s"), qmp("query-status", c="d"), qcf(c="d"),
              qmp("migrate", {"uri": MIG_URI}, c="s")]
    if events:
        steps += [until(_mig_done, c="s"), qmp("query-migrate", c="s")]
    else:
        steps += [poll({"execute": "query-migrate"}, _mig_final, c="s", interval=1.0)]
    if events:
        steps += [until(lambda m: _mig_done(m) or False, c="d")]
    if dst_fails:
        steps += [eof(c="d"), wait_exit("dst")]
    else:
        steps += [settle(QUIET, c="d"), qmp("query-status", c="d"), queries(c="d")]
    steps += [qmp("query-status", c="s"), settle(QUIET, c="s"), after]
    sc(name, description, ["migration"] + list(tags),
       vms={"src": vm(src_args, binary), "dst": vm(list(dst_args) + ["-incoming", MIG_URI], binary)},
       steps=steps, volatile_keys=MIG_VOLATILE + (MIG_VOLATILE_MULTIPASS if binary == PPC else []),
       only_versions=only_versions)
    _SCENARIOS[-1]["retry_unless"] = one_ram_pass


#: what the RAM section of one pass carries besides its pages: 1 + len(name) per RAM block and one
#: 8-byte end marker (pc/q35: pc.ram, pc.bios, pc.rom and three /rom@etc blocks; s390x: s390.ram;
#: pseries: ppc_spapr.ram), measured by tools/record_migration_ram.py
_RAM_PASS_OVERHEAD = {X86: 84 + 8, "qemu-system-s390x": 9 + 8, PPC: 14 + 8}


def one_ram_pass(transcript: dict) -> bool:
    """The paused VM's RAM went in one section (what cpuhot models): no MIGRATION_PASS 3, and the
    RAM bytes are the pages plus one pass's overhead.  A second section is timing (pseries' 512 MiB,
    a loaded host: QEMU's migration thread iterates once more); record.py then records again."""
    binary = transcript["vms"]["src"]["binary"]
    overhead = _RAM_PASS_OVERHEAD[binary]
    for s in transcript["steps"]:
        m = s.get("recv")
        if not isinstance(m, dict):
            continue
        if m.get("event") == "MIGRATION_PASS" and m.get("data", {}).get("pass", 0) > 2:
            return False
        ram = m.get("return", {}).get("ram") if isinstance(m.get("return"), dict) else None
        if ram and binary != PPC:       # pseries' byte counts are volatile (MIG_VOLATILE_MULTIPASS)
            sent = ram.get("downtime-bytes", ram["transferred"])
            if sent - 9 * ram["duplicate"] - 4104 * ram["normal"] != overhead:
                return False
    return True


_PC4 = xm("pc", "1,maxcpus=4")
migration("mig-pc-matching", "pc: source hot-plugs CPU hp2 (slot 2), target has the same CPU via -device: completes",
          ["x86", "pc"], _PC4, _PC4 + xdev(0, 2, 0, id="hp2"), [cpu(0, 2, 0, id="hp2")])
migration("mig-pc-matching-polled", "pc: as mig-pc-matching without the events capability, polling query-migrate",
          ["x86", "pc"], _PC4, _PC4 + xdev(0, 2, 0, id="hp2"), [cpu(0, 2, 0, id="hp2")], events=False)
migration("mig-pc-src-extra-cpu", "pc: source has hot-plugged CPU in slot 2, target lacks it: target fails to load "
          "(return-path on, so the source reports failed)",
          ["x86", "pc", "return-path"], _PC4, _PC4, [cpu(0, 2, 0, id="hp2")], dst_fails=True, return_path=True,
          only_versions=["7.2", "10.0"])   # 5.2 gives 4 sockets of 1 core: its plug fails; see the -cores4 copy
migration("mig-pc-dst-extra-cpu", "pc: target has an extra -device CPU the source lacks",
          ["x86", "pc"], _PC4, _PC4 + xdev(0, 2, 0, id="hp2"), [])
migration("mig-pc-different-maxcpus", "pc: source -smp 1,maxcpus=4, target -smp 1,maxcpus=8",
          ["x86", "pc"], _PC4, xm("pc", "1,maxcpus=8"), [])
migration("mig-pc-out-of-order", "pc: source plugs slot 3 then slot 1, target cold-plugs slot 1 then 3 (cpu-index = slot)",
          ["x86", "pc", "order"], _PC4, _PC4 + xdev(0, 1, 0, id="b") + xdev(0, 3, 0, id="a"),
          [cpu(0, 3, 0, id="a"), cpu(0, 1, 0, id="b")])
migration("mig-pc-different-ids", "pc: same slot plugged on both sides but with different ids / anonymous",
          ["x86", "pc"], _PC4, _PC4 + xdev(0, 2, 0, id="other"), [cpu(0, 2, 0)])
migration("mig-pc-different-slot", "pc: source CPU in slot 2, target CPU in slot 3",
          ["x86", "pc", "return-path"], _PC4, _PC4 + xdev(0, 3, 0, id="hp"), [cpu(0, 2, 0, id="hp")], dst_fails=True,
          return_path=True)
migration("mig-pseries-matching", "pseries: source hot-plugs core 2, target has it via -device: completes",
          ["ppc", "pseries"], ps("1,maxcpus=4"), ps("1,maxcpus=4", *pdev(2, id="hp2")), [core(2, id="hp2")],
          binary=PPC)
migration("mig-pseries-src-extra-core", "pseries: source has hot-plugged core 2, target lacks it",
          ["ppc", "pseries", "return-path"], ps("1,maxcpus=4"), ps("1,maxcpus=4"), [core(2, id="hp2")], binary=PPC,
          dst_fails=True, return_path=True,
          only_versions=["5.2", "7.2"])   # on 10.0 (POWER10 default) the POWER9 core is refused: nothing to fail
migration("mig-pc-matching-return-path", "pc: matching CPUs with the return-path capability on both sides",
          ["x86", "pc", "return-path"], _PC4, _PC4 + xdev(0, 2, 0, id="hp2"), [cpu(0, 2, 0, id="hp2")], return_path=True)


# =========================================================================== QEMU 5.2's -smp spelled out

# QEMU before 6.2 (and every pc-*-6.1 and older machine) derives ``-smp 1,maxcpus=4`` as 4 sockets
# of 1 core, so on 5.2 the scenarios above that plug socket-id=0,core-id=N record a refused start
# (or a refused plug).  These copies spell the topology out (1 socket, 4 cores): the same flows,
# with the same slots, on 5.2.  On 7.2 and 10.0 they are the originals.

_SPELLED = {"1,maxcpus=4": "1,sockets=1,cores=4,maxcpus=4", "2,maxcpus=4": "2,sockets=1,cores=4,maxcpus=4",
            "1,maxcpus=8": "1,sockets=1,cores=8,maxcpus=8", "2,maxcpus=4,dies=2": "2,sockets=1,dies=2,cores=2,maxcpus=4"}


def spelled_out(name: str, only_versions=("5.2",)) -> None:
    import copy
    base = next(x for x in _SCENARIOS if x["name"] == name)
    s = copy.deepcopy({k: v for k, v in base.items() if k != "steps"})
    s["steps"] = list(base["steps"])
    s["name"] = f"{name}-cores4"
    s["description"] = base["description"] + " (-smp with sockets=1 and cores spelled out)"
    for spec in s["vms"].values():
        spec["args"] = [_SPELLED.get(a, a) for a in spec["args"]]
    assert any(set(_SPELLED.values()) & set(spec["args"]) for spec in s["vms"].values()), name
    s["only_versions"] = list(only_versions)
    _SCENARIOS.append(s)


for _name in ["coldplug-pc-id", "coldplug-pc-anon", "coldplug-pc-out-of-order", "coldplug-q35-id",
              "coldplug-q35-anon", "coldplug-q35-out-of-order", "mig-pc-matching", "mig-pc-matching-polled",
              "mig-pc-src-extra-cpu", "mig-pc-dst-extra-cpu", "mig-pc-out-of-order", "mig-pc-different-ids",
              "mig-pc-different-slot", "mig-pc-matching-return-path"]:
    spelled_out(_name)

for _name in ["x86-pc-plug-in-order", "x86-q35-plug-in-order", "x86-pc-device-del", "x86-q35-device-del",
              "x86-pc-anon-numbering", "x86-pc-hotplugged-then-queries-running"]:
    spelled_out(_name)


# =========================================================================== legacy query-cpus (QEMU <= 5.2)

# query-cpus was removed in QEMU 6.0: these are what libvirt's old CPU-hotplug flow reads.
# Paused only (prelaunch): a running vCPU's pc/nip and halted flag move with the firmware.
_LEGACY = ["5.2"]
sc("legacy-query-cpus-pc", "pc: query-cpus of boot CPUs, hot-plugged (by id and anonymous) and after device_del",
   ["legacy", "x86", "pc", "device_add"], xm("pc", "2,sockets=1,cores=4,maxcpus=4"),
   [start(), qmp("query-cpus"), cpu(0, 3, 0, id="c3"), cpu(0, 2, 0), qmp("query-cpus"), qcf(),
    ddel("c3", settle=QUIET), qmp("query-cpus"), qmp("query-status")], only_versions=_LEGACY)
sc("legacy-query-cpus-pc-sockets", "pc: -smp 1,maxcpus=4 (4 sockets on 5.2): query-cpus after plugging socket 2",
   ["legacy", "x86", "pc", "device_add"], xm("pc", "1,maxcpus=4"),
   [start(), qmp("query-cpus"), cpu(2, 0, 0, id="s2"), qmp("query-cpus"), queries()], only_versions=_LEGACY)
sc("legacy-query-cpus-q35-numa", "q35 with two NUMA nodes: query-cpus props carry node-id",
   ["legacy", "x86", "q35", "numa"],
   xm("q35", "2,sockets=2,cores=2,maxcpus=4") + MEM2 + N2 + ["-numa", "cpu,node-id=0,socket-id=0",
                                                              "-numa", "cpu,node-id=1,socket-id=1"],
   [start(), qmp("query-cpus"), cpu(1, 1, 0, id="n1"), qmp("query-cpus"), qcf()], only_versions=_LEGACY)
sc("legacy-query-cpus-pseries", "pseries: query-cpus of the boot core, a hot-plugged core and after device_del",
   ["legacy", "ppc", "pseries", "device_add"], ps("1,maxcpus=4"),
   [start(), qmp("query-cpus"), core(2, id="c2"), core(1), qmp("query-cpus"), qcf(),
    ddel("c2", settle=QUIET), qmp("query-cpus")], binary=PPC, only_versions=_LEGACY)
sc("legacy-query-cpus-pseries-power8", "pseries -cpu POWER8: query-cpus",
   ["legacy", "ppc", "pseries"], ps("2,maxcpus=4", "-cpu", "POWER8"),
   [start(), qmp("query-cpus"), core(3, driver=P8, id="c3"), qmp("query-cpus")], binary=PPC,
   only_versions=_LEGACY)
sc("legacy-cpu-add-refused", "QEMU 5.2 has no cpu-add (removed in 5.2): CommandNotFound; query-cpus stays",
   ["legacy", "x86", "pc"], xm("pc", "1,maxcpus=4"),
   [start(), qmp("cpu-add", {"id": 1}), qmp("query-cpus")], only_versions=_LEGACY)

for _name in ["coldplug-refuse-pc-occupied", "coldplug-refuse-pc-range",
              "cpu-x86-haswell-notsx", "cpu-x86-haswell", "cpu-x86-max", "cpu-x86-qemu64-features", "cpu-x86-qemu64",
              "hmp-pc-plain", "x86-pc-add-duplicate-id", "x86-pc-add-id-syntax", "x86-pc-add-node-id-no-numa",
              "x86-pc-add-occupied", "x86-pc-add-props-unknown", "x86-pc-add-props-values",
              "x86-pc-add-wrong-type", "x86-pc-e1000", "x86-q35-anon-numbering",
              "x86-q35-e1000"]:
    spelled_out(_name)


# =========================================================================== late events (the final settle)

# Each ends with the command whose consequences come later: the recorder's final settle records
# them as "late" steps (FORMAT.md) and a replay must send exactly those, then nothing more.
_LATE_PC = xm("pc", "1,sockets=1,cores=4,maxcpus=4")
sc("late-device-del-pc", "pc: device_del of a hot-plugged CPU is the last step (no guest: nothing follows)",
   ["late", "x86", "pc", "device_del"], _LATE_PC, [start(), cpu(0, 2, 0, id="c2"), ddel("c2")])
sc("late-device-del-boot-pc", "pc: device_del of the boot CPU is the last step (refused at once; nothing follows)",
   ["late", "x86", "pc", "device_del"], _LATE_PC,
   [start(), qmp("device_del", {"id": "/machine/unattached/device[0]"})])
sc("late-device-del-pseries", "pseries POWER9: device_del of a hot-plugged core is the last step",
   ["late", "ppc", "pseries", "device_del"], ps("1,maxcpus=4", "-cpu", "POWER9"),
   [start(), core(2, id="c2"), ddel("c2")], binary=PPC)
sc("late-quit", "quit is the last step: SHUTDOWN and the end of the connection follow the reply",
   ["late", "protocol"], _LATE_PC, [start(), qmp("quit")])
sc("late-cont", "pc: cont is the last step (RESUME; the firmware runs, no more events)",
   ["late", "x86", "pc"], _LATE_PC, [start(), cpu(0, 1, 0, id="c1"), qmp("cont")])
sc("late-system-reset", "pc: system_reset is the last step (RESET)", ["late", "x86", "pc"], _LATE_PC,
   [start(), qmp("system_reset")])
_late_caps = qmp("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
sc("late-migrate", "pc: migrate is the last step: the source's and the target's MIGRATION events come later",
   ["late", "migration", "x86", "pc"], vms={"src": vm(_LATE_PC), "dst": vm(_LATE_PC + xdev(0, 2, 0, id="c2")
                                                                      + ["-incoming", MIG_URI])},
   steps=[connect("s", "src"), negotiate(c="s"), connect("d", "dst"), negotiate(c="d"), dict(_late_caps, c="s"),
          dict(_late_caps, c="d"), cpu(0, 2, 0, id="c2", c="s"), qmp("migrate", {"uri": MIG_URI}, c="s")],
   volatile_keys=MIG_VOLATILE)
_SCENARIOS[-1]["retry_unless"] = one_ram_pass


# =========================================================================== s390x (scenarios_s390x.py)
__import__("importlib").import_module(f"{__package__}.scenarios_s390x" if __package__ else "scenarios_s390x").register(
    __import__("sys").modules[__name__])
