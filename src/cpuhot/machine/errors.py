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

    #: the exit status: 1, or minus a signal's number for a start-up QEMU aborts (-6: SIGABRT)
    exit_code = 1

    def __init__(self, message: str, *, location: str | None = None, hints: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hints = hints

    def render(self, prog: str) -> str:
        loc = f"{self.location}: " if self.location else ""
        lines = [f"{prog}: {loc}{self.message}", *self.hints]
        return "\n".join(lines) + "\n"


class AbortError(ConfigError):
    """A start-up QEMU aborts on (an error passed to ``&error_abort``): it prints
    ``Unexpected error in FUNC() at FILE:LINE:`` and the error, then dies of SIGABRT.

    >>> AbortError("APIC ID 255 requires x2APIC feature in CPU", where="f() at a.c:1").render("qemu")
    'Unexpected error in f() at a.c:1:\\nqemu: APIC ID 255 requires x2APIC feature in CPU\\n'
    """

    exit_code = -6

    def __init__(self, message: str, *, where: str, hints: tuple[str, ...] = (), printed: tuple[str, ...] = ()):
        super().__init__(message, hints=hints)
        self.where = where
        #: what QEMU printed (``prog: line``) before it got there, e.g. warnings of CPUs realized
        self.printed = printed

    def render(self, prog: str) -> str:
        # a warning's continuation lines ("Please ...", 7.2's AMD HT warning) are unprefixed
        before = "".join(f"{line}\n" if line.startswith("Please") else f"{prog}: {line}\n" for line in self.printed)
        return f"{before}Unexpected error in {self.where}:\n" + super().render(prog)
