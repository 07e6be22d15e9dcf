"""Migration parameters: ``migrate-set-parameters`` and ``query-migrate-parameters`` (sans-IO).

Defaults, key order, types and error texts are QEMU 7.2's, recorded from
``qemu-system-x86_64`` 7.2 (``query-migrate-parameters`` of a fresh VM, and the
replies to out-of-range values).  Integer parameters are QAPI ``uint8``/``uint32``/
``uint64``/``size``: a negative number wraps modulo 2**64 (``max-bandwidth: -1``
reads back as 18446744073709551615, as in QEMU) before the range checks.
libvirt sends ``{"max-bandwidth": 9223372036853727232}`` around every save.
cpuhot stores the values and reports them; none of them changes how its stream moves.
"""

from __future__ import annotations

from typing import Any

from .errors import GenericError

#: QEMU 7.2's query-migrate-parameters of a fresh VM, in its key order
DEFAULTS_7_2: dict[str, bool | int | str] = {
    "cpu-throttle-tailslow": False, "xbzrle-cache-size": 67108864, "cpu-throttle-initial": 20,
    "announce-max": 550, "decompress-threads": 2, "compress-threads": 8, "compress-level": 1,
    "multifd-channels": 2, "multifd-zstd-level": 1, "announce-initial": 50, "block-incremental": False,
    "compress-wait-thread": True, "downtime-limit": 300, "tls-authz": "", "multifd-compression": "none",
    "announce-rounds": 5, "announce-step": 100, "tls-creds": "", "multifd-zlib-level": 1,
    "max-cpu-throttle": 99, "max-postcopy-bandwidth": 0, "tls-hostname": "",
    "throttle-trigger-threshold": 50, "max-bandwidth": 134217728, "x-checkpoint-delay": 20000,
    "cpu-throttle-increment": 10,
}

#: parameters QEMU accepts but does not report until set (block-bitmap-mapping)
_SETTABLE_ONLY = ("block-bitmap-mapping",)
_TLS = ("tls-creds", "tls-hostname", "tls-authz")
_MULTIFD_COMPRESSION = ("none", "zlib", "zstd")

#: (parameter, low, high, message form): migrate_params_check() of QEMU 7.2
_RANGES = {
    "compress-level": (0, 9, "between"),
    "compress-threads": (1, 255, "between"),
    "decompress-threads": (1, 255, "between"),
    "multifd-channels": (1, 255, "between"),
    "multifd-zlib-level": (0, 9, "between"),
    "multifd-zstd-level": (0, 20, "between"),
    "cpu-throttle-initial": (1, 99, "range"),
    "cpu-throttle-increment": (1, 99, "range"),
    "max-cpu-throttle": (1, 99, "range"),
    "throttle-trigger-threshold": (1, 100, "range"),
}


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < (1 << 64):
        raise GenericError(f"Parameter '{name}' expects uint64")
    return value % (1 << 64)


class MigrationParameters:
    """One VM's migration parameters."""

    def __init__(self, defaults: dict[str, bool | int | str] | None = None) -> None:
        self.values = dict(defaults or DEFAULTS_7_2)

    def query(self) -> dict[str, bool | int | str]:
        return dict(self.values)

    def set(self, arguments: dict[str, Any]) -> None:
        """Check every argument first, then apply them all (QEMU applies all or nothing)."""
        new: dict[str, Any] = {}        # checked values: strings, booleans, and integers for the ranged names
        for name, value in arguments.items():
            if name in _TLS:
                if value is not None and not isinstance(value, str):
                    raise GenericError(f"Invalid parameter type for '{name}', expected: string")
                new[name] = value or ""
            elif name == "multifd-compression":
                if not isinstance(value, str):
                    raise GenericError(f"Invalid parameter type for '{name}', expected: string")
                if value not in _MULTIFD_COMPRESSION:
                    raise GenericError(f"Parameter '{name}' does not accept value '{value}'")
                new[name] = value
            elif name in _SETTABLE_ONLY:
                if not isinstance(value, list):
                    raise GenericError(f"Invalid parameter type for '{name}', expected: array")
            elif name in self.values and isinstance(self.values[name], bool):
                if not isinstance(value, bool):
                    raise GenericError(f"Invalid parameter type for '{name}', expected: boolean")
                new[name] = value
            elif name in self.values:
                new[name] = _check_int(name, value)
            else:
                raise GenericError(f"Parameter '{name}' is unexpected")
        for name, value in new.items():
            qname = name.replace("-", "_")
            if name in _RANGES:
                low, high, form = _RANGES[name]
                if not low <= value <= high:
                    text = (f"expects a value between {low} and {high}" if form == "between"
                            else f"expects an integer in the range of {low} to {high}")
                    raise GenericError(f"Parameter '{qname}' {text}")
            elif name == "downtime-limit" and value > 2000 * 1000:
                raise GenericError("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms")
            elif name == "x-checkpoint-delay" and value > (1 << 32) - 1:
                raise GenericError("Parameter 'x-checkpoint-delay' expects uint32_t")
        self.values.update(new)
