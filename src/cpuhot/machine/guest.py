"""The simulated guest: what happens after ``device_del`` hands a CPU to the guest.

QEMU cannot remove a CPU by itself: x86 asks the guest through ACPI, sPAPR
through the DRC.  The guest is a switch here (``--guest MODE``, or
``x-cpuhot-guest-mode`` at run time):

``none``
    no guest ever ran: QEMU 7.2 with no OS.  x86 refuses (the ACPI CPU-hotplug
    interface is still in legacy mode); pseries removes at once a core the
    guest never configured and leaves any other pending forever.
``cooperative[:DELAY]``
    a Linux-like guest that ejects after DELAY seconds (default 0.005):
    x86 ``ACPI_DEVICE_OST`` (eject in progress), ``DEVICE_DELETED`` for the
    local APIC and the CPU, ``ACPI_DEVICE_OST`` (success); pseries the
    per-thread path-only ``DEVICE_DELETED`` events, then the core's.
``slow:SECONDS``
    cooperative, but it takes SECONDS (KVM guests take seconds).
``unresponsive``
    never ejects; a repeated ``device_del`` is accepted, as QEMU does.
``refuse``
    declines: x86 ``ACPI_DEVICE_OST`` with a failure status, pseries
    ``DEVICE_UNPLUG_GUEST_ERROR``; the CPU stays.
``flaky:P``
    each request refused with probability P (seeded: ``--seed``), otherwise cooperative.
``auto`` (default)
    ``none`` until the VM has run, ``cooperative`` from then on: a guest boots when the VM runs.

The guest also brings hot-plugged vCPUs online (``--guest-onlining``, or
``x-cpuhot-guest-agent`` at run time), which ``x-cpuhot-guest-cpus`` and the guest
agent's ``guest-get-vcpus`` show:

``udev`` (default)
    online at once, as Linux's udev rule ``SUBSYSTEM=="cpu", ACTION=="add", ATTR{online}="1"`` does.
``delayed:SECONDS``
    online after SECONDS.
``offline``
    left offline until the guest agent (``guest-set-vcpus``) or ``x-cpuhot-guest-online`` onlines it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import Timers
from .errors import GenericError
from .slots import CpuDevice, CpuSlot, VCpu

DEFAULT_DELAY = 0.005
DEFAULT_ONLINE_DELAY = 0.005

# ACPI _OST source and status codes a Linux guest writes
ACPI_NOTIFY_EJECT_REQUEST = 3
ACPI_OST_EC_OSPM_EJECT = 0x103
ACPI_OST_SC_SUCCESS = 0
ACPI_OST_SC_DEVICE_BUSY = 0x82
ACPI_OST_SC_EJECT_IN_PROGRESS = 0x84

ONLINING_MODES = ("udev", "delayed", "offline")


def parse_onlining(text: str) -> tuple[str, float]:
    """``udev``, ``delayed[:SECONDS]``, ``offline`` -> (name, delay)."""
    name, _, arg = text.partition(":")
    if name not in ONLINING_MODES:
        raise ValueError(f"unknown onlining mode '{name}' (one of: {', '.join(ONLINING_MODES)})")
    if name == "delayed":
        try:
            delay = float(arg) if arg else 1.0
        except ValueError:
            raise ValueError(f"bad argument for onlining mode '{text}'") from None
        if not 0 <= delay < 1e6:
            raise ValueError(f"bad argument for onlining mode '{text}'")
        return name, delay
    if arg:
        raise ValueError(f"onlining mode '{name}' takes no argument")
    return name, 0.0


class AgentPort(Protocol):
    """What the guest model needs of the guest agent (:class:`cpuhot.machine.agent.GuestAgent`)."""

    @property
    def open(self) -> bool: ...

    def guest_booted(self) -> None: ...

    def guest_stopped(self) -> None: ...


class GuestHost(Protocol):
    """What the guest model needs of its VM (:class:`cpuhot.machine.vm.VirtualMachine`, which
    imports this module)."""

    @property
    def vcpus(self) -> list[VCpu]: ...

    @property
    def slots(self) -> list[CpuSlot]: ...

    @property
    def runstate(self) -> str: ...

    @property
    def timers(self) -> Timers: ...

    @property
    def agent(self) -> AgentPort | None: ...

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None: ...

    def remove_cpu_device(self, device: CpuDevice, *, events: bool = True) -> None: ...


MODES = ("auto", "none", "cooperative", "slow", "unresponsive", "refuse", "flaky")


@dataclass(frozen=True)
class GuestMode:
    name: str
    delay: float = DEFAULT_DELAY
    probability: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "GuestMode":
        """``cooperative``, ``cooperative:0.5``, ``slow:3``, ``flaky:0.25``, ..."""
        name, _, arg = text.partition(":")
        if name not in MODES:
            raise ValueError(f"unknown guest mode '{name}' (one of: {', '.join(MODES)})")
        try:
            if name in ("cooperative", "auto") and arg:
                return cls(name, delay=float(arg))
            if name == "slow":
                return cls(name, delay=float(arg) if arg else 3.0)
            if name == "flaky":
                p = float(arg) if arg else 0.5
                if not 0.0 <= p <= 1.0:
                    raise ValueError
                return cls(name, probability=p)
        except ValueError:
            raise ValueError(f"bad argument for guest mode '{text}'") from None
        if arg:
            raise ValueError(f"guest mode '{name}' takes no argument")
        return cls(name)

    def __str__(self) -> str:
        if self.name in ("cooperative", "slow") and self.delay != DEFAULT_DELAY:
            return f"{self.name}:{self.delay:g}"
        if self.name == "flaky":
            return f"flaky:{self.probability:g}"
        return self.name


class Guest:
    """The guest OS of one VM: its hotplug behaviour and which vCPUs it has online."""

    def __init__(self, mode: GuestMode | str = "auto", *, seed: int = 0,
                 online_delay: float = DEFAULT_ONLINE_DELAY):
        self.mode = GuestMode.parse(mode) if isinstance(mode, str) else mode
        self.rng = random.Random(seed)
        self.online_delay = online_delay
        #: set once the VM has run (a guest booted)
        self.booted = False
        #: what the guest does with a hot-plugged vCPU: "udev" (online at once), "delayed", "offline"
        self.onlining = "udev"

    def set_onlining(self, text: str) -> None:
        name, delay = parse_onlining(text)
        self.onlining = name
        if name == "delayed":
            self.online_delay = delay

    @property
    def onlining_text(self) -> str:
        return f"delayed:{self.online_delay:g}" if self.onlining == "delayed" else self.onlining

    # -- what the guest is right now ------------------------------------------------
    @property
    def effective(self) -> str:
        if self.mode.name == "auto":
            return "cooperative" if self.booted else "none"
        return self.mode.name

    @property
    def present(self) -> bool:
        return self.effective != "none"

    def _decides_to_refuse(self) -> bool:
        if self.effective == "refuse":
            return True
        if self.effective == "flaky":
            return self.rng.random() < self.mode.probability
        return False

    # -- lifecycle hooks called by the VM ---------------------------------------------
    def on_run(self, vm: GuestHost) -> None:
        """The VM runs: a guest boots and onlines its boot vCPUs."""
        if not self.booted:
            self.booted = True
            for v in vm.vcpus:
                v.online = True
            for slot in vm.slots:
                if slot.cpu is not None:
                    slot.cpu.guest_configured = True
        agent = getattr(vm, "agent", None)
        if agent is not None and not agent.open:
            agent.guest_booted()           # qemu-ga starts (again, after a reset) and opens its port

    def on_reset(self, vm: GuestHost) -> None:
        """A system reset reboots the guest: qemu-ga closes its port and opens it again once the
        guest is back (at once if the VM keeps running, otherwise at the next ``cont``)."""
        agent = getattr(vm, "agent", None)
        if agent is None or not agent.open:
            return
        agent.guest_stopped()
        if vm.runstate == "running":
            vm.timers.call_later(self.mode.delay, lambda: agent.guest_booted() if not agent.open else None)

    def on_plugged(self, vm: GuestHost, device: CpuDevice) -> None:
        """A CPU was hot-plugged: the guest onlines its vCPUs after a while."""
        for v in device.vcpus:
            v.online = False
        if not self.present:
            return

        def online() -> None:
            if device.slot.cpu is device:
                for v in device.vcpus:
                    v.online = self.onlining != "offline"
                device.guest_configured = True
        if self.onlining == "udev" and vm.runstate == "running":
            online()
        else:
            vm.timers.call_later(self.online_delay, online)

    # -- unplug requests ----------------------------------------------------------------
    def x86_unplug_request(self, vm: GuestHost, device: CpuDevice) -> None:
        if not self.present:
            raise GenericError(f"acpi: device unplug request for not supported device type: {device.type}")
        device.unplug_requested = True
        self._schedule(vm, device, self._x86_respond)

    def spapr_unplug_request(self, vm: GuestHost, device: CpuDevice) -> None:
        if not device.guest_configured:
            vm.remove_cpu_device(device)    # the guest never took it: QEMU releases the DRC at once
            return
        first_request = not device.unplug_requested
        device.unplug_requested = True
        if self.present and first_request:
            self._schedule(vm, device, self._spapr_respond)

    def _schedule(self, vm: GuestHost, device: CpuDevice,
                  respond: Callable[[GuestHost, CpuDevice], None]) -> None:
        if self.effective == "unresponsive":
            return
        delay = self.mode.delay if self.effective in ("cooperative", "slow", "flaky") else DEFAULT_DELAY
        vm.timers.call_later(delay, lambda: respond(vm, device))

    def _x86_respond(self, vm: GuestHost, device: CpuDevice) -> None:
        if device.slot.cpu is not device or not device.unplug_requested:
            return
        slot = str(device.slot.index)
        info = {"device": device.id} if device.id else {}
        vm.emit("ACPI_DEVICE_OST", {"info": {**info, "source": ACPI_NOTIFY_EJECT_REQUEST,
                                             "status": ACPI_OST_SC_EJECT_IN_PROGRESS, "slot": slot,
                                             "slot-type": "CPU"}})
        if self._decides_to_refuse():
            device.unplug_requested = False
            vm.emit("ACPI_DEVICE_OST", {"info": {**info, "source": ACPI_NOTIFY_EJECT_REQUEST,
                                                 "status": ACPI_OST_SC_DEVICE_BUSY, "slot": slot,
                                                 "slot-type": "CPU"}})
            return
        self.eject(vm, device)
        vm.emit("ACPI_DEVICE_OST", {"info": {"source": ACPI_OST_EC_OSPM_EJECT, "status": ACPI_OST_SC_SUCCESS,
                                             "slot": slot, "slot-type": "CPU"}})

    def _spapr_respond(self, vm: GuestHost, device: CpuDevice) -> None:
        if device.slot.cpu is not device or not device.unplug_requested:
            return
        if self._decides_to_refuse():
            device.unplug_requested = False
            data = {"device": device.id, "path": device.qom_path} if device.id else {"path": device.qom_path}
            vm.emit("DEVICE_UNPLUG_GUEST_ERROR", data)
            return
        self.eject(vm, device)

    def eject(self, vm: GuestHost, device: CpuDevice) -> None:
        """The guest lets go of the CPU: it leaves the machine (DEVICE_DELETED events)."""
        for v in device.vcpus:
            v.online = False
        vm.remove_cpu_device(device)


class NoGuest(Guest):
    """QEMU 7.2 without an OS: the guest never boots."""

    def __init__(self) -> None:
        super().__init__("none")
