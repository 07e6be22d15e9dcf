"""QEMU's ``key=value,...`` option strings (QemuOpts), as a pure function.

``,,`` is an escaped comma; the first element may omit its key when the
option has an implied one (``-smp 4`` is ``cpus=4``, ``-device qemu64-x86_64-cpu``
is ``driver=...``, ``-numa node`` is ``type=node``); a bare ``flag`` means
``flag=on``.
"""

from __future__ import annotations

import re


class OptionError(ValueError):
    """The option string itself is malformed."""


def split_unescaped(text: str) -> list[str]:
    """Split on single commas, turning ``,,`` into a literal comma."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == ",":
            if i + 1 < n and text[i + 1] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def parse_option_string(text: str, implied: str | None = None) -> list[tuple[str, str]]:
    """Return the ``(key, value)`` pairs of an option string, in order.

    >>> parse_option_string("4,maxcpus=16", implied="cpus")
    [('cpus', '4'), ('maxcpus', '16')]
    """
    if text == "":
        return []
    pairs: list[tuple[str, str]] = []
    for i, part in enumerate(split_unescaped(text)):
        if "=" in part:
            key, value = part.split("=", 1)
        elif i == 0 and implied is not None:
            key, value = implied, part
        elif part == "":
            continue
        else:
            key, value = part, "on"
        pairs.append((key, value))
    return pairs


_INT_RE = re.compile(r"\s*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def parse_int(text: str, *, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int:
    """An integer as ``qemu_strtoi64(text, NULL, 0)`` reads it (C prefixes, whole string).

    >>> parse_int("0x10"), parse_int("010"), parse_int("-1")
    (16, 8, -1)
    """
    if not _INT_RE.match(text):
        raise ValueError(text)
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-")
    if body[:2].lower() == "0x":
        value = int(body[2:], 16)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body, 8)
    else:
        value = int(body)
    value *= sign
    if not lo <= value <= hi:
        raise ValueError(text)
    return value


_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([bBkKmMgGtTpPeE]?)\Z")
_SIZE_UNITS = {"": None, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def parse_size(text: str, default_unit: int = 1) -> int:
    """A size as QEMU's ``qemu_strtosz`` reads it (``512M``, ``1G``, ``1.5G``).

    >>> parse_size("1G"), parse_size("128", default_unit=1 << 20)
    (1073741824, 134217728)
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(text)
    number, unit = m.group(1), m.group(2).lower()
    mult = _SIZE_UNITS[unit] or default_unit
    if "." in number:
        value = int(float(number) * mult)
    else:
        value = int(number) * mult
    if value >= 1 << 64:
        raise ValueError(text)
    return value


def object_option_string(text: str) -> str:
    """``-object`` in JSON form (QEMU 6.0+; libvirt 11 writes ``-object {"qom-type":
    "memory-backend-ram","id":"pc.ram","size":67108864}``) as the equivalent key=value string;
    anything else, or JSON with nested values, is returned unchanged."""
    if not text.lstrip().startswith("{"):
        return text
    import json
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    if not isinstance(obj, dict) or "qom-type" not in obj:
        return text
    parts = []
    for key, value in obj.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, (dict, list)) or value is None:
            return text
        parts.append(f"{key}={str(value).replace(',', ',,')}")
    return ",".join(parts)
