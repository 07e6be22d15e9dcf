"""cpuhot as a drop-in for ``qemu-system-*``: the options harnesses pass, with QEMU 7.2's checks.

The console scripts ``cpuhot-system-x86_64`` and ``cpuhot-system-ppc64`` (and plain
``cpuhot``) take the argv a harness gives ``qemu-system-*``.  This module holds what
those options mean beyond the VM model:

``-daemonize`` / ``-pidfile FILE``
    a real daemon (double fork, ``setsid``, stdio on ``/dev/null``; :mod:`cpuhot.daemon`).
    The pid file is written (locked, ``PID\\n``, mode 0600) once every monitor socket
    listens (before, on :mod:`cpuhot.early`'s path, as QEMU does), and the parent exits 0
    once the daemon serves, or 1 with the error.  The pid file is removed at exit.
``-chardev socket,id=ID,path=PATH|host=H,port=P|fd=N,server=on,wait=off`` + ``-mon chardev=ID,mode=control``
    a QMP monitor on that chardev; ``fd=N`` adopts an inherited, already listening
    socket (what libvirt passes).  ``mode=readline`` (HMP) is refused: use QMP's
    ``human-monitor-command``.
``-uuid``, ``-name guest=NAME,...``
    ``query-uuid`` / ``query-name``.
``-machine TYPE,accel=kvm:tcg,usb=off,...``
    merged like QEMU merges repeated ``-machine``; properties are checked against
    QEMU 7.2's list for the machine family (``_qemu_argv_data.py``), ``memory-backend=ID``
    must name a memory backend of the right size.
``-msg timestamp=on,guest-name=on``
    error and warning lines get QEMU's prefixes.
``-overcommit``, ``-rtc``, ``-boot``, ``-sandbox``, ``-global``, ``-no-shutdown``
    checked as QEMU checks them, otherwise without effect on CPU hotplug.

Errors come in QEMU's order: the option scan (``invalid option``), option syntax in
argv order, ``-sandbox``, ``-rtc``, chardevs, the machine type, ``-boot``, machine
properties, ``-smp``, monitors, ``-cpu``, the memory backend, NUMA, ``-device``.
Every message was checked against a live ``qemu-system-x86_64`` 7.2.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import socket
import stat
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .machine.options import parse_option_string, parse_size

if TYPE_CHECKING:
    from .machine.config import BuiltMachine, LaunchOptions
    from .machine.machines import MachineType

#: options whose QEMU meaning lives here (cli.parse_serve_args hands them over)
HANDLED = frozenset({"uuid", "name", "msg", "overcommit", "rtc", "sandbox", "global", "chardev", "mon",
                     "daemonize", "pidfile", "machine", "M", "boot", "accel", "enable-kvm", "no-shutdown"})

ACCELERATORS = ("kvm", "tcg")

#: QEMU 7.2's qemu_chardev_opts (shared by every backend)
CHARDEV_KEYS = frozenset({
    "backend", "path", "host", "port", "fd", "local", "localaddr", "localport", "to", "ipv4", "ipv6", "wait",
    "server", "delay", "nodelay", "reconnect", "telnet", "tn3270", "tls-creds", "tls-authz", "websocket",
    "width", "height", "cols", "rows", "mux", "signal", "name", "debug", "size", "chardev", "append",
    "logfile", "logappend", "mouse", "clipboard", "abstract", "tight", "id"})
#: char drivers of qemu-system-x86_64 7.2 (Debian build)
CHARDEV_DRIVERS = frozenset({
    "null", "socket", "udp", "msmouse", "wctablet", "memory", "ringbuf", "file", "stdio", "serial", "tty",
    "pipe", "pty", "parallel", "parport", "mux", "braille", "testdev", "spicevmc", "spiceport",
    "qemu-vdagent", "dbus", "vc"})

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")


class DropinError(Exception):
    """A refused command line, rendered as QEMU renders it (``prog: [location: ]message`` + hints).

    ``before`` holds lines QEMU printed before the error (warnings of the same option).
    """

    def __init__(self, message: str, *, location: str | None = None, hints: tuple[str, ...] = (),
                 before: str = ""):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hints = hints
        self.before = before

    def render(self, prog: str) -> str:
        loc = f"{self.location}: " if self.location else ""
        return self.before.replace("{prog}", prog) + "\n".join([f"{prog}: {loc}{self.message}", *self.hints]) + "\n"


@dataclass
class Chardev:
    id: str | None
    backend: str
    opts: dict[str, str]
    text: str                       # the option as given, for messages
    location: str = ""

    @property
    def is_server(self) -> bool:
        return _bool(self.opts.get("server", "off")) is True


@dataclass
class MonitorSpec:
    opts: dict[str, str]
    text: str
    location: str = ""


@dataclass
class Dropin:
    """What the drop-in options of one command line said (filled while argv is read)."""

    chardevs: list[Chardev] = field(default_factory=list)
    mons: list[MonitorSpec] = field(default_factory=list)
    daemonize: bool = False
    pidfile: str | None = None
    msg_timestamp: bool = False
    msg_guest_name: bool = False
    guest_name: str | None = None
    machine_pairs: dict[str, str] = field(default_factory=dict)
    machine_given: bool = False
    accel_option: str | None = None          # -accel NAME (or -enable-kvm)
    #: every ``-accel NAME`` in argv order, (location, NAME): QEMU tries them in turn
    accel_options: list[tuple[str, str]] = field(default_factory=list)
    machine_accel_after_kvm: bool = False
    boot: dict[str, str] = field(default_factory=dict)
    rtc: dict[str, str] = field(default_factory=dict)
    sandbox: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    globals: list[tuple[str, str, str]] = field(default_factory=list)
    no_shutdown: bool = False
    #: the first error of the argv-order syntax checks (raised once the option scan is complete)
    pending: DropinError | None = None
    #: warnings of the argv-order checks, already rendered with "{prog}" for the program name
    warnings: list[str] = field(default_factory=list)
    #: "-machine accel=" resolution, reported after -smp: (warning lines, error or None)
    accel_outcome: tuple[list[str], DropinError | None] = field(default_factory=lambda: ([], None))
    #: warnings of the stages after -smp, for the caller to print before the VM's own
    late_warnings: str = ""
    #: ``-device virtserialport,...``: the options of each (the guest agent's port among them)
    serial_ports: list[tuple[dict[str, str], str]] = field(default_factory=list)


# -- QemuOpts helpers ------------------------------------------------------------------------

def _bool(text: str) -> bool | None:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _qemu_opts(text: str, location: str, keys: Collection[str], *, implied: str | None = None,
               bools: Collection[str] = (),
               d: Dropin | None = None) -> dict[str, str]:
    """Parse a QemuOpts option with a description: unknown keys and bad booleans are refused."""
    pairs = parse_option_string(text, implied=implied)
    parts = text.split(",")
    out: dict[str, str] = {}
    for n, (k, v) in enumerate(pairs):
        bare = n < len(parts) and "=" not in parts[n] and not (n == 0 and implied)
        if bare:                         # QEMU 7.2 still takes "flag"/"noflag" for flag=on/off, with a warning
            short = k
            if k.startswith("no"):
                k, v = k[2:], "off"
            if d is not None:
                d.warnings.append(f"{{prog}}: {location}: warning: short-form boolean option '{short}' "
                                  f"deprecated\nPlease use {k}={v} instead\n")
        if k not in keys:
            raise DropinError(f"Invalid parameter '{k}'", location=location)
        if k in bools and _bool(v) is None:
            raise DropinError(f"Parameter '{k}' expects 'on' or 'off'", location=location)
        out[k] = v
    return out


# -- argv order: one option at a time -----------------------------------------------------------

def take_option(d: Dropin, opts: LaunchOptions, raw: str, name: str, value: str | None) -> None:
    """Record one drop-in option; syntax errors are kept in ``d.pending`` (the first one wins)."""
    location = f"{raw} {value}" if value is not None else raw
    try:
        _take(d, opts, name, value, location)
    except DropinError as e:
        if d.pending is None:
            e.before = "".join(d.warnings)
            d.warnings.clear()
            d.pending = e


def _take(d: Dropin, opts: LaunchOptions, name: str, value: str | None, location: str) -> None:
    value = cast(str, value)        # None only for the flags (daemonize, ...), whose branches do not read it
    if name == "uuid":
        if not _UUID_RE.match(value):
            raise DropinError("failed to parse UUID string: wrong format", location=location)
        opts.uuid = value.lower()
    elif name == "name":
        o = _qemu_opts(value, location, {"guest", "process", "debug-threads"}, implied="guest",
                       bools=("debug-threads",), d=d)
        if "guest" in o:
            opts.name = o["guest"]
            d.guest_name = o["guest"]
    elif name == "msg":
        o = _qemu_opts(value, location, {"timestamp", "guest-name"}, bools=("timestamp", "guest-name"), d=d)
        d.msg_timestamp = _bool(o.get("timestamp", "off")) or False
        d.msg_guest_name = _bool(o.get("guest-name", "off")) or False
    elif name == "overcommit":
        _qemu_opts(value, location, {"mem-lock", "cpu-pm"}, bools=("mem-lock", "cpu-pm"), d=d)
    elif name == "rtc":
        d.rtc.update(_qemu_opts(value, location, {"base", "clock", "driftfix"}, d=d))
    elif name == "sandbox":
        o = _qemu_opts(value, location, {"enable", "obsolete", "elevateprivileges", "spawn", "resourcecontrol"},
                       implied="enable", bools=("enable",), d=d)
        d.sandbox.append((location, o))
    elif name == "global":
        m = re.match(r"([^.=]{1,63})\.([^=]{1,63})=", value)
        if m:
            d.globals.append((m.group(1), m.group(2), value[m.end():]))
            return
        o = _qemu_opts(value, location, {"driver", "property", "value"}, d=d)
        if not all(k in o for k in ("driver", "property", "value")):
            raise DropinError("options 'driver', 'property', and 'value' are required", location=location)
        d.globals.append((o["driver"], o["property"], o["value"]))
    elif name == "chardev":
        pairs = _qemu_opts(value, location, CHARDEV_KEYS, implied="backend", d=d)
        ident = pairs.pop("id", None)
        if ident is not None and any(c.id == ident for c in d.chardevs):
            raise DropinError(f"Duplicate ID '{ident}' for chardev", location=location)
        d.chardevs.append(Chardev(ident, pairs.pop("backend", ""), pairs, value, location))
    elif name == "mon":
        d.mons.append(MonitorSpec(_qemu_opts(value, location, {"mode", "chardev", "pretty", "id"},
                                             implied="chardev", d=d), value, location))
    elif name == "daemonize":
        d.daemonize = True
    elif name == "pidfile":
        d.pidfile = value
    elif name in ("machine", "M"):
        d.machine_given = True
        for k, v in parse_option_string(value, implied="type"):
            d.machine_pairs.pop(k, None)        # a later value wins (QEMU merges -machine options)
            d.machine_pairs[k] = v
    elif name == "accel":
        first = value.split(",")[0]
        d.accel_option = first.split("=", 1)[1] if first.startswith("accel=") else first
        d.accel_options.append((location, d.accel_option))
        if d.accel_option in ACCELERATORS and len(d.accel_options) == 1:
            opts.accel = d.accel_option     # otherwise settled by before_build, as QEMU tries them
    elif name == "enable-kvm":
        # sugar for "-machine accel=kvm" (a later -machine accel= overrides it)
        d.machine_pairs.pop("accel", None)
        d.machine_pairs["accel"] = "kvm"
    elif name == "boot":
        for k, v in parse_option_string(value, implied="order"):
            d.boot[k] = v
    elif name == "no-shutdown":
        d.no_shutdown = True            # cpuhot's guests never shut down by themselves


def finish_parse(d: Dropin, opts: LaunchOptions) -> None:
    """After the option scan: raise the first syntax error, then settle -machine."""
    if d.pending is not None:
        raise d.pending
    if d.machine_pairs:
        pairs = dict(d.machine_pairs)
        accel = pairs.get("accel")
        mtype = pairs.pop("type", None)
        opts.machine = ",".join(([mtype] if mtype else []) + [f"{k}={v}" for k, v in pairs.items() if k != "accel"]) or None
        if accel is not None and d.accel_option is None:
            opts.accel = accel.split(":")[0]
    if d.daemonize:
        for c in d.chardevs:
            if c.backend == "stdio":
                raise DropinError("cannot use stdio with -daemonize", location=c.location)
    take_serial_ports(d, opts)


# -- virtio-serial ports (the guest agent's channel) ------------------------------------------------

SERIAL_PORT_DRIVERS = ("virtserialport", "virtconsole")


def take_serial_ports(d: Dropin, opts: LaunchOptions) -> None:
    """Take ``-device virtserialport,...`` out of the CPU/PCI device list: the ports live on a
    virtio-serial controller's bus, and the one named ``org.qemu.guest_agent.0`` carries the guest
    agent (:mod:`cpuhot.machine.agent`).  Their chardevs are checked once all are known."""
    kept = []
    buses: list[str] = []                # virtio-serial buses created so far (QEMU realizes -device in order)
    for text in opts.devices:
        try:
            pairs = dict(parse_option_string(text, implied="driver"))
        except Exception:
            kept.append(text)            # the device code reports the syntax error
            continue
        driver = pairs.get("driver")
        if driver in SERIAL_PORT_DRIVERS:
            location = f"-device {text}"
            if "bus" in pairs:
                if pairs["bus"] not in buses:
                    raise DropinError(f"Bus '{pairs['bus']}' not found", location=location)
            elif not buses:
                raise DropinError(f"No 'virtio-serial-bus' bus found for device '{driver}'", location=location)
            d.serial_ports.append((pairs, location))
        else:
            if driver in ("virtio-serial-pci", "virtio-serial", "virtio-serial-device"):
                buses.append(f"{pairs['id']}.0" if "id" in pairs else "virtio-serial-bus")
            kept.append(text)
    opts.devices[:] = kept
    for pairs, location in d.serial_ports:
        name = pairs.get("chardev")
        if name is not None and not any(c.id == name for c in d.chardevs):
            raise DropinError(f"Property '{pairs['driver']}.chardev' can't find value '{name}'", location=location)


def agent_channels(d: Dropin) -> list[tuple[str, Chardev]]:
    """The guest agent ports: (port id, its chardev), for ports named org.qemu.guest_agent.0."""
    from .machine.agent import AGENT_PORT_NAME
    out: list[tuple[str, Chardev]] = []
    for pairs, _ in d.serial_ports:
        if pairs.get("name") == AGENT_PORT_NAME and pairs.get("chardev"):
            chardev = next(c for c in d.chardevs if c.id == pairs["chardev"])
            out.append((pairs.get("id", pairs["chardev"]), chardev))
    return out


def chardev_listener(c: Chardev) -> tuple[str | None, socket.socket | None]:
    """A socket chardev's listening address: (unix path, None) or (None, inherited socket)."""
    if "path" in c.opts:
        return c.opts["path"], None
    if "fd" in c.opts:
        sock = socket.socket(fileno=int(c.opts["fd"]))
        try:
            sock.listen(64)
        except OSError:
            pass
        return None, sock
    return None, None


# -- after the scan, before the VM is built -------------------------------------------------------

def before_build(d: Dropin, opts: LaunchOptions) -> list[str]:
    """Checks QEMU makes before ``-smp``: -sandbox, -rtc, chardevs, machine type, -boot, accel,
    machine properties.  Returns warning texts (with ``{prog}``); raises :class:`DropinError`."""
    from .machine.errors import ConfigError
    from .machine.machines import find_machine
    out: list[str] = list(d.warnings)
    d.warnings.clear()
    for location, o in d.sandbox:
        if _bool(o.get("enable", "off")):
            allowed = {"obsolete": ("allow", "deny"), "elevateprivileges": ("allow", "deny", "children"),
                       "spawn": ("allow", "deny"), "resourcecontrol": ("allow", "deny")}
            for key, values in allowed.items():
                if key in o and o[key] not in values:
                    raise DropinError(f"invalid argument for {key}", location=location)
    _check_rtc(d.rtc)
    for c in d.chardevs:
        _check_chardev(c)
    type_name = d.machine_pairs.get("type") if d.machine_pairs else None
    try:
        machine = find_machine(opts.arch, type_name)
    except ConfigError:
        return out                       # build_machine refuses the type itself
    _check_boot(d.boot)
    d.accel_outcome = ([], None)
    if d.accel_options and "accel" not in d.machine_pairs:
        lines: list[str] = []
        try:
            opts.accel = _resolve_accel_options(d.accel_options, lines)
            d.accel_outcome = (lines, None)
        except DropinError as e:
            d.accel_outcome = ([], e)
    if "accel" in d.machine_pairs:
        if d.accel_option is not None:
            raise DropinError('The -accel and "-machine accel=" options are incompatible')
        lines = []
        try:
            opts.accel = _resolve_accel(d.machine_pairs["accel"], lines)
            d.accel_outcome = (lines, None)
        except DropinError as e:
            d.accel_outcome = ([], e)
    _check_machine_props(d.machine_pairs, machine, opts.arch)
    backend = d.machine_pairs.get("memory-backend")
    if backend is not None and opts.memory is None:
        size = memory_backends(opts.objects).get(backend)
        if size is not None:             # -m defaults to the backend's size
            opts.memory = f"{size}b"
    return out


def _check_rtc(rtc: dict[str, str]) -> None:
    base = rtc.get("base")
    if base is not None and base not in ("utc", "localtime"):
        if not re.fullmatch(r"\d+-\d+-\d+(T\d+:\d+:\d+)?", base):
            raise DropinError("invalid datetime format",
                              hints=("valid formats: '2006-06-17T16:01:21' or '2006-06-17'",))
    if rtc.get("clock", "host") not in ("host", "rt", "vm"):
        raise DropinError(f"invalid option value '{rtc['clock']}'")
    if rtc.get("driftfix", "none") not in ("slew", "none"):
        raise DropinError(f"invalid option value '{rtc['driftfix']}'")


def _check_chardev(c: Chardev) -> None:
    if c.id is None:
        raise DropinError("chardev: no id specified", location=c.location)
    if c.backend not in CHARDEV_DRIVERS:
        raise DropinError(f"'{c.backend}' is not a valid char driver name", location=c.location)
    if c.backend != "socket":
        return
    given = [k for k in ("path", "fd", "host") if k in c.opts]
    if len(given) > 1:
        raise DropinError("None or one of 'path', 'fd' or 'host' option required.", location=c.location)
    if "host" in c.opts and "port" not in c.opts:
        raise DropinError("chardev: socket: no port given", location=c.location)
    if not given or "fd" in c.opts:
        text = c.opts.get("fd", "")
        if not text.isdigit():
            raise DropinError(f"Unable to parse FD number {text}", location=c.location)
        try:
            st = os.fstat(int(text))
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError
        except OSError:
            raise DropinError(f"File descriptor '{text}' is not a socket", location=c.location) from None
    if not c.is_server:
        target = c.opts.get("path") or f"{c.opts.get('host')}:{c.opts.get('port')}"
        if "path" in c.opts and not os.path.exists(c.opts["path"]):
            raise DropinError(f"Failed to connect to '{target}': No such file or directory", location=c.location)
        raise DropinError("cpuhot serves monitors on listening sockets only: use server=on,wait=off "
                          "(client-mode chardev sockets are not supported)", location=c.location)


def _check_boot(boot: dict[str, str]) -> None:
    for key in ("menu", "strict"):
        if key in boot and _bool(boot[key]) is None:
            raise DropinError(f"Parameter 'boot.{key}' expects 'on' or 'off'")
    for key in ("splash-time", "reboot-timeout"):
        if key in boot and not re.fullmatch(r"-?\d+", boot[key]):
            raise DropinError(f"Parameter 'boot.{key}' expects integer")
    for key in boot:
        if key not in ("order", "once", "menu", "splash", "splash-time", "reboot-timeout", "strict"):
            raise DropinError(f"Parameter 'boot.{key}' is unexpected")
    for key in ("order", "once"):
        seen: set[str] = set()
        for ch in boot.get(key, ""):
            if not "a" <= ch <= "p":
                raise DropinError(f"Invalid boot device '{ch}'")
            if ch in seen:
                raise DropinError(f"Boot device '{ch}' was given twice")
            seen.add(ch)


def _resolve_accel(text: str, out: list[str]) -> str:
    """``accel=kvm:tcg``: the first accelerator that works (cpuhot simulates both kvm and tcg)."""
    failed: list[str] = []
    for name in text.split(":"):
        if name in ACCELERATORS:
            out.extend(failed)
            if failed:
                out.append(f"{{prog}}: falling back to {name}\n")
            return name
        failed.append(f"{{prog}}: invalid accelerator {name}\n")
    raise DropinError(failed[-1][len("{prog}: "):].rstrip("\n"), before="".join(out + failed[:-1]))


def _resolve_accel_options(given: list[tuple[str, str]], out: list[str]) -> str:
    """Repeated ``-accel NAME``: the first one that exists wins (QEMU's configure_accelerators);
    each unknown one before it is reported with its option, the name is not split at ``:``."""
    failed: list[str] = []
    for location, name in given:
        if name in ACCELERATORS:
            out.extend(failed)
            if failed:
                out.append(f"{{prog}}: falling back to {name}\n")
            return name
        failed.append(f"{{prog}}: {location}: invalid accelerator {name}\n")
    last_location, last = given[-1]
    raise DropinError(f"invalid accelerator {last}", location=last_location, before="".join(failed[:-1]))


#: accelerator properties QEMU 7.2 still takes on -machine (qemu_apply_legacy_machine_options)
LEGACY_ACCEL_PROPS = frozenset({"accel", "kernel_irqchip", "kernel-irqchip", "kvm-shadow-mem", "igd-passthru"})


def _check_machine_props(pairs: dict[str, str], machine: MachineType, arch: str) -> None:
    from ._qemu_argv_data import MACHINE_PROPS
    family = machine.family if machine.family in MACHINE_PROPS.get(arch, {}) else "none"
    known = MACHINE_PROPS[arch][family]
    cls = f"{machine.name}-machine"
    items = [(k, v) for k, v in pairs.items() if k not in LEGACY_ACCEL_PROPS and k != "type"]
    for k, _ in items:
        if k.split(".", 1)[0] not in known:
            raise DropinError(f"Property '{cls}.{k}' not found")
    for k, v in items:
        kind = known.get(k)
        if kind == "bool" and _bool(v) is None:
            raise DropinError(f"Parameter '{k}' expects 'on' or 'off'")
        if kind == "OnOffAuto" and v not in ("on", "off", "auto"):
            raise DropinError(f"Parameter '{k}' does not accept value '{v}'")


def memory_backends(objects: list[str]) -> dict[str, int]:
    """``-object memory-backend-*,id=ID,size=S``: id -> size (malformed ones are left to the VM model)."""
    out: dict[str, int] = {}
    for text in objects:
        try:
            o = dict(parse_option_string(text, implied="qom-type"))
            if o.get("qom-type", "").startswith("memory-backend-") and "id" in o:
                out[o["id"]] = parse_size(o.get("size", "0"))
        except ValueError:
            continue
    return out


# -- after -smp: monitors, then (after -cpu) the memory backend -------------------------------

def monitor_error(d: Dropin) -> DropinError | None:
    """The first ``-mon`` QEMU would refuse, or None."""
    used: set[str | None] = set()
    for m in d.mons:
        o = m.opts
        if "mode" in o and o["mode"] not in ("readline", "control"):
            return DropinError(f"Parameter 'mode' does not accept value '{o['mode']}'", location=m.location)
        if "pretty" in o and _bool(o["pretty"]) is None:
            return DropinError("Parameter 'pretty' expects 'on' or 'off'", location=m.location)
        if "chardev" not in o:
            return DropinError("Parameter 'chardev' is missing", location=m.location)
        chardev = next((c for c in d.chardevs if c.id == o["chardev"]), None)
        if chardev is None:
            return DropinError(f'chardev "{o["chardev"]}" not found', location=m.location)
        if chardev.id in used:
            return DropinError(f"Device '{chardev.id}' is in use", location=m.location)
        used.add(chardev.id)
        if o.get("mode", "readline") != "control":
            return DropinError("cpuhot serves QMP monitors only (mode=control); the human monitor "
                               "(mode=readline, the default) is not supported: use mode=control and send HMP "
                               "through QMP's human-monitor-command", location=m.location)
        if chardev.backend != "socket":
            return DropinError(f"chardev '{chardev.id}' is a '{chardev.backend}' chardev: cpuhot serves "
                               "monitors on socket chardevs only", location=m.location)
    return None


def memory_backend_error(d: Dropin, opts: LaunchOptions) -> DropinError | None:
    backend = d.machine_pairs.get("memory-backend")
    if backend is None:
        return None
    backends = memory_backends(opts.objects)
    if backend not in backends:
        return DropinError(f"Memory backend '{backend}' not found")
    if opts.memory is not None:
        try:
            text = dict(parse_option_string(opts.memory, implied="size")).get("size", opts.memory)
            size = parse_size(text, default_unit=1 << 20)
        except ValueError:
            return None
        if size != backends[backend]:
            return DropinError("Machine memory size does not match the size of the memory backend")
    return None


def build_in_order(d: Dropin, opts: LaunchOptions, build: Callable[[], BuiltMachine]) -> BuiltMachine:
    """Run ``build()`` (the VM model's start-up) with the checks QEMU makes after ``-smp`` slotted in
    where QEMU makes them: the accelerator list, then the monitors (before ``-cpu``), then the
    memory backend (after ``-cpu``).  Warnings of those stages end up in ``d.late_warnings``."""
    from dataclasses import replace

    from .machine.config import build_machine
    from .machine.errors import ConfigError
    accel_lines, accel_error = d.accel_outcome
    warn = "".join(accel_lines)
    late = [(stage, err) for stage, err in (("accel", accel_error), ("mon", monitor_error(d)),
                                            ("memory", memory_backend_error(d, opts))) if err is not None]

    def with_warnings(err: DropinError) -> DropinError:
        err.before = warn + err.before
        return err

    try:
        built = build()
    except ConfigError as e:
        if not late and not warn:
            raise
        quiet: dict[str, Any] = {"vcpu_threads": False} if hasattr(opts, "vcpu_threads") else {}
        probe = replace(opts, cpu=None, objects=[], numa=[], devices=[], incoming=None, memory=None, **quiet)
        try:
            build_machine(probe)
        except ConfigError:
            raise e from None            # refused at -smp or earlier: nothing of the later stages shows
        if late:
            stage, err = late[0]
            cpu_first = False
            if stage == "memory":
                try:
                    build_machine(replace(probe, cpu=opts.cpu))
                except ConfigError:
                    cpu_first = True     # -cpu is checked before the memory backend
            if not cpu_first:
                raise with_warnings(err) from None
        raise with_warnings(DropinError(e.message, location=e.location, hints=e.hints)) from None
    if late:
        raise with_warnings(late[0][1])
    d.late_warnings = warn
    return built


def after_build(d: Dropin, opts: LaunchOptions) -> list[str]:
    """Warnings QEMU prints once the machine is created (``-global`` of unknown classes)."""
    from ._qemu_argv_data import DEVICE_TYPES
    known = set(DEVICE_TYPES.get(opts.arch, ()))
    return [f"{{prog}}: warning: global {drv}.{prop} has invalid class name\n"
            for drv, prop, _ in d.globals if drv not in known]


# -- monitors ---------------------------------------------------------------------------------

def monitor_listeners(d: Dropin) -> tuple[list[tuple[str, str]], list[tuple[str, socket.socket]]]:
    """The QMP monitors of ``-mon``/``-chardev``: (endpoint text, location) pairs to bind and
    (location, socket) pairs of inherited listening sockets to adopt."""
    endpoints: list[tuple[str, str]] = []
    sockets: list[tuple[str, socket.socket]] = []
    for m in d.mons:
        c = next(c for c in d.chardevs if c.id == m.opts["chardev"])
        if "path" in c.opts:
            endpoints.append((f"unix:{c.opts['path']}", f"-chardev {c.text}"))
        elif "host" in c.opts:
            endpoints.append((f"tcp:{c.opts['host']}:{c.opts['port']}", f"-chardev {c.text}"))
        else:
            fd = int(c.opts["fd"])
            sock = socket.socket(fileno=fd)
            try:
                sock.listen(64)          # already listening: only the backlog changes
            except OSError:
                pass
            sockets.append((f"-chardev {c.text}", sock))
    return endpoints, sockets


# -- stderr prefixes (-msg) ---------------------------------------------------------------------

def stamp(text: str, prog: str, d: Dropin | None) -> str:
    """Give the error/warning lines of ``text`` QEMU's ``-msg timestamp=on,guest-name=on`` prefixes."""
    if d is None or not text or not (d.msg_timestamp or (d.msg_guest_name and d.guest_name)):
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"{prog}: "):
            prefix = ""
            if d.msg_timestamp:
                now = _dt.datetime.now(_dt.timezone.utc)
                prefix += now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z "
            if d.msg_guest_name and d.guest_name:
                prefix += f"{d.guest_name} "
            lines[i] = prefix + line
    return "\n".join(lines)


# -- pid file, daemonize: cpuhot.daemon (light: cpuhot.early uses them before the heavy imports) --

from .daemon import Daemon, PidFile  # noqa: E402,F401


# -- data -----------------------------------------------------------------------------------------

def regenerate_data(out_path: str | None = None) -> str:
    """Record ``_qemu_argv_data.py`` from the installed QEMU 7.2 binaries."""
    import json
    import pprint
    import subprocess
    import tempfile
    import time

    def session(binary: str, machine: str) -> tuple[subprocess.Popen[bytes], Callable[..., Any], str]:
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "q.sock")
        p = subprocess.Popen([binary, "-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", machine,
                              "-qmp", f"unix:{path},server=on,wait=off"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        f = s.makefile("rwb")
        f.readline()

        def ex(cmd: str, args: dict[str, Any] | None = None) -> Any:
            f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}).encode() + b"\n")
            f.flush()
            while True:
                m = json.loads(f.readline())
                if "event" not in m:
                    return m["return"]
        ex("qmp_capabilities")
        return p, ex, tmp

    props: dict[str, dict[str, dict[str, str]]] = {}
    types: dict[str, list[str]] = {}
    for binary, fams in (("qemu-system-x86_64", {"pc": "pc-i440fx-7.2-machine", "q35": "pc-q35-7.2-machine",
                                                 "none": "none-machine"}),
                         ("qemu-system-ppc64", {"pseries": "pseries-7.2-machine", "none": "none-machine"}),
                         ("qemu-system-s390x", {"s390-ccw-virtio": "s390-ccw-virtio-7.2-machine",
                                                "none": "none-machine"})):
        arch = binary.rsplit("-", 1)[1]
        p, ex, tmp = session(binary, next(iter(fams)))
        try:
            types[arch] = sorted(t["name"] for t in ex("qom-list-types", {"abstract": True, "implements": "device"}))
            props[arch] = {fam: {pr["name"]: pr["type"] for pr in ex("qom-list-properties", {"typename": tn})
                                 if not pr["type"].startswith("child<")} for fam, tn in fams.items()}
        finally:
            p.terminate()
            p.wait()
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join([
        '"""QEMU 7.2 facts the drop-in command line checks against, recorded from a live QEMU 7.2.22.', '',
        'Regenerate with ``python -m cpuhot.dropin --regenerate-data`` (needs qemu-system-x86_64,',
        'qemu-system-ppc64 and qemu-system-s390x): ``qom-list-properties`` of each machine type family (links and children left',
        'out) and ``qom-list-types implements=device abstract=true`` (the classes ``-global`` accepts).', '"""', '',
        'MACHINE_PROPS = ' + pprint.pformat(props, width=110, compact=True), '',
        'DEVICE_TYPES = ' + pprint.pformat(types, width=110, compact=True), ''])
    out_path = out_path or os.path.join(os.path.dirname(__file__), "_qemu_argv_data.py")
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate-data"]:
        print(regenerate_data())
    else:
        print("usage: python -m cpuhot.dropin --regenerate-data", file=sys.stderr)
        sys.exit(2)
