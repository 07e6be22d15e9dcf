"""qdev's generic side of ``device_add``: QemuOpts conversion, id syntax, property values.

QEMU 7.2's ``device_add`` turns the QMP arguments into QemuOpts strings
(``qemu_opts_from_qdict``): strings stay, numbers are printed (``2.0`` becomes
``2``, ``1e400`` becomes ``inf``), booleans become ``on``/``off``, lists,
objects and ``null`` are dropped.  Properties are then parsed from those
strings the way the keyval visitor parses them.  Doing the same here is what
makes ``"core-id": "2"`` and ``2.0`` work and ``0.5`` fail, exactly as in QEMU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .errors import GenericError
from .options import parse_int

_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")


def id_wellformed(ident: str) -> bool:
    """QEMU's ``id_wellformed``: a letter, then letters, digits, ``-``, ``.``, ``_``."""
    return bool(_ID_RE.match(ident))


def format_double(value: float) -> str:
    """``%.17g`` as C prints it (what ``qnum_to_string`` does for doubles)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan" if math.copysign(1, value) > 0 else "-nan"
    return "%.17g" % value


def opts_from_qmp(arguments: dict[str, Any], check_id: bool = True) -> tuple[str | None, dict[str, str]]:
    """Split QMP ``device_add`` arguments into (id, string options) like ``qemu_opts_from_qdict``.

    Raises the id-syntax error QEMU raises before anything else.

    >>> opts_from_qmp({"driver": "x", "id": "cpu1", "core-id": 2.0, "bad": [1], "on": True})
    ('cpu1', {'driver': 'x', 'core-id': '2', 'on': 'on'})
    """
    ident = arguments.get("id")
    if not isinstance(ident, str):
        ident = None
    elif check_id and not id_wellformed(ident):
        raise GenericError("Parameter 'id' expects an identifier")
    opts: dict[str, str] = {}
    for key, value in arguments.items():
        if key == "id":
            continue
        if isinstance(value, bool):
            opts[key] = "on" if value else "off"
        elif isinstance(value, str):
            opts[key] = value
        elif isinstance(value, int):
            opts[key] = str(value)
        elif isinstance(value, float):
            opts[key] = format_double(value)
        # lists, objects and null are dropped, as QEMU drops them
    return ident, opts


INT_RANGES = {
    "int32_t": (-(1 << 31), (1 << 31) - 1),
    "uint32_t": (0, (1 << 32) - 1),
    "int64_t": (-(1 << 63), (1 << 63) - 1),
}


QDICT_BUCKET_MAX = 512


def qdict_bucket(key: str) -> int:
    """The bucket QEMU's QDict puts ``key`` in (``tdb_hash(key) % 512``, 32-bit arithmetic)."""
    raw = key.encode()
    value = (0x238F13AF * len(raw)) & 0xFFFFFFFF
    for i, c in enumerate(raw):
        value = (value + (c << (i * 5 % 24))) & 0xFFFFFFFF
    return ((1103515243 * value + 12345) & 0xFFFFFFFF) % QDICT_BUCKET_MAX


def qdict_order(keys: Iterable[str]) -> list[str]:
    """``keys`` in the order QEMU iterates a QDict holding them: by bucket, and within a bucket
    the last inserted first.  This is the order in which qdev sets device_add's properties, so it
    decides which of several bad properties QEMU reports (``core-id`` before ``socket-id``).

    >>> qdict_order(["socket-id", "core-id", "thread-id"])
    ['core-id', 'thread-id', 'socket-id']
    """
    # one pass over the keys (linear: 80,000 properties must not freeze the server)
    order = sorted((qdict_bucket(k), -i, k) for i, k in enumerate(keys))
    return [k for _, _, k in order]


def parse_int_property(name: str, text: str, ctype: str) -> int:
    """Parse one integer property value as the keyval visitor does.

    >>> parse_int_property("core-id", "0x2", "int32_t")
    2
    """
    unsigned = ctype.startswith("u")
    try:
        if unsigned:
            value = parse_int(text, lo=-(1 << 64), hi=(1 << 64) - 1)
            value &= (1 << 64) - 1          # strtoull accepts a sign and wraps
        else:
            value = parse_int(text)
    except ValueError:
        raise GenericError(f"Parameter '{name}' expects integer") from None
    lo, hi = INT_RANGES[ctype]
    if not lo <= value <= hi:
        raise GenericError(f"Parameter '{name}' expects {ctype}")
    return value


def parse_bool_property(name: str, text: str) -> bool:
    if text in ("on", "yes", "true", "y"):
        return True
    if text in ("off", "no", "false", "n"):
        return False
    raise GenericError(f"Parameter '{name}' expects 'on' or 'off'")
