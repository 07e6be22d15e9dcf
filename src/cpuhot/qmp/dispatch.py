"""Command registry and QMP dispatch: top-level checks, argument marshalling, error replies.

This is QEMU's ``qmp_dispatch`` and its generated marshallers, reduced to what
cpuhot serves.  Arguments are checked the way QEMU's strict QObject input
visitor checks them (members in schema order, then unexpected ones), so the
error texts are QEMU's: ``Parameter 'id' is missing``, ``Invalid parameter
type for 'id', expected: string``, ``Parameter 'bogus' is unexpected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..machine.errors import CommandNotFound, GenericError, QMPError

_F = TypeVar("_F", bound=Callable[..., Any])

_JSON_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
                    list: "array"}


@dataclass(frozen=True)
class Arg:
    """One argument of a command, as the QAPI schema declares it."""

    name: str
    type: str                    # "str" | "int" | "bool" | "number" | "enum-list"
    optional: bool = False
    enum: tuple[str, ...] = ()


@dataclass
class Command:
    name: str
    handler: Callable[..., Any]
    args: tuple[Arg, ...] | None = ()   # None: the handler takes the raw dict (device_add)
    returns: Any = None
    allow_oob: bool = False
    doc: str = ""


class Registry:
    """The commands a server knows, by name, in registration order."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def command(self, name: str, *, args: tuple[Arg, ...] | None = (), returns: Any = None,
                allow_oob: bool = False) -> Callable[[_F], _F]:
        """Decorator registering ``fn(ctx, **arguments)`` as QMP command ``name``."""
        def deco(fn: _F) -> _F:
            self.commands[name] = Command(name, fn, args, returns, allow_oob, (fn.__doc__ or "").strip())
            return fn
        return deco


def marshal_arguments(cmd: Command, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against ``cmd.args``; return them keyed by Python names."""
    if cmd.args is None:
        return {"arguments": arguments}
    out: dict[str, Any] = {}
    for arg in cmd.args:
        if arg.name not in arguments:
            if not arg.optional:
                raise GenericError(f"Parameter '{arg.name}' is missing")
            continue
        value = arguments[arg.name]
        out[arg.name.replace("-", "_")] = _check_type(arg, value)
    for key in arguments:
        if all(key != a.name for a in cmd.args):
            raise GenericError(f"Parameter '{key}' is unexpected")
    return out


def _check_type(arg: Arg, value: Any) -> Any:
    t = arg.type
    if t == "str":
        if not isinstance(value, str):
            raise GenericError(f"Invalid parameter type for '{arg.name}', expected: string")
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < (1 << 63):
            raise GenericError(f"Invalid parameter type for '{arg.name}', expected: integer")
    elif t == "bool":
        if not isinstance(value, bool):
            raise GenericError(f"Invalid parameter type for '{arg.name}', expected: boolean")
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenericError(f"Invalid parameter type for '{arg.name}', expected: number")
    elif t == "any":
        pass
    elif t == "enum-list":
        if not isinstance(value, list):
            raise GenericError(f"Invalid parameter type for '{arg.name}', expected: array")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise GenericError(f"Invalid parameter type for '{arg.name}[{i}]', expected: string")
            if item not in arg.enum:
                raise GenericError(f"Parameter 'null' does not accept value '{item}'")
    return value


def check_request(msg: Any, allow_oob: bool) -> tuple[str, bool, dict[str, Any]]:
    """``qmp_dispatch_check_obj``: validate the envelope; return (command, is_oob, arguments)."""
    if not isinstance(msg, dict):
        raise GenericError("QMP input must be a JSON object")
    has_exec = False
    for key, value in msg.items():
        if key == "execute" or (key == "exec-oob" and allow_oob):
            if not isinstance(value, str):
                raise GenericError(f"QMP input member '{key}' must be a string")
            if has_exec:
                raise GenericError("QMP input member 'execute' clashes with 'exec-oob'")
            has_exec = True
        elif key == "arguments":
            if not isinstance(value, dict):
                raise GenericError("QMP input member 'arguments' must be an object")
        elif key == "id":
            continue
        else:
            raise GenericError(f"QMP input member '{key}' is unexpected")
    if not has_exec:
        raise GenericError("QMP input lacks member 'execute'")
    if "execute" in msg:
        return msg["execute"], False, msg.get("arguments", {})
    return msg["exec-oob"], True, msg.get("arguments", {})


def error_reply(err: QMPError, msg_id: Any = None, has_id: bool = False) -> dict[str, Any]:
    reply: dict[str, Any] = {}
    if has_id:
        reply["id"] = msg_id
    reply["error"] = err.to_qmp()
    return reply


def success_reply(ret: Any, msg_id: Any = None, has_id: bool = False) -> dict[str, Any]:
    reply = {"return": {} if ret is None else ret}
    if has_id:
        reply["id"] = msg_id
    return reply


def not_found(name: str) -> CommandNotFound:
    return CommandNotFound(f"The command {name} has not been found")
