"""QMP commands of cpuhot's tools (``x-cpuhot-topology`` ...), registered on the same registry."""

from __future__ import annotations

from .commands import command  # noqa: F401
