"""What a command handler may use of its :class:`~cpuhot.qmp.protocol.CommandContext`, as protocols.

The handler modules cannot import :mod:`.protocol` (it imports them, through :mod:`.commands`),
so they are typed against these; ``CommandContext`` satisfies them.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..machine.vm import VirtualMachine
from ..profiles import Profile
from .dispatch import Registry


class MonitorView(Protocol):
    """The parts of :class:`~cpuhot.qmp.protocol.Monitor` handlers use."""

    @property
    def profile(self) -> Profile: ...

    @property
    def registry(self) -> Registry: ...

    def served_commands(self) -> list[str]: ...

    def version_info(self) -> dict[str, Any]: ...


class Context(Protocol):
    """A command's context: the VM, and the monitor it came through."""

    @property
    def vm(self) -> VirtualMachine: ...

    @property
    def monitor(self) -> MonitorView: ...
