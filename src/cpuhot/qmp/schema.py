"""``query-qmp-schema``: QEMU-style introspection generated from cpuhot's own definitions.

Every command the monitor serves (with its argument object and return type),
every event cpuhot emits, and the types they use, in QEMU's SchemaInfo shape:
``{"name", "meta-type": "command"|"event"|"object"|"array"|"enum"|"builtin", ...}``.
Types come from the pydantic models in :mod:`cpuhot.qmp.qapi`, so the schema
cannot drift from what the commands return.  Unlike QEMU, type names are not
masked: they are the models' names (unique, as clients require).
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from . import qapi
from .context import MonitorView
from .dispatch import Command

BUILTINS = {str: ("str", "string"), int: ("int", "int"), bool: ("bool", "boolean"),
            float: ("number", "number"), type(None): ("null", "null")}
ARG_BUILTINS = {"str": "str", "int": "int", "bool": "bool", "number": "number", "any": "any"}
EMPTY = "q_empty"


class SchemaBuilder:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, entry: dict[str, Any]) -> str:
        name: str = entry["name"]
        self.entries.setdefault(name, entry)
        return name

    def builtin(self, name: str, json_type: str) -> str:
        return self.add({"name": name, "meta-type": "builtin", "json-type": json_type})

    def type_of(self, tp: Any) -> str:
        """The schema name of a Python/pydantic type, adding its entries on the way."""
        origin = get_origin(tp)
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            return self.type_of(args[0]) if len(args) == 1 else self.builtin("any", "value")
        if origin is list:
            (elem,) = get_args(tp) or (Any,)
            inner = self.type_of(elem)
            return self.add({"name": f"[{inner}]", "meta-type": "array", "element-type": inner})
        if origin is Literal:
            values = [str(v) for v in get_args(tp)]
            name = "enum-" + "-".join(values)
            return self.add({"name": name, "meta-type": "enum", "values": values,
                             "members": [{"name": v} for v in values]})
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return self.model(tp)
        if tp in BUILTINS:
            return self.builtin(*BUILTINS[tp])
        return self.builtin("any", "value")

    def model(self, model: type[BaseModel]) -> str:
        name = model.__name__
        if name in self.entries:
            return name
        members: list[dict[str, Any]] = []
        self.entries[name] = {"name": name, "meta-type": "object", "members": members}
        for field_name, field in model.model_fields.items():
            member: dict[str, Any] = {"name": field.alias or field_name, "type": self.type_of(field.annotation)}
            if not field.is_required():
                member["default"] = None
            members.append(member)
        return name

    def empty(self) -> str:
        return self.add({"name": EMPTY, "meta-type": "object", "members": []})

    def command(self, cmd: Command) -> None:
        if cmd.args is None:          # device_add: driver, bus, id and any property
            arg = self.add({"name": f"q_obj_{cmd.name}-arg", "meta-type": "object", "members": [
                {"name": "driver", "type": self.builtin("str", "string")},
                {"name": "bus", "type": "str", "default": None},
                {"name": "id", "type": "str", "default": None}]})
        elif cmd.args:
            members: list[dict[str, Any]] = []
            for a in cmd.args:
                if a.type == "enum-list":
                    enum = self.add({"name": f"{cmd.name}-{a.name}-enum", "meta-type": "enum",
                                     "values": list(a.enum), "members": [{"name": v} for v in a.enum]})
                    t = self.add({"name": f"[{enum}]", "meta-type": "array", "element-type": enum})
                else:
                    t = self.builtin(ARG_BUILTINS[a.type], {"str": "string", "int": "int", "bool": "boolean",
                                                            "number": "number", "any": "value"}[a.type])
                m: dict[str, Any] = {"name": a.name, "type": t}
                if a.optional:
                    m["default"] = None
                members.append(m)
            arg = self.add({"name": f"q_obj_{cmd.name}-arg", "meta-type": "object", "members": members})
        else:
            arg = self.empty()
        ret = self.type_of(qapi.resolve(cmd.returns)) if cmd.returns is not None else self.empty()
        entry: dict[str, Any] = {"name": cmd.name, "meta-type": "command", "arg-type": arg, "ret-type": ret}
        if cmd.allow_oob:
            entry["allow-oob"] = True
        self.add(entry)

    def event(self, name: str, data_model: type[BaseModel] | None) -> None:
        arg = self.model(data_model) if data_model is not None else self.empty()
        self.add({"name": name, "meta-type": "event", "arg-type": arg})


#: built schemas, by the identity of the served command specs (kept alive with their entry, so an
#: id is never reused); one per profile a process serves.  The reply is encoded, never changed.
_BUILT: dict[tuple[int, ...], tuple[tuple[object, ...], list[dict[str, Any]]]] = {}


def build_schema(monitor: MonitorView) -> list[dict[str, Any]]:
    """``query-qmp-schema``'s reply: built once per set of served commands (it was rebuilt on
    every call, about 10 ms of a turn on the ``cpuhot`` profile)."""
    specs = tuple(monitor.registry.commands[name] for name in monitor.served_commands())
    key = tuple(map(id, specs))
    hit = _BUILT.get(key)
    if hit is not None:
        return hit[1]
    b = SchemaBuilder()
    for spec in specs:
        b.command(spec)
    for name, model in qapi.EVENTS.items():
        b.event(name, model)
    built = list(b.entries.values())
    _BUILT[key] = (specs, built)
    return built
