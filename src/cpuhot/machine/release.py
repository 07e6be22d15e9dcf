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


RELEASES: dict[str, Release] = {
    "5.2": Release("5.2", (5, 2, 0)),       # Debian 11; made exact in the multi-version work
    "7.2": Release("7.2", (7, 2, 22)),      # Debian 12
    "10.0": Release("10.0", (10, 0, 13)),   # Debian 13; made exact in the multi-version work
}

DEFAULT_RELEASE = "7.2"


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
