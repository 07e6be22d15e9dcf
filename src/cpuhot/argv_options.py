"""The option tables of the command line (no imports: :mod:`cpuhot.qmp` reads them too)."""

from __future__ import annotations

#: QEMU options: name -> takes an argument
QEMU_OPTIONS = {
    "machine": True, "M": True, "smp": True, "cpu": True, "m": True, "object": True, "numa": True,
    "device": True, "qmp": True, "S": False, "accel": True, "name": True, "nodefaults": False,
    "display": True, "nographic": False, "no-user-config": False, "enable-kvm": False, "uuid": True,
    "incoming": True, "daemonize": False, "pidfile": True, "chardev": True, "mon": True,
    "overcommit": True, "rtc": True, "no-shutdown": False, "boot": True, "msg": True, "sandbox": True,
    "global": True, "vga": True, "serial": True, "parallel": True, "monitor": True, "net": True,
    "nic": True, "no-reboot": False, "no-hpet": False, "no-acpi": False, "enable-fips": False, "usb": False, "audiodev": True, "vnc": True,
    "qmp-pretty": True, "trace": True, "D": True, "d": True, "L": True, "bios": True, "k": True,
    "kernel": True, "initrd": True, "append": True, "drive": True, "blockdev": True, "cdrom": True,
    "hda": True, "snapshot": False, "full-screen": False, "rtc-td-hack": False, "smbios": True,
    "mem-prealloc": False, "mem-path": True, "realtime": True, "icount": True, "watchdog-action": True,
    "action": True, "preconfig": False,
}
#: cpuhot's own options: name -> takes an argument
CPUHOT_OPTIONS = {"state": True, "vcpu-threads": False, "force-kvm": False, "compat": True, "arch": True, "validate-returns": False, "help": False, "guest": True,
                  "seed": True, "clock": True, "trace-file": True, "trace": True, "verbose": False,
                  "guest-agent": True, "agent-mode": True, "guest-os": True, "guest-onlining": True}
#: QEMU's informational options: they print and exit (see cpuhot.helptext)
QEMU_INFO_OPTIONS = {"version": False, "h": False, "help": False}
