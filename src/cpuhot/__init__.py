"""cpuhot: a QEMU-compatible CPU-hotplug simulator speaking QMP."""

__version__ = "0.1.0"

from .launch import LaunchError, RunningVM, launch, launch_argv, launch_async  # noqa: E402

__all__ = ["launch", "launch_async", "launch_argv", "LaunchError", "RunningVM", "__version__"]
