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

from . import dropin
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
    "nic": True, "no-reboot": False, "no-hpet": False, "no-acpi": False, "enable-fips": False, "usb": False, "audiodev": True, "vnc": True,
    "qmp-pretty": True, "trace": True, "D": True, "d": True, "L": True, "bios": True, "k": True,
    "kernel": True, "initrd": True, "append": True, "drive": True, "blockdev": True, "cdrom": True,
    "hda": True, "snapshot": False, "full-screen": False, "rtc-td-hack": False, "smbios": True,
    "mem-prealloc": False, "mem-path": True, "realtime": True, "icount": True, "watchdog-action": True,
    "action": True, "preconfig": False,
}
#: cpuhot's own options: name -> takes an argument
CPUHOT_OPTIONS = {"state": True, "vcpu-threads": False, "force-kvm": False, "compat": True, "arch": True, "validate-returns": False, "help": False, "guest": True,
                  "seed": True, "clock": True, "trace-file": True, "trace": True}


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
    #: the drop-in options (-daemonize, -chardev/-mon, -msg, ...): see cpuhot.dropin
    dropin: dropin.Dropin = field(default_factory=dropin.Dropin)


def parse_serve_args(argv: list[str], *, default_arch: str | None = None) -> ServeArgs:
    opts = LaunchOptions()
    args = ServeArgs(launch=opts)
    arch = default_arch
    guest_given = False
    force_kvm = False
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
        if name == "trace" and raw.startswith("--"):      # cpuhot's QMP trace (-trace is QEMU's, ignored)
            args.trace_file = value
            continue
        if name in dropin.HANDLED:
            dropin.take_option(args.dropin, opts, raw, name, value)
            continue
        if name == "smp":
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
        elif name == "incoming":
            opts.incoming = value
        elif name == "compat":
            args.compat = value
        elif name == "arch":
            arch = value
        elif name == "state":
            args.state_file = value
        elif name == "vcpu-threads":
            opts.vcpu_threads = True
        elif name == "force-kvm":
            force_kvm = True
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
    dropin.finish_parse(args.dropin, opts)
    opts.no_shutdown = any(a.lstrip("-") == "no-shutdown" for a in argv if a.startswith("-"))
    if force_kvm:
        # simulate KVM whatever -accel/-machine accel= say (a libvirt type='qemu' domain passes
        # -accel tcg, yet a test may want pseries SMT or x86 APIC IDs above 254)
        opts.accel = "kvm"
        opts.force_kvm = True
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
    opts.release = profile.release
    opts.cpu_index_rule = profile.cpu_index_rule
    opts.in_order_plug = profile.in_order_plug
    if not guest_given and profile.name != "cpuhot":
        opts.guest = "none"      # a strict QEMU profile behaves like QEMU without an OS
    return args


def default_socket_path() -> str:
    from .rundir import runtime_dir      # refuses a /tmp/cpuhot-UID that is not ours
    return os.path.join(runtime_dir(), f"qmp-{os.getpid()}.sock")


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
    #: inherited listening sockets to serve on (``-chardev socket,fd=N``): (location, socket)
    sockets: list = field(default_factory=list)
    #: the option text of each endpoint, for bind errors (``-qmp unix:...``, ``-chardev socket,...``)
    locations: list = field(default_factory=list)


def prepare(argv: list[str], *, prog: str, default_arch: str | None = None,
            default_endpoint: bool = True) -> Prepared:
    """Parse ``argv`` and build the VM, exactly as ``serve`` would, without any I/O."""
    from .qmp.protocol import Monitor
    from .qmp.server import Endpoint
    try:
        args = parse_serve_args(argv, default_arch=default_arch)
    except dropin.DropinError as e:
        return Prepared(1, e.render(prog))
    except UsageError as e:
        if str(e) == "help":
            return Prepared(0, "", stdout=USAGE)
        return Prepared(1, f"{prog}: {e}\n")
    d = args.dropin
    early = ""

    def build():
        if args.state_file and os.path.exists(args.state_file):
            from .machine.state import check_matches, load, restore
            try:
                wanted = args.launch
                args.launch, built = restore(load(args.state_file), thread_id_base=os.getpid() + 1)
                check_matches(args.state_file, wanted, built.vm)
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise dropin.DropinError(str(e), location=f"--state {args.state_file}") from None
            return built
        return build_machine(args.launch, thread_id_base=os.getpid() + 1)
    try:
        early = "".join(dropin.before_build(d, args.launch)).replace("{prog}", prog)
        built = dropin.build_in_order(d, args.launch, build)
    except dropin.DropinError as e:
        return Prepared(1, dropin.stamp(early + e.render(prog), prog, d))
    except ConfigError as e:
        return Prepared(1, dropin.stamp(early + e.render(prog), prog, d))
    stderr = early + d.late_warnings.replace("{prog}", prog)
    stderr += "".join(f"{prog}: {w}\n" if not w.startswith("Please") else f"{w}\n" for w in built.warnings)
    stderr += "".join(dropin.after_build(d, args.launch)).replace("{prog}", prog)
    stderr = dropin.stamp(stderr, prog, d)
    monitor = Monitor(built.vm, args.compat, validate_returns=args.validate_returns)
    if args.state_file:
        from .machine.state import snapshot, write_atomically
        monitor.persist = lambda: write_atomically(args.state_file, snapshot(monitor.vm, args.launch))
    mon_endpoints, sockets = dropin.monitor_listeners(d)
    try:
        texts = [(t, f"-qmp {t}") for t in args.monitors] + mon_endpoints
        if not texts and not sockets and default_endpoint:
            texts = [(f"unix:{default_socket_path()}", "-qmp")]
        endpoints = [Endpoint.parse(t) for t, _ in texts]
    except ValueError as e:
        return Prepared(1, stderr + f"{prog}: -qmp: {e}\n")
    except OSError as e:           # the default socket's directory (rundir.RuntimeDirError)
        return Prepared(1, stderr + f"{prog}: {e.strerror or e}\n")
    return Prepared(None, stderr, monitor=monitor, endpoints=endpoints, args=args, sockets=sockets,
                    locations=[loc for _, loc in texts])


def serve(argv: list[str], *, prog: str, default_arch: str | None = None) -> int:
    prepared = prepare(argv, prog=prog, default_arch=default_arch)
    sys.stdout.write(prepared.stdout)
    sys.stderr.write(prepared.stderr)
    sys.stderr.flush()
    if prepared.exit_code is not None:
        return prepared.exit_code
    d = prepared.args.dropin
    endpoints = prepared.endpoints
    daemon = None
    if d.daemonize:
        from .qmp.server import Endpoint
        # the daemon leaves the working directory once it serves: bind (and later unlink) absolute paths
        endpoints = [Endpoint("unix", path=os.path.abspath(ep.path)) if ep.kind == "unix" else ep for ep in endpoints]
        for attr in ("state_file", "trace_file"):
            if getattr(prepared.args, attr, None):
                setattr(prepared.args, attr, os.path.abspath(getattr(prepared.args, attr)))
        daemon = dropin.Daemon()
        status = daemon.start()
        if status is not None:
            return status          # the original process: 0 once the daemon serves, 1 if it failed
    tracer = None
    if prepared.args.trace_file:
        from .trace import Tracer
        try:
            tracer = Tracer(prepared.args.trace_file, argv=argv, prog=prog)
        except OSError as e:
            sys.stderr.write(f"{prog}: --trace {prepared.args.trace_file}: {e.strerror}\n")
            if daemon is not None:
                daemon.failed()
            return 1
    try:
        return asyncio.run(_serve(prepared.monitor, endpoints, prog, sockets=prepared.sockets,
                                  locations=prepared.locations, pidfile=d.pidfile, daemon=daemon, tracer=tracer,
                                  dropin_opts=d))
    finally:
        if daemon is not None:
            daemon.failed()        # no-op once it reported ready
        if tracer is not None:
            tracer.close()


def _bind_error(ep, e: OSError) -> str:
    from .qmp.server import SocketInUse
    if isinstance(e, SocketInUse):
        return e.strerror
    reason = os.strerror(e.errno) if e.errno else str(e)
    if ep.kind == "unix":
        return f"Failed to bind socket to {ep.path}: {reason}"
    return f"Failed to find an available port: {reason}"


async def _serve(monitor, endpoints, prog: str, *, sockets=(), locations=None, pidfile=None, daemon=None,
                 tracer=None, dropin_opts=None) -> int:
    from .qmp.server import QMPServer

    def report(text: str) -> None:
        sys.stderr.write(dropin.stamp(text, prog, dropin_opts))
        sys.stderr.flush()

    def stderr_sink(lines):
        report("".join(f"{prog}: {text}\n" if prefixed else f"{text}\n" for prefixed, text in lines))
    server = QMPServer(monitor, stderr_sink=stderr_sink, tracer=tracer)
    bound_all = []
    for n, ep in enumerate(endpoints):
        try:
            bound_all.append(await server.listen(ep))
        except OSError as e:
            where = locations[n] if locations and n < len(locations) else f"-qmp {ep}"
            report(f"{prog}: {where}: {_bind_error(ep, e)}\n")
            await server.close()
            return 1
    for _, sock in sockets:
        await server.adopt_listening_socket(sock)
        name = sock.getsockname()
        bound_all.append(f"unix:{name}" if isinstance(name, str) else f"tcp:{name[0]}:{name[1]}")
    pid = None
    if pidfile:
        pid = dropin.PidFile(pidfile)
        try:
            pid.write()
        except OSError as e:
            report(f"{prog}: cannot create PID file: {e.strerror}\n")
            await server.close()
            return 1
    try:
        if daemon is None:
            for bound in bound_all:
                print(str(bound), flush=True)
        else:
            daemon.ready()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_stop)
        await server.serve_until_stopped()
    finally:
        if pid is not None:
            pid.remove()
    return server.exit_code


USAGE = """usage: python -m cpuhot serve [QEMU options] [--compat PROFILE] [--arch x86_64|ppc64]

Serves a simulated VM's QMP monitor.  QEMU options (single or double dash):
  -machine TYPE[,k=v]  -smp ...  -cpu MODEL  -m SIZE  -object memory-backend-ram,...
  -numa node|cpu|dist,...  -device DRIVER,...  -qmp unix:PATH|tcp:HOST:PORT[,server=on,wait=off]
  -S  -accel kvm|tcg  -name NAME  -uuid UUID  (and QEMU's harmless flags)
  -daemonize -pidfile FILE  -chardev socket,id=ID,path=PATH|fd=N,server=on,wait=off
  -mon chardev=ID,mode=control  -msg timestamp=on  -overcommit  -rtc  -boot  -sandbox  -global
cpuhot options:
  --compat cpuhot|qemu-7.2   which QEMU to be (default cpuhot: every command)
  --arch x86_64|ppc64        target when -machine does not say
  --guest MODE               what the guest does after device_del (cooperative, none, ...)
  --trace FILE               write every QMP exchange as JSON lines (python -m cpuhot replay)
Other commands: python -m cpuhot replay TRACE --against ADDRESS | show ADDRESS [--svg FILE] [--watch]
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
    if prog.startswith("cpuhot-system-"):
        # the drop-in binaries stand in for QEMU under libvirt & co: real vCPU threads by default
        argv = ["--vcpu-threads", *(argv[1:] if argv[:1] == ["serve"] else argv)]
        return serve(argv, prog=prog, default_arch=default_arch)
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
