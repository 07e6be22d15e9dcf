"""QMP events as immutable values produced by the machine model.

The model appends :class:`Event` objects to its outbox while it handles a
request; the server drains the outbox and sends the events to every
negotiated client before the reply of the command that caused them, as QEMU does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any] | None = None
    timestamp: float = 0.0
    #: filled in by the VM: which clock tick produced it (for stable ordering in tests)
    seq: int = field(default=0, compare=False)

    def to_qmp(self) -> dict[str, Any]:
        """The wire form: ``{"timestamp": {...}, "event": NAME[, "data": {...}]}``."""
        seconds = int(self.timestamp)
        micro = int(round((self.timestamp - seconds) * 1_000_000))
        if micro >= 1_000_000:
            seconds, micro = seconds + 1, micro - 1_000_000
        msg: dict[str, Any] = {"timestamp": {"seconds": seconds, "microseconds": micro}, "event": self.name}
        if self.data is not None:
            msg["data"] = self.data
        return msg
