"""The QEMU guest agent (qemu-ga) of the simulated guest: its commands, replies and availability.

A real qemu-ga runs inside the guest and talks over the virtio-serial port
``org.qemu.guest_agent.0``; QEMU passes the bytes between that port and a host
chardev.  :class:`GuestAgent` is the guest side, sans-IO: the I/O layer hands it
each parsed request (:meth:`GuestAgent.handle`) and writes what comes back.  It
reads and changes the same guest model QMP shows (``VCpu.online``), so
``guest-get-vcpus``, ``x-cpuhot-guest-cpus`` and ``query-cpus-fast`` always agree.

Availability (``mode``):

``answering`` (default)
    the agent opens its port when the guest boots (the VM first runs):
    ``VSERPORT_CHANGE {"id": PORT, "open": true}`` on QMP; it closes it (``open``
    false) when the guest shuts down.  It answers while the VM runs.
``never``
    the port opens, but the agent never reads or answers (a hung qemu-ga).
``late:SECONDS``
    every reply comes SECONDS late (on the model's clock).
``absent``
    qemu-ga is not installed: the port never opens.

The guest's operating system (``os``): ``linux`` (vCPU 0 has no ``online`` file
and cannot go offline) or ``windows`` (no vCPU can go offline, ``guest-set-vcpus``
is unsupported, as qemu-ga for Windows answers).

Replies, error texts, key order and the list order of ``guest-get-vcpus``
(descending ``logical-id``, the order qemu-ga reads ``/sys/devices/system/cpu`` of
a tmpfs) were recorded from Debian's qemu-ga 7.2 and 10.0
(``tests/agent/transcripts/``).  Inferred from qemu-ga's sources (they change the
machine, so they were never run for real): a successful ``guest-shutdown``
(no reply, ``success-response`` false; the guest powers off), the Windows
replies, ``guest-set-time`` (``{}``), ``guest-get-fsinfo``/``guest-get-disks``
(this guest has no disks) and ``guest-network-get-interfaces``.  Commands cpuhot
does not model are listed as disabled by ``guest-info`` and answered as
qemu-ga answers a disabled command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import Clock, Timers
from .errors import CommandNotFound, GenericError, QMPError
from .guest import Guest
from .release import data_text
from .slots import VCpu

AGENT_PORT_NAME = "org.qemu.guest_agent.0"
AGENT_MODES = ("answering", "never", "late", "absent")
GUEST_OSES = ("linux", "windows")
#: the 0xFF byte qemu-ga writes before the reply of guest-sync-delimited
SENTINEL = b"\xff"


class _HasArch(Protocol):
    @property
    def arch(self) -> str: ...


class AgentHost(Protocol):
    """What the agent needs of its VM (:class:`cpuhot.machine.vm.VirtualMachine`, which imports
    this module for its ``agent`` attribute)."""

    @property
    def runstate(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def vcpus(self) -> list[VCpu]: ...
    @property
    def guest(self) -> Guest: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def timers(self) -> Timers: ...
    @property
    def policy(self) -> _HasArch: ...

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None: ...

    def guest_shutdown_request(self, *, reboot: bool = False) -> None: ...


@dataclass(frozen=True)
class AgentMode:
    name: str = "answering"
    delay: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "AgentMode":
        """``answering``, ``never``, ``late:SECONDS``, ``absent``."""
        name, _, arg = text.partition(":")
        if name not in AGENT_MODES:
            raise ValueError(f"unknown agent mode '{name}' (one of: {', '.join(AGENT_MODES)})")
        if name == "late":
            try:
                delay = float(arg) if arg else 10.0
            except ValueError:
                raise ValueError(f"bad argument for agent mode '{text}'") from None
            if not 0 <= delay < 1e6:
                raise ValueError(f"bad argument for agent mode '{text}'")
            return cls(name, delay)
        if arg:
            raise ValueError(f"agent mode '{name}' takes no argument")
        return cls(name)

    def __str__(self) -> str:
        return f"late:{self.delay:g}" if self.name == "late" else self.name


@dataclass
class Reply:
    """What the agent writes for one request: a message (None: nothing), after ``delay`` seconds."""

    message: dict[str, Any] | None
    sentinel: bool = False
    delay: float = 0.0


def _table(release: str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(data_text(release, "qemu-ga.json"))
    return table


class GuestAgent:
    """qemu-ga inside the guest of one VM, on the virtserialport ``port_id``."""

    def __init__(self, vm: AgentHost, *, port_id: str = "channel0", chardev_id: str = "charchannel0",
                 mode: AgentMode | str = "answering", os: str = "linux"):
        if os not in GUEST_OSES:
            raise ValueError(f"unknown guest OS '{os}' (one of: {', '.join(GUEST_OSES)})")
        self.vm = vm
        self.port_id = port_id
        self.chardev_id = chardev_id
        self.mode = AgentMode.parse(mode) if isinstance(mode, str) else mode
        self.os = os
        #: the guest side of the port is open (QEMU's ``frontend-open``)
        self.open = False
        #: what ``query-chardev`` says the chardev is (set by the I/O layer)
        self.chardev_filename = "disconnected:unix:,server=on"
        table = _table(getattr(vm, "release", "7.2"))
        self.version: str = table["version"]
        self.command_names: list[str] = table["commands"]
        self.no_success_response = set(table["no-success-response"])
        #: a qemu-ga of 10.0 says why a command is disabled
        self.disabled_suffix = ": the command is not allowed" if not self.version.startswith(("5.", "6.", "7.")) else ""

    # -- availability --------------------------------------------------------------------
    @property
    def answering(self) -> bool:
        """Whether the agent reads and answers right now (its port is open, the guest runs)."""
        return self.open and self.mode.name != "never" and self.vm.runstate == "running"

    def set_open(self, value: bool) -> None:
        if value == self.open:
            return
        self.open = value
        self.vm.emit("VSERPORT_CHANGE", {"id": self.port_id, "open": value})

    def guest_booted(self) -> None:
        if self.mode.name != "absent":
            self.set_open(True)

    def guest_stopped(self) -> None:
        self.set_open(False)

    def set_mode(self, mode: AgentMode | str) -> None:
        self.mode = AgentMode.parse(mode) if isinstance(mode, str) else mode
        if self.mode.name == "absent":
            self.set_open(False)
        elif self.vm.guest.booted and self.vm.runstate == "running":
            self.set_open(True)

    def info(self) -> dict[str, Any]:
        return {"mode": str(self.mode), "os": self.os, "open": self.open, "answering": self.answering,
                "port": self.port_id, "chardev": self.chardev_id, "version": self.version}

    # -- requests ------------------------------------------------------------------------
    def handle(self, msg: Any) -> Reply:
        """One request (a parsed JSON value) -> the reply qemu-ga gives."""
        has_id = isinstance(msg, dict) and "id" in msg
        sentinel = False
        try:
            name, arguments = _check_request(msg)
            sentinel = name == "guest-sync-delimited"
            ret = self._dispatch(name, arguments)
        except _NoResponse:
            return Reply(None, delay=self.mode.delay)
        except QMPError as err:
            reply: dict[str, Any] = {"error": err.to_qmp()}
        else:
            reply = {"return": {} if ret is None else ret}
        if has_id:
            reply["id"] = msg["id"]          # qemu-ga puts the id after the return
        return Reply(reply, sentinel=sentinel, delay=self.mode.delay)

    def _dispatch(self, name: str, arguments: dict[str, Any]) -> object:
        handler = _COMMANDS.get(name)
        if name not in self.command_names:        # not in this qemu-ga release
            raise CommandNotFound(f"The command {name} has not been found")
        if handler is None:
            raise CommandNotFound(f"Command {name} has been disabled{self.disabled_suffix}")
        params, fn = handler
        kwargs = _marshal(params, arguments)
        return fn(self, **kwargs)

    # -- the guest's vCPUs -------------------------------------------------------------------
    def can_offline(self, vcpu: VCpu) -> bool:
        """Whether the vCPU has an ``online`` file (Linux: every vCPU but 0; Windows: none)."""
        return self.os == "linux" and vcpu.cpu_index != 0

    def guest_vcpus(self) -> list[VCpu]:
        """The vCPUs the guest has (a ``cpuN`` directory each): the VM's vCPUs; logical id = cpu-index."""
        return sorted(self.vm.vcpus, key=lambda v: v.cpu_index, reverse=True)

    def get_vcpus(self) -> list[dict[str, Any]]:
        return [{"online": v.online, "can-offline": self.can_offline(v), "logical-id": v.cpu_index}
                for v in self.guest_vcpus()]

    def set_vcpus(self, vcpus: list[dict[str, Any]]) -> int:
        """qemu-ga's rule: apply entries in order until one fails; return how many were applied;
        an error only when the very first one fails."""
        if self.os == "windows":
            raise GenericError("this feature or command is not currently supported")   # inferred (QERR_UNSUPPORTED)
        by_id = {v.cpu_index: v for v in self.vm.vcpus}
        processed = 0
        for entry in vcpus:
            lid = entry["logical-id"]
            v = by_id.get(lid)
            try:
                if v is None:
                    raise GenericError(f'open("/sys/devices/system/cpu/cpu{lid}/"): No such file or directory')
                if not self.can_offline(v):
                    if not entry["online"]:
                        raise GenericError(f"logical processor #{lid} can't be offlined")
                else:
                    v.online = entry["online"]
            except GenericError:
                if processed == 0:
                    raise
                break
            processed += 1
        return processed


class _NoResponse(Exception):
    """A command with ``success-response`` false succeeded: qemu-ga writes nothing."""


def _check_request(msg: Any) -> tuple[str, dict[str, Any]]:
    """qemu-ga's envelope checks (QEMU's qmp_dispatch, without OOB): the texts QEMU uses."""
    if not isinstance(msg, dict):
        raise GenericError("QMP input must be a JSON object")
    for key, value in msg.items():
        if key == "execute":
            if not isinstance(value, str):
                raise GenericError("QMP input member 'execute' must be a string")
        elif key == "arguments":
            if not isinstance(value, dict):
                raise GenericError("QMP input member 'arguments' must be an object")
        elif key != "id":
            raise GenericError(f"QMP input member '{key}' is unexpected")
    if "execute" not in msg:
        raise GenericError("QMP input lacks member 'execute'")
    return msg["execute"], msg.get("arguments", {})


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return True


_TYPE_NAMES = {"int": "integer", "bool": "boolean", "str": "string"}


#: one parameter of an agent command: (name, type, optional)
_Param = tuple[str, str, bool]


def _marshal(params: tuple[_Param, ...], arguments: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """QEMU's strict input visitor: members in schema order, then unexpected ones."""
    out: dict[str, Any] = {}
    for name, kind, optional in params:
        where = f"{prefix}{name}"
        if name not in arguments:
            if not optional:
                raise GenericError(f"Parameter '{where}' is missing")
            continue
        value = arguments[name]
        if kind == "vcpu-list":
            if not isinstance(value, list):
                raise GenericError(f"Invalid parameter type for '{where}', expected: array")
            items = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise GenericError(f"Invalid parameter type for '{where}[{i}]', expected: object")
                items.append(_marshal(_VCPU, item, f"{where}[{i}]."))
            value = items
        elif not _type_ok(kind, value):
            raise GenericError(f"Invalid parameter type for '{where}', expected: {_TYPE_NAMES[kind]}")
        out[name] = value
    for key in arguments:
        if all(key != p[0] for p in params):
            raise GenericError(f"Parameter '{prefix}{key}' is unexpected")
    return out


#: GuestLogicalProcessor: logical-id, online, can-offline (optional, ignored on input)
_VCPU = (("logical-id", "int", False), ("online", "bool", False), ("can-offline", "bool", True))


def _sync(agent: GuestAgent, id: int) -> int:
    return id


def _info(agent: GuestAgent) -> dict[str, Any]:
    implemented = set(_COMMANDS)
    return {"version": agent.version,
            "supported_commands": [{"enabled": n in implemented, "name": n,
                                    "success-response": n not in agent.no_success_response}
                                   for n in agent.command_names]}


def _osinfo(agent: GuestAgent) -> dict[str, str]:
    machine = "x86_64" if agent.vm.policy.arch == "x86_64" else "ppc64le"
    if agent.os == "windows":     # inferred from qemu-ga's Windows sources
        return {"name": "Microsoft Windows", "kernel-release": "20348", "version": "Microsoft Windows Server 2022",
                "pretty-name": "Windows Server 2022 Standard", "version-id": "2022", "variant": "server",
                "variant-id": "server", "kernel-version": "10.0", "machine": machine, "id": "mswindows"}
    return {"name": "Debian GNU/Linux", "kernel-release": "6.1.0-cpuhot", "version": "12 (bookworm)",
            "pretty-name": "Debian GNU/Linux 12 (bookworm)", "version-id": "12",
            "kernel-version": "#1 SMP PREEMPT_DYNAMIC cpuhot", "machine": machine, "id": "debian"}


def _host_name(agent: GuestAgent) -> dict[str, str]:
    return {"host-name": agent.vm.name or "cpuhot-guest"}


def _time(agent: GuestAgent) -> int:
    return int(round(agent.vm.clock.now() * 1e9))


def _shutdown(agent: GuestAgent, mode: str | None = None) -> None:
    """Inferred: qemu-ga runs ``shutdown -P now`` (or -H/-r) and sends no reply."""
    if mode is not None and mode not in ("powerdown", "halt", "reboot"):
        raise GenericError(f"Parameter 'mode' does not accept value '{mode}'")
    agent.vm.guest_shutdown_request(reboot=mode == "reboot")
    raise _NoResponse()


def _interfaces(agent: GuestAgent) -> list[dict[str, Any]]:
    """Inferred shape: the loopback interface only (the simulated guest has no NIC)."""
    return [{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                                            {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}],
             "hardware-address": "00:00:00:00:00:00"}]


#: command -> (parameters: (name, type, optional)...), handler(agent, **arguments)
_COMMANDS: dict[str, tuple[tuple[_Param, ...], Callable[..., object]]] = {
    "guest-sync": ((("id", "int", False),), _sync),
    "guest-sync-delimited": ((("id", "int", False),), _sync),
    "guest-ping": ((), lambda agent: None),
    "guest-info": ((), _info),
    "guest-get-vcpus": ((), GuestAgent.get_vcpus),
    "guest-set-vcpus": ((("vcpus", "vcpu-list", False),), GuestAgent.set_vcpus),
    "guest-get-osinfo": ((), _osinfo),
    "guest-get-host-name": ((), _host_name),
    "guest-get-time": ((), _time),
    "guest-get-timezone": ((), lambda agent: {"zone": "UTC", "offset": 0}),
    "guest-get-users": ((), lambda agent: []),
    "guest-get-fsinfo": ((), lambda agent: []),
    "guest-get-disks": ((), lambda agent: []),
    "guest-network-get-interfaces": ((), _interfaces),
    "guest-set-time": ((("time", "int", True),), lambda agent, time=None: None),
    "guest-shutdown": ((("mode", "str", True),), _shutdown),
}
