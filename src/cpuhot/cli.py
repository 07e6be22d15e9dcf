"""Command line: ``python -m cpuhot serve [QEMU options]`` and friends.

The serve command accepts QEMU's own option spelling (single or double
dash), so the argv a harness passes to ``qemu-system-*`` works unchanged.
cpuhot's own options (``--compat``, ``--arch``, ...) are double-dash only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field

from .machine.config import LaunchOptions, build_machine
from .machine.errors import ConfigError
from .machine.machines import arch_of_machine

#: QEMU options: name -> takes an argument
QEMU_OPTIONS = {
    "machine": True, "M": True, "smp": True, "cpu": True, "m": True, "object": True, "numa": True,
    "device": True, "qmp": True, "S": False, "accel": True, "name": True, "nodefaults": False,
    "display": True, "nographic": False, "no-user-config": False, "enable-kvm": False, "uuid": True,
    "incoming": True, "daemonize": False, "pidfile": True, "chardev": True, "mon": True,
    "overcommit": True, "rtc": True, "no-shutdown": False, "boot": True, "msg": True, "sandbox": True,
    "global": True, "vga": True, "serial": True, "parallel": True, "monitor": True, "net": True,
    "nic": True, "no-reboot": False, "no-hpet": False, "usb": False, "audiodev": True, "vnc": True,
    "qmp-pretty": True, "trace": True, "D": True, "d": True, "L": True, "bios": True, "k": True,
    "kernel": True, "initrd": True, "append": True, "drive": True, "blockdev": True, "cdrom": True,
    "hda": True, "snapshot": False, "full-screen": False, "rtc-td-hack": False, "smbios": True,
    "mem-prealloc": False, "mem-path": True, "realtime": True, "icount": True, "watchdog-action": True,
    "action": True, "preconfig": False,
}
#: cpuhot's own options: name -> takes an argument
CPUHOT_OPTIONS = {"state": True, "compat": True, "arch": True, "validate-returns": False, "help": False, "guest": True,
                  "seed": True, "clock": True, "trace-file": True}


class UsageError(Exception):
    pass


@dataclass
class ServeArgs:
    launch: LaunchOptions
    monitors: list[str] = field(default_factory=list)
    compat: str = "cpuhot"
    validate_returns: bool = False
    trace_file: str | None = None
    state_file: str | None = None


def parse_serve_args(argv: list[str], *, default_arch: str | None = None) -> ServeArgs:
    opts = LaunchOptions()
    args = ServeArgs(launch=opts)
    arch = default_arch
    guest_given = False
    i = 0
    while i < len(argv):
        raw = argv[i]
        if not raw.startswith("-") or raw == "-":
            raise UsageError(f"{raw}: invalid option")
        name = raw.lstrip("-")
        value = None
        if raw.startswith("--") and "=" in name:
            name, value = name.split("=", 1)
        if name in CPUHOT_OPTIONS and raw.startswith("--"):
            takes = CPUHOT_OPTIONS[name]
        elif name in QEMU_OPTIONS:
            takes = QEMU_OPTIONS[name]
        else:
            raise UsageError(f"{raw}: invalid option")
        if takes and value is None:
            if i + 1 >= len(argv):
                raise UsageError(f"{raw}: requires an argument")
            value = argv[i + 1]
            i += 1
        i += 1
        if name in ("machine", "M"):
            opts.machine = value
        elif name == "smp":
            opts.smp = value
        elif name == "cpu":
            opts.cpu = value
        elif name == "m":
            opts.memory = value
        elif name == "object":
            opts.objects.append(value)
        elif name == "numa":
            opts.numa.append(value)
        elif name == "device":
            opts.devices.append(value)
        elif name == "qmp":
            args.monitors.append(value)
        elif name == "S":
            opts.start_paused = True
        elif name == "accel":
            accel = value.split(",")[0]
            accel = accel.split("=", 1)[1] if accel.startswith("accel=") else accel
            opts.accel = accel.split(":")[0]
        elif name == "enable-kvm":
            opts.accel = "kvm"
        elif name == "name":
            first = value.split(",")[0]
            opts.name = first.split("=", 1)[1] if first.startswith("guest=") else first
        elif name == "uuid":
            opts.uuid = value
        elif name == "incoming":
            opts.incoming = value
        elif name == "compat":
            args.compat = value
        elif name == "arch":
            arch = value
        elif name == "state":
            args.state_file = value
        elif name == "validate-returns":
            args.validate_returns = True
        elif name == "trace-file":
            args.trace_file = value
        elif name == "guest":
            opts.guest = value
            guest_given = True
        elif name == "seed":
            try:
                opts.seed = int(value)
            except ValueError:
                raise UsageError(f"--seed: '{value}' is not an integer") from None
        elif name == "clock":
            if value not in ("real", "virtual"):
                raise UsageError(f"--clock: '{value}' is neither 'real' nor 'virtual'")
            opts.clock = value
        elif name == "help":
            raise UsageError("help")
    if arch is None:
        mtype = (opts.machine or "").split(",")[0]
        if mtype.startswith("type="):
            mtype = mtype[5:]
        arch = arch_of_machine(mtype) if mtype else None
        arch = arch or "x86_64"
    if arch not in ("x86_64", "ppc64"):
        raise UsageError(f"--arch: unknown architecture '{arch}' (x86_64 or ppc64)")
    opts.arch = arch
    from .profiles import get_profile
    try:
        profile = get_profile(args.compat)
    except ValueError as e:
        raise UsageError(str(e)) from None
    opts.cpu_index_rule = profile.cpu_index_rule
    opts.in_order_plug = profile.in_order_plug
    if not guest_given and profile.name != "cpuhot":
        opts.guest = "none"      # a strict QEMU profile behaves like QEMU without an OS
    return args


def default_socket_path() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    directory = os.path.join(base, "cpuhot") if base else f"/tmp/cpuhot-{os.getuid()}"
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return os.path.join(directory, f"qmp-{os.getpid()}.sock")


def program_name(default: str = "cpuhot") -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else default
    return default if prog in ("__main__.py", "-c", "-m", "") else prog


@dataclass
class Prepared:
    """The outcome of reading a command line: a built VM and its monitor, or a refusal."""

    exit_code: int | None          # None: ready to serve
    stderr: str
    stdout: str = ""
    monitor: object = None
    endpoints: list = field(default_factory=list)
    args: ServeArgs | None = None


def prepare(argv: list[str], *, prog: str, default_arch: str | None = None,
            default_endpoint: bool = True) -> Prepared:
    """Parse ``argv`` and build the VM, exactly as ``serve`` would, without any I/O."""
    from .qmp.protocol import Monitor
    from .qmp.server import Endpoint
    try:
        args = parse_serve_args(argv, default_arch=default_arch)
    except UsageError as e:
        if str(e) == "help":
            return Prepared(0, "", stdout=USAGE)
        return Prepared(1, f"{prog}: {e}\n")
    try:
        if args.state_file and os.path.exists(args.state_file):
            from .machine.state import load, restore
            try:
                args.launch, built = restore(load(args.state_file), thread_id_base=os.getpid() + 1)
            except (ValueError, KeyError, TypeError, OSError) as e:
                return Prepared(1, f"{prog}: --state {args.state_file}: {e}\n")
        else:
            built = build_machine(args.launch, thread_id_base=os.getpid() + 1)
    except ConfigError as e:
        return Prepared(1, e.render(prog))
    stderr = "".join(f"{prog}: {w}\n" if not w.startswith("Please") else f"{w}\n" for w in built.warnings)
    monitor = Monitor(built.vm, args.compat, validate_returns=args.validate_returns)
    if args.state_file:
        from .machine.state import snapshot, write_atomically
        monitor.persist = lambda: write_atomically(args.state_file, snapshot(monitor.vm, args.launch))
    try:
        texts = args.monitors or ([f"unix:{default_socket_path()}"] if default_endpoint else [])
        endpoints = [Endpoint.parse(t) for t in texts]
    except ValueError as e:
        return Prepared(1, stderr + f"{prog}: -qmp: {e}\n")
    return Prepared(None, stderr, monitor=monitor, endpoints=endpoints, args=args)


def serve(argv: list[str], *, prog: str, default_arch: str | None = None) -> int:
    prepared = prepare(argv, prog=prog, default_arch=default_arch)
    sys.stdout.write(prepared.stdout)
    sys.stderr.write(prepared.stderr)
    sys.stderr.flush()
    if prepared.exit_code is not None:
        return prepared.exit_code
    return asyncio.run(_serve(prepared.monitor, prepared.endpoints, prog))


async def _serve(monitor, endpoints, prog: str) -> int:
    from .qmp.server import QMPServer, SocketInUse

    def stderr_sink(lines):
        for prefixed, text in lines:
            sys.stderr.write(f"{prog}: {text}\n" if prefixed else f"{text}\n")
        sys.stderr.flush()
    server = QMPServer(monitor, stderr_sink=stderr_sink)
    try:
        for ep in endpoints:
            bound = await server.listen(ep)
            print(str(bound), flush=True)
    except (SocketInUse, OSError) as e:
        print(f"{prog}: -qmp {ep}: {e.strerror or e}", file=sys.stderr)
        await server.close()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    await server.serve_until_stopped()
    return server.exit_code


USAGE = """usage: python -m cpuhot serve [QEMU options] [--compat PROFILE] [--arch x86_64|ppc64]

Serves a simulated VM's QMP monitor.  QEMU options (single or double dash):
  -machine TYPE[,k=v]  -smp ...  -cpu MODEL  -m SIZE  -object memory-backend-ram,...
  -numa node|cpu|dist,...  -device DRIVER,...  -qmp unix:PATH|tcp:HOST:PORT[,server=on,wait=off]
  -S  -accel kvm|tcg  -name NAME  -uuid UUID  (and QEMU's harmless flags)
cpuhot options:
  --compat cpuhot|qemu-7.2   which QEMU to be (default cpuhot: every command)
  --arch x86_64|ppc64        target when -machine does not say
"""


#: subcommands other than ``serve``: name -> "module:function" taking argv, returning an exit status
SUBCOMMANDS = {
    "replay": "cpuhot.trace:replay_main",
    "show": "cpuhot.show:main",
    "fleet": "cpuhot.fleet:main",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = program_name()
    default_arch = None
    if prog.endswith("ppc64"):
        default_arch = "ppc64"
    elif prog.endswith("x86_64"):
        default_arch = "x86_64"
    if argv and argv[0] == "serve":
        return serve(argv[1:], prog=prog, default_arch=default_arch)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        module, func = SUBCOMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module), func)(argv[1:])
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    return serve(argv, prog=prog, default_arch=default_arch)


if __name__ == "__main__":
    sys.exit(main())
