"""The simulated guest: what happens after ``device_del`` hands a CPU to the guest.

QEMU cannot remove a CPU by itself: x86 asks the guest through ACPI, sPAPR
through the DRC.  With no guest (``none``, QEMU 7.2 without an OS), x86
refuses because the ACPI CPU-hotplug interface is still in legacy mode, and
pseries removes at once a core the guest never configured and leaves any
other pending forever.
"""

from __future__ import annotations

from .errors import GenericError


class NoGuest:
    """No guest ever ran: exactly QEMU 7.2 with ``-S`` and no OS."""

    mode = "none"

    def x86_unplug_request(self, vm, device) -> None:
        raise GenericError(f"acpi: device unplug request for not supported device type: {device.type}")

    def spapr_unplug_request(self, vm, device) -> None:
        if not device.guest_configured:
            vm.remove_cpu_device(device)
        else:
            device.unplug_requested = True
