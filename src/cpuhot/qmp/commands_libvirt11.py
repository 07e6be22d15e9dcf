"""Commands libvirt 11.3 sends on domain start that libvirt 9.0 did not (with cpuhot's answers).

``query-iothreads``: libvirt 11 asks unconditionally after start; a VM without ``-object
iothread`` answers ``[]`` (QEMU 7.2: ``{"return": []}``).
"""

from __future__ import annotations

from .context import Context
from .registry import COMMANDS

command = COMMANDS.command


@command("query-iothreads")
def query_iothreads(ctx: Context) -> list[object]:
    """cpuhot models no iothreads."""
    return []
