"""The registry every QMP command is declared on (``@command``), by :mod:`.commands` and
:mod:`.commands_tools` alike: neither imports the other for it."""

from __future__ import annotations

from .dispatch import Registry

COMMANDS = Registry()
command = COMMANDS.command
