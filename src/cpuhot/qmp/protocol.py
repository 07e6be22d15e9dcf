"""The sans-IO QMP monitor: greeting, per-connection negotiation, dispatch, event fan-out.

:class:`Monitor` is shared by every connection to one VM; each connection has
a :class:`Session`.  The I/O layer feeds parsed input with
:meth:`Monitor.handle` and gets back ``(session, message)`` pairs to write, in
order: the events a command caused (to every negotiated session), then its
reply (to the caller).  Nothing here touches a socket.

>>> from cpuhot.machine.config import LaunchOptions, build_machine
>>> mon = Monitor(build_machine(LaunchOptions()).vm)
>>> s = mon.open_session()
>>> mon.handle(s, Parsed({"execute": "query-status", "id": 1}))[0][1]["error"]["desc"]
"Expecting capabilities negotiation with 'qmp_capabilities'"
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..machine.errors import CommandNotFound, GenericError, QMPError
from ..machine.events import Event
from ..machine.vm import VirtualMachine
from ..profiles import Profile, get_profile
from .context import MonitorIO
from .dispatch import Registry, check_request, error_reply, marshal_arguments, not_found, success_reply
from .framing import ParseError, Parsed

log = logging.getLogger("cpuhot.qmp.protocol")

NEGOTIATION_DESC = "Expecting capabilities negotiation with 'qmp_capabilities'"


@dataclass(eq=False)
class Session:
    """One QMP connection's state."""

    number: int
    negotiated: bool = False
    oob: bool = False
    closed: bool = False
    peer: str = ""


@dataclass
class CommandContext:
    monitor: "Monitor"
    session: Session

    @property
    def vm(self) -> VirtualMachine:
        return self.monitor.vm


class Monitor:
    def __init__(self, vm: VirtualMachine, profile: Profile | str = "cpuhot", *, registry: Registry | None = None, validate_returns: bool = False,
                 package: str | None = None):
        from .commands import COMMANDS
        self.vm = vm
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.registry = registry or COMMANDS
        self.validate_returns = validate_returns
        self.package = package if package is not None else f"cpuhot {__version__}"
        self.sessions: list[Session] = []
        self._numbers = itertools.count()
        #: set by ``quit``: the I/O layer shuts down after sending the reply
        self.quit_requested = False
        #: the I/O layer (a QMPServer) for commands that need sockets (migration); None when sans-IO
        self.io: MonitorIO | None = None
        #: called after state changes when the VM is persisted (``--state FILE``)
        self.persist: Callable[[], None] | None = None

    # -- sessions ------------------------------------------------------------
    def greeting(self) -> dict[str, Any]:
        major, minor, micro = self.profile.version
        return {"QMP": {"version": {"qemu": {"micro": micro, "minor": minor, "major": major},
                                    "package": self.package},
                        "capabilities": ["oob"] if self.profile.oob else []}}

    def version_info(self) -> dict[str, Any]:
        version: dict[str, Any] = self.greeting()["QMP"]["version"]
        return version

    def open_session(self, peer: str = "") -> Session:
        s = Session(next(self._numbers), peer=peer)
        self.sessions.append(s)
        return s

    def close_session(self, session: Session) -> None:
        session.closed = True
        if session in self.sessions:
            self.sessions.remove(session)

    def served_commands(self) -> list[str]:
        return [name for name in self.registry.commands if self.profile.serves(name)]

    # -- input ---------------------------------------------------------------
    def handle(self, session: Session, item: Parsed | ParseError) -> list[tuple[Session, dict[str, Any]]]:
        """Handle one parsed input item; return the messages to send, in order."""
        if isinstance(item, ParseError):
            return [(session, {"error": {"class": "GenericError", "desc": item.desc}})]
        msg: Any = item.value              # any JSON value
        has_id = isinstance(msg, dict) and "id" in msg
        msg_id = msg.get("id") if has_id else None
        try:
            ret = self._dispatch(session, msg)
            reply = success_reply(ret, msg_id, has_id)
        except QMPError as err:
            if not session.negotiated and isinstance(err, CommandNotFound):
                err = CommandNotFound(NEGOTIATION_DESC)
            reply = error_reply(err, msg_id, has_id)
            reply["error"]["desc"] = self.vm.release_info.reword(reply["error"]["desc"])
        except Exception as exc:     # a cpuhot bug must not take the connection or the VM down
            log.exception("internal error while handling %r", msg)
            reply = error_reply(GenericError(f"cpuhot internal error: {type(exc).__name__}: {exc}"),
                                msg_id, has_id)
        late = self._fan_out(self.vm.drain_after_reply())
        out = self.take_events()
        command = msg.get("execute") if isinstance(msg, dict) else None
        if isinstance(command, str) and command in self.vm.release_info.events_after_reply:
            return [(session, reply)] + out + late
        out.append((session, reply))
        return out + late

    def take_events(self) -> list[tuple[Session, dict[str, Any]]]:
        """Fan the VM's pending events out to every negotiated session."""
        return self._fan_out(self.vm.drain_events() + self.vm.drain_after_reply())

    def _fan_out(self, events: list[Event]) -> list[tuple[Session, dict[str, Any]]]:
        if not events:
            return []
        targets = [s for s in self.sessions if s.negotiated and not s.closed]
        return [(s, ev.to_qmp()) for ev in events for s in targets]

    def _dispatch(self, session: Session, msg: Any) -> Any:
        name, is_oob, arguments = check_request(msg, allow_oob=session.oob)
        if not session.negotiated and name != "qmp_capabilities":
            raise not_found(name)
        cmd = self.registry.commands.get(name)
        if cmd is None or not self.profile.serves(name):
            raise not_found(name)
        if is_oob and not cmd.allow_oob:
            raise GenericError(f"The command {name} does not support OOB")
        kwargs = marshal_arguments(cmd, arguments)
        ret = cmd.handler(CommandContext(self, session), **kwargs)
        if self.validate_returns and cmd.returns is not None:
            from . import qapi          # pydantic is imported only when replies are validated
            qapi.validate(cmd.returns, ret)
        return ret
