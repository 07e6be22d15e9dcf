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


def scan_options(argv: list[str]) -> list[tuple[str, str, str | None, str]] | None:
    """``(raw, name, value, kind)`` of every option of a serve command line, ``kind`` being
    ``cpuhot`` (``--NAME``, and ``-v`` as ``verbose``), ``qemu`` or ``info`` (``-version``,
    ``-h``, ``-help``); None where the command line is not well formed, names an unknown option or
    asks for cpuhot's own ``--help`` (the parser answers those)."""
    out: list[tuple[str, str, str | None, str]] = []
    i = 0
    while i < len(argv):
        raw = argv[i]
        if not raw.startswith("-") or raw == "-":
            return None
        name = raw.lstrip("-")
        value = None
        if raw.startswith("--") and "=" in name:
            name, value = name.split("=", 1)
        if raw == "-v":
            name = "verbose"
        if name in CPUHOT_OPTIONS and (raw.startswith("--") or raw == "-v"):
            if name == "help":
                return None
            takes, kind = CPUHOT_OPTIONS[name], "cpuhot"
        elif name in QEMU_OPTIONS:
            takes, kind = QEMU_OPTIONS[name], "qemu"
        elif name in QEMU_INFO_OPTIONS:
            takes, kind = False, "info"
        else:
            return None
        if takes and value is None:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        out.append((raw, name, value, kind))
    return out
