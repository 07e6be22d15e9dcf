"""What a command handler may use of its :class:`~cpuhot.qmp.protocol.CommandContext`, as protocols.

The handler modules cannot import :mod:`.protocol` (it imports them, through :mod:`.commands`),
nor :mod:`.server`, so they are typed against these; ``CommandContext``, ``Monitor``,
``Session`` and ``QMPServer`` satisfy them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..machine.vm import VirtualMachine
from ..profiles import Profile
from .dispatch import Registry
from .fdpass import FdTable
from .migration_io import MigrationIO


class SessionView(Protocol):
    """One QMP connection's state (:class:`~cpuhot.qmp.protocol.Session`)."""

    negotiated: bool
    oob: bool


class PassedFds(Protocol):
    """A connection that may have received file descriptors (``SCM_RIGHTS``)."""

    def take_passed_fds(self) -> list[int]: ...


class MonitorIO(Protocol):
    """The I/O layer of a monitor (:class:`~cpuhot.qmp.server.QMPServer`), for the commands that
    need sockets or passed fds (migration, ``getfd``)."""

    #: the monitor's named fds, made on first use (``commands_migration.fd_table``)
    fd_table: FdTable

    @property
    def migration(self) -> MigrationIO: ...

    #: keyed by :class:`~cpuhot.qmp.protocol.Session` (which this module cannot import)
    @property
    def connections(self) -> Mapping[Any, PassedFds]: ...


class MonitorView(Protocol):
    """The parts of :class:`~cpuhot.qmp.protocol.Monitor` handlers use."""

    quit_requested: bool
    io: MonitorIO | None

    @property
    def profile(self) -> Profile: ...

    @property
    def registry(self) -> Registry: ...

    def served_commands(self) -> list[str]: ...

    def version_info(self) -> dict[str, Any]: ...


class Context(Protocol):
    """A command's context: the VM, the monitor it came through and the caller's session."""

    @property
    def vm(self) -> VirtualMachine: ...

    @property
    def monitor(self) -> MonitorView: ...

    @property
    def session(self) -> SessionView: ...
