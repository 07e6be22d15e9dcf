"""``serve -v``: connections and commands on stderr, as the server sees them.

A :class:`ConnectionLog` is a server tracer (``QMPServer(tracer=...)``, the hook ``--trace``
uses): one line per client that connects or leaves and per command it sends::

    cpuhot: client 1 connected
    cpuhot: client 1: {"execute": "qmp_capabilities"}
    cpuhot: client 1 disconnected

With ``-v -v`` the replies and events sent to each client are logged too (``client 1 <- ...``).
Lines longer than :data:`MAX_LINE` characters are cut.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from .qmp.protocol import Session

MAX_LINE = 400


class ConnectionLog:
    def __init__(self, prog: str, *, replies: bool = False, stream: TextIO | None = None):
        self.prog = prog
        self.replies = replies
        self.stream = stream

    def _line(self, text: str) -> None:
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + "..."
        stream = self.stream or sys.stderr
        stream.write(f"{self.prog}: {text}\n")
        stream.flush()

    def __call__(self, direction: str, session: Session | None, payload: object) -> None:
        number = session.number if session is not None else "-"
        if direction == "open":
            peer = getattr(session, "peer", "")
            self._line(f"client {number} connected" + (f" from {peer}" if peer else ""))
        elif direction == "close":
            self._line(f"client {number} disconnected")
        elif direction == "in":
            value = getattr(payload, "value", None)
            if value is None:                 # a parse error: QEMU answers it, the log says it
                self._line(f"client {number}: unparsable input ({getattr(payload, 'desc', payload)})")
            else:
                self._line(f"client {number}: {json.dumps(value)}")
        elif direction == "out" and self.replies:
            self._line(f"client {number} <- {json.dumps(payload, default=str)}")


def chain_tracers(*tracers: Callable[[str, Session | None, object], None]
                  ) -> Callable[[str, Session | None, object], None]:
    """One tracer that calls each of ``tracers`` in turn (``--trace FILE`` and ``-v`` together)."""
    def call(direction: str, session: Session | None, payload: object) -> None:
        for t in tracers:
            t(direction, session, payload)
    return call
