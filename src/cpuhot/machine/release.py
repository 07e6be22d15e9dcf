"""Which QEMU release the model is: its version and the data tables recorded from it.

Everything that differs between QEMU releases lives here, as data: a :class:`Release` per
version, with its tables (``query-machines``, ``query-cpu-definitions``, ...) under
``data/<release>/`` and its behavioural rules as fields.  The model asks its release; it never
compares version numbers itself.  A table a release does not have is QEMU 7.2's (the files
directly under ``data/``), so a new release starts as 7.2 and is made exact by recording it and
adding what the replay shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Release:
    """One QEMU release, as cpuhot models it."""

    #: "7.2": the key of :data:`RELEASES`, and the data subdirectory (``data/7.2`` falls back to ``data/``)
    name: str
    #: what the greeting and ``query-version`` say
    version: tuple[int, int, int]
    # -- behaviour (QEMU 7.2's by default; each is consulted in one place of the model) ---------
    #: ``-smp`` grammar, derivation and messages (:data:`cpuhot.machine.smp.SMP_PARSERS`):
    #: ``machine_parse_smp_config`` (6.1+) or ``smp_parse`` (<= 6.0: QemuOpts, sockets preferred)
    smp_parser: str = "machine_parse_smp_config"
    #: ``query-cpus-fast`` entries still carry the deprecated ``arch`` member (removed in 6.0)
    cpus_fast_arch: bool = False
    #: an unknown ``-machine`` type is reported with the option as location (``-machine nosuch: ...``)
    machine_error_location: bool = False
    #: commands whose events QEMU sends after the command's reply (the main loop acts on a request)
    events_after_reply: frozenset[str] = frozenset()
    #: ``device_del`` of ``""`` is DeviceNotFound (5.2 looks the empty name up in /machine/peripheral)
    empty_device_id_not_found: bool = False
    #: every ``-device`` option is parsed (duplicate ids refused) before any device is created
    device_opts_parsed_first: bool = False
    #: where x86 refuses APIC IDs of 255 and more under TCG: ``x86_cpus_init`` (7.2: "requires kernel
    #: irqchip and X2APIC API support") or ``pc_machine_done`` (5.2: boot CPUs fail to realize, then
    #: "requires Extended Interrupt Mode enabled")
    apic_id_limit_check: str = "x86_cpus_init"
    #: commands QEMU 7.2 no longer has that this release serves (see :data:`RELEASE_GATED_COMMANDS`)
    extra_commands: frozenset[str] = frozenset()
    #: how QMP output writes a double: ``%.17g`` (6.0+) or ``%f`` with trailing zeros cut (<= 5.2)
    json_double: str = "%.17g"
    #: sPAPR CPU core types that do not exist in this release (``power10_v2.0``: 6.0)
    spapr_cores_missing: frozenset[str] = frozenset()

    def reword(self, text: str) -> str:
        """An error text of QEMU 7.2 as this release words it (``data/<release>/error-texts.json``:
        ``[regex, replacement]`` pairs recorded from its QMP replies); 7.2's own texts unchanged."""
        for pattern, replacement in _error_texts(self.name):
            new, n = pattern.subn(replacement, text)
            if n:
                return new
        return text


RELEASES: dict[str, Release] = {
    # Debian 11; every field recorded from its real QEMU (transcripts/qemu-5.2)
    "5.2": Release("5.2", (5, 2, 0), smp_parser="smp_parse", cpus_fast_arch=True, machine_error_location=True,
                   events_after_reply=frozenset({"quit", "system_reset", "system_powerdown"}),
                   empty_device_id_not_found=True, device_opts_parsed_first=True,
                   apic_id_limit_check="pc_machine_done", extra_commands=frozenset({"query-events"}),
                   json_double="%f",
                   spapr_cores_missing=frozenset({"power10_v2.0"})),
    "7.2": Release("7.2", (7, 2, 22)),      # Debian 12
    "10.0": Release("10.0", (10, 0, 13)),   # Debian 13; made exact in the multi-version work
}

DEFAULT_RELEASE = "7.2"

#: commands that exist only in the releases whose ``extra_commands`` name them (``query-events``:
#: removed in QEMU 6.0, its table is ``data/<release>/events.json``)
RELEASE_GATED_COMMANDS = frozenset({"query-events"})


def get_release(name: str | Release | None) -> Release:
    if isinstance(name, Release):
        return name
    try:
        return RELEASES[name or DEFAULT_RELEASE]
    except KeyError:
        raise ValueError(f"unknown QEMU release '{name}' (known: {', '.join(RELEASES)})") from None


@cache
def data_text(release: str, filename: str) -> str:
    """A data table of ``release``: ``data/<release>/<filename>``, else QEMU 7.2's ``data/<filename>``."""
    base = resources.files("cpuhot.machine").joinpath("data")
    own = base.joinpath(release, filename)
    if own.is_file():
        return own.read_text()
    return base.joinpath(filename).read_text()


@cache
def _error_texts(release: str) -> tuple:
    import json
    import re
    base = resources.files("cpuhot.machine").joinpath("data", release, "error-texts.json")
    if release == DEFAULT_RELEASE or not base.is_file():
        return ()
    return tuple((re.compile(p), r) for p, r in json.loads(base.read_text()))
