"""QEMU's informational command lines: ``-version``, ``-h``, ``-machine help``, ``-cpu help``, ...

What they print is QEMU's own output, recorded by ``tools/record_cli_texts.py`` into the
release's data directory (:func:`cpuhot.machine.release.data_text`).  The order is QEMU 7.2's
(``qemu_init``): every option is checked first (an invalid one is reported, nothing printed);
then, in argv order, ``-version``, ``-h``/``-help``, ``-machine help`` and ``-accel help`` print
as soon as the option loop reaches them; after the loop ``-cpu help``, then ``-device help``.
``help`` and ``?`` are QEMU's help words.
"""

from __future__ import annotations

from .argv_options import scan_options

HELP_WORDS = ("help", "?")


def _scan(argv: list[str]) -> list[tuple[str, str, str | None]] | None:
    """(raw, name, value) of every option, or None where the command line is not well formed
    (the parser reports it)."""
    options = scan_options(argv)
    return None if options is None else [(raw, name, value) for raw, name, value, _ in options]


def _is_help(value: str | None, *, implied: str = "") -> bool:
    if value is None:
        return False
    first = value.split(",")[0]
    if implied and first.startswith(implied + "="):
        first = first[len(implied) + 1:]
    return first in HELP_WORDS


def informational(argv: list[str], *, prog: str, default_arch: str | None = None) -> str | None:
    """What ``argv`` prints on stdout if it is an informational command line (exit status 0)."""
    options = _scan(argv)
    if options is None:
        return None
    arch = default_arch
    machine = None
    compat = "cpuhot"
    for _, name, value in options:
        if name == "arch" and value:
            arch = value
        elif name == "compat" and value:
            compat = value
        elif name in ("machine", "M") and value and not _is_help(value, implied="type"):
            first = value.split(",")[0]
            machine = first[5:] if first.startswith("type=") else first
    from .profiles import PROFILES
    profile = PROFILES.get(compat)
    if profile is None:
        return None
    if arch is None and machine:
        from .machine.machines import arch_of_machine
        arch = arch_of_machine(machine)
    arch = arch or "x86_64"
    release = profile.release

    def text(filename: str) -> str | None:
        """The recorded listing, or None where none was recorded for the target (s390x has
        its -machine and -cpu listings only): the usual path then takes the command line."""
        from .machine.release import data_text
        try:
            return data_text(release, filename)
        except FileNotFoundError:
            return None
    cpu_help = device_help = False
    for raw, name, value in options:
        if name == "version":
            return version_text(release)
        if name in ("h", "help"):
            usage = text(f"qemu-help-{arch}.txt")
            return None if usage is None else usage.replace(f"usage: qemu-system-{arch} ", f"usage: {prog} ", 1)
        if name in ("machine", "M") and _is_help(value, implied="type"):
            return text(f"machine-help-{arch}.txt")
        if name == "accel" and _is_help(value, implied="accel"):
            return text(f"accel-help-{arch}.txt")
        if name == "cpu" and value in HELP_WORDS:
            cpu_help = True
        if name == "device" and _is_help(value, implied="driver"):
            device_help = True
    if cpu_help:
        return text(f"cpu-help-{arch}.txt")
    if device_help:
        return text(f"device-help-{arch}.txt")
    return None


def version_text(release: str) -> str:
    """``-version``: QEMU's first line (its version and package), then cpuhot's own."""
    from . import __version__
    from .machine.release import data_text
    first = data_text(release, "version.txt").splitlines()[0]
    return f"{first}\ncpuhot {__version__}: a simulation of QEMU {release}'s CPU hotplug (QMP), not QEMU\n"
