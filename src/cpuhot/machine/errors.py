"""Typed errors of the machine model.

Every error a QMP command can answer with is a :class:`QMPError` subclass whose
``error_class`` is the QMP error class QEMU uses (``GenericError``,
``CommandNotFound``, ``DeviceNotFound``, ...).  The server turns one into
``{"error": {"class": error_class, "desc": desc}}`` without looking at its
text, so the model alone decides what a client sees.

Start-up refusals (a bad command line) are :class:`ConfigError`: QEMU prints
them on stderr and exits 1 instead of answering over QMP.
"""

from __future__ import annotations


class CpuhotError(Exception):
    """Root of every error cpuhot raises on purpose."""


class QMPError(CpuhotError):
    """An error that becomes a QMP error reply.

    >>> e = DeviceNotFound("Device 'x' not found")
    >>> e.error_class, e.desc
    ('DeviceNotFound', "Device 'x' not found")
    """

    error_class = "GenericError"

    def __init__(self, desc: str):
        super().__init__(desc)
        self.desc = desc

    def to_qmp(self) -> dict[str, str]:
        return {"class": self.error_class, "desc": self.desc}


class GenericError(QMPError):
    error_class = "GenericError"


class CommandNotFound(QMPError):
    error_class = "CommandNotFound"


class DeviceNotFound(QMPError):
    error_class = "DeviceNotFound"


class ConfigError(CpuhotError):
    """A refused start-up configuration.

    ``location`` is the option text QEMU puts in front of some messages
    (``-numa cpu,node-id=3,socket-id=0: ...``); ``hint`` lines follow the
    message on their own lines, unprefixed, as QEMU's error_append_hint does.
    """

    def __init__(self, message: str, *, location: str | None = None, hints: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hints = hints

    def render(self, prog: str) -> str:
        loc = f"{self.location}: " if self.location else ""
        lines = [f"{prog}: {loc}{self.message}", *self.hints]
        return "\n".join(lines) + "\n"
