"""cpuhot: a QEMU-compatible CPU-hotplug simulator speaking QMP."""

from __future__ import annotations

import sys as _sys
import types as _types

__version__ = "0.1.0"

__all__ = ["launch", "launch_async", "launch_argv", "LaunchError", "RunningVM", "__version__"]


def __getattr__(name: str) -> object:
    # the launcher API is imported on first use: `python -m cpuhot serve` and the drop-in binaries
    # must reach their QMP greeting without importing it (and asyncio) first
    if name in __all__:
        import importlib
        return getattr(importlib.import_module("cpuhot.launch"), name)
    raise AttributeError(f"module 'cpuhot' has no attribute {name!r}")


class _Package(_types.ModuleType):
    """``cpuhot.launch`` is the function, although ``cpuhot/launch.py`` is a submodule of that name:
    importing the submodule would otherwise rebind the package's attribute to the module."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "launch" and isinstance(value, _types.ModuleType):
            value = getattr(value, "launch")
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
