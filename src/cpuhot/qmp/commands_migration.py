"""The migration commands libvirt sends around save, restore and live migration.

``getfd``/``closefd`` (fds over SCM_RIGHTS, :mod:`cpuhot.qmp.fdpass`),
``migrate-set-parameters``/``query-migrate-parameters``
(:mod:`cpuhot.machine.migration_params`), and the ``fd:`` URIs of ``migrate`` and
``migrate-incoming`` (:mod:`cpuhot.qmp.migration_fd`).
"""

from __future__ import annotations

from typing import Any

from ..machine.errors import GenericError
from ..machine.migration_params import MigrationParameters
from ..machine.vm import VirtualMachine
from .context import Context, MonitorIO
from .registry import COMMANDS
from .dispatch import Arg
from .fdpass import FdTable, close_all

command = COMMANDS.command


def parameters(vm: VirtualMachine) -> MigrationParameters:
    """The VM's migration parameters (kept with its migration state)."""
    params: MigrationParameters | None = getattr(vm.migration, "parameters", None)
    if params is None:
        params = vm.migration.parameters = MigrationParameters()
    return params


def fd_table(server: MonitorIO) -> FdTable:
    table: FdTable | None = getattr(server, "fd_table", None)
    if table is None:
        table = server.fd_table = FdTable()
    return table


def _server(ctx: Context) -> MonitorIO:
    if ctx.monitor.io is None:
        raise GenericError("No file descriptor supplied via SCM_RIGHTS")
    return ctx.monitor.io


@command("getfd", args=(Arg("fdname", "str"),))
def getfd(ctx: Context, fdname: str) -> None:
    """Keep the fd that came with this command under ``fdname``."""
    server = _server(ctx)
    conn = server.connections.get(ctx.session)
    fds = conn.take_passed_fds() if conn is not None else []
    fd = fds[0] if fds else None
    close_all(fds[1:])
    fd_table(server).getfd(fdname, fd)


@command("closefd", args=(Arg("fdname", "str"),))
def closefd(ctx: Context, fdname: str) -> None:
    if ctx.monitor.io is None:
        raise GenericError(f"File descriptor named '{fdname}' not found")
    fd_table(ctx.monitor.io).closefd(fdname)


@command("migrate-set-parameters", args=None)
def migrate_set_parameters(ctx: Context, arguments: dict[str, Any]) -> None:
    parameters(ctx.vm).set(arguments)


@command("query-migrate-parameters")
def query_migrate_parameters(ctx: Context) -> dict[str, bool | int | str]:
    return parameters(ctx.vm).query()


def migrate_fd(ctx: Context, uri: str) -> None:
    """``migrate`` with ``fd:NAME``: checks done by the caller; start sending into the fd."""
    from .migration_fd import start_outgoing
    server = ctx.monitor.io
    if server is None:
        raise GenericError(f"File descriptor named '{uri[3:]}' has not been found")
    fd = fd_table(server).take(uri[3:])
    mig = ctx.vm.migration
    mig.status, mig.error = "setup", None
    if mig.caps.get("events"):
        ctx.vm.emit("MIGRATION", {"status": "setup"})
    start_outgoing(server.migration, fd)


def migrate_incoming_fd(ctx: Context, uri: str) -> None:
    """``migrate-incoming`` with ``fd:N`` (after ``-incoming defer``)."""
    from .migration_fd import start_incoming
    server = ctx.monitor.io
    if server is None:
        raise GenericError(f"File descriptor named '{uri[3:]}' has not been found")
    fd = fd_table(server).take(uri[3:])
    ctx.vm.migration.incoming = uri
    start_incoming(server.migration, fd)
