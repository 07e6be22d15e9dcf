"""Non-CPU devices: just enough of them to share the device-id namespace with CPUs.

A management stack plugs NICs and disks next to CPUs, and QEMU's ``device_add`` ids
and ``peripheral-anon`` numbers are shared by all of them.  cpuhot knows a few
common PCI devices; plugging one occupies an id (or an anonymous number) and
unplugging it waits for the guest, as ACPI PCI hotplug does with no guest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .errors import GenericError

_CREATED = itertools.count()

#: driver -> settable properties (values are accepted as strings)
PCI_DEVICES = {
    "e1000": ("mac", "netdev", "addr", "romfile", "bootindex", "multifunction", "x-pcie-lnksta-dllla"),
    "virtio-net-pci": ("mac", "netdev", "addr", "romfile", "bootindex", "multifunction", "mq", "vectors"),
    "virtio-balloon-pci": ("addr", "multifunction"),
    "virtio-rng-pci": ("addr", "multifunction", "rng"),
    # the guest agent's virtio-serial controller (its ports: cpuhot.dropin, cpuhot.machine.agent)
    "virtio-serial-pci": ("addr", "multifunction", "max_ports", "vectors", "ioeventfd"),
}

#: the default bus of PCI devices per machine family and whether it takes hotplug
DEFAULT_PCI_BUS = {"pc": ("pci.0", True), "q35": ("pcie.0", False), "pseries": ("pci.0", True)}


#: free slots of the default PCI bus with -nodefaults (what libvirt starts), and QEMU 7.2's error
#: once they are used up, recorded from qemu-system-x86_64/-ppc64 7.2 by plugging e1000 until
#: refused: pc has 30 (slot 0 host bridge, 1 PIIX3); pseries 32 (its PHB bus starts empty)
PCI_BUS_CAPACITY = {
    "pc": (30, "PCI: no slot/function available for {driver}, all in use or reserved"),
    "pseries": (32, "PCI: slot 31 function 0 already occupied by {last}, additional functions can no "
                    "longer be exposed to guest."),
}


def check_pci_slot_free(family: str, driver: str, present: "list[GenericDevice]") -> None:
    """``do_pci_register_device``: a device on a full bus is refused (with the last device's name
    on pseries, where QEMU tries function 1 of the last slot)."""
    capacity = PCI_BUS_CAPACITY.get(family)
    if capacity is not None and len(present) >= capacity[0]:
        raise GenericError(capacity[1].format(driver=driver, last=present[-1].driver if present else driver))


@dataclass(eq=False)
class GenericDevice:
    driver: str
    id: str | None
    qom_path: str
    props: dict[str, str]
    unplug_requested: bool = False
    #: device_add'ed once the machine was ready (not -device on the command line)
    hotplugged: bool = False
    #: plug order (for --state and the slot count)
    created: int = field(default_factory=lambda: next(_CREATED))


def check_generic_bus(family: str, driver: str, bus: str | None, buses: dict[str, str]) -> None:
    """The bus checks qdev runs before it assigns an id."""
    if bus is not None:
        name = bus
        if name not in buses:
            raise GenericError(f"Bus '{bus}' not found")
        if buses[name] not in ("PCI", "PCIE"):
            raise GenericError(f"Device '{driver}' can't go on {buses[name]} bus")
        hotpluggable = name == "pci.0"
    else:
        name, hotpluggable = DEFAULT_PCI_BUS[family]
    if not hotpluggable:
        raise GenericError(f"Bus '{name}' does not support hotplugging")


def parse_generic_properties(driver: str, opts: dict[str, str]) -> dict[str, str]:
    allowed = PCI_DEVICES[driver]
    for key in opts:
        if key not in allowed:
            raise GenericError(f"Property '{driver}.{key}' not found")
    return dict(opts)
