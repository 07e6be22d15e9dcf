"""Command line: ``python -m cpuhot serve [QEMU options]`` and friends.

The serve command accepts QEMU's own option spelling (single or double
dash), so the argv a harness passes to ``qemu-system-*`` works unchanged.
cpuhot's own options (``--compat``, ``--arch``, ...) are double-dash only.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from typing import cast

from . import dropin
from .daemon import Daemon, PidFile
from .machine.config import LaunchOptions, build_machine
from .machine.errors import ConfigError
from .machine.machines import arch_of_machine
from .machine.options import object_option_string

from .argv_options import CPUHOT_OPTIONS, QEMU_INFO_OPTIONS, QEMU_OPTIONS  # noqa: E402,F401


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
    #: -v/--verbose: log connections and commands on stderr (twice: the replies and events too)
    verbose: int = 0
    #: the drop-in options (-daemonize, -chardev/-mon, -msg, ...): see cpuhot.dropin
    dropin: dropin.Dropin = field(default_factory=dropin.Dropin)
    #: the guest agent: --guest-agent PATH, --agent-mode, --guest-os, --guest-onlining
    agent: dict = field(default_factory=dict)


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
        if raw == "-v":
            name = "verbose"                  # cpuhot's one single-dash option (QEMU has no -v)
        if name in CPUHOT_OPTIONS and (raw.startswith("--") or raw == "-v"):
            takes = CPUHOT_OPTIONS[name]
        elif name in QEMU_OPTIONS:
            takes = QEMU_OPTIONS[name]
        elif name in QEMU_INFO_OPTIONS:
            takes = False                     # printed by cpuhot.helptext before this parser runs
        else:
            raise UsageError(f"{raw}: invalid option")
        if takes and value is None:
            if i + 1 >= len(argv):
                raise UsageError(f"{raw}: requires an argument")
            value = argv[i + 1]
            i += 1
        i += 1
        value = cast(str, value)        # None only for the flags, whose branches below do not read it
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
            opts.objects.append(object_option_string(value))
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
        elif name in ("guest-agent", "agent-mode", "guest-os", "guest-onlining"):
            args.agent[name] = value
        elif name == "help" and raw.startswith("--"):
            raise UsageError("help")
        elif name == "verbose":
            args.verbose += 1
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
    if arch not in ("x86_64", "ppc64", "s390x"):
        raise UsageError(f"--arch: unknown architecture '{arch}' (x86_64, ppc64 or s390x)")
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
    #: the guest agent's chardev listeners: (unix path or None, inherited socket or None)
    agent_listeners: list = field(default_factory=list)
    #: a refusal of the machine checks: the ``-pidfile`` QEMU had written by then (it writes the
    #: pid file once the options are read, before building the machine) and removes at exit
    written_pidfile: str | None = None


def prepare(argv: list[str], *, prog: str, default_arch: str | None = None,
            default_endpoint: bool = True) -> Prepared:
    """Parse ``argv`` and build the VM, exactly as ``serve`` would, without any I/O."""
    from .qmp.protocol import Monitor
    from .qmp.server import Endpoint
    if default_arch is None:
        default_arch = arch_of_program(prog)
    from .helptext import informational
    info = informational(argv, prog=prog, default_arch=default_arch)
    if info is not None:
        return Prepared(0, "", stdout=info)
    try:
        args = parse_serve_args(argv, default_arch=default_arch)
    except dropin.DropinError as e:
        return Prepared(1, e.render(prog))
    except UsageError as e:
        if str(e) == "help":
            return Prepared(0, "", stdout=usage())
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
        return Prepared(1, dropin.stamp(early + e.render(prog), prog, d), written_pidfile=d.pidfile)
    except ConfigError as e:       # exit_code -6: a start-up QEMU aborts on (AbortError)
        return Prepared(e.exit_code, dropin.stamp(early + e.render(prog), prog, d), written_pidfile=d.pidfile)
    stderr = early + d.late_warnings.replace("{prog}", prog)
    stderr += "".join(f"{prog}: {w}\n" if not w.startswith("Please") else f"{w}\n" for w in built.warnings)
    stderr += "".join(dropin.after_build(d, args.launch)).replace("{prog}", prog)
    stderr = dropin.stamp(stderr, prog, d)
    try:
        agent_listeners = setup_agent(args, built.vm)
    except ValueError as e:
        return Prepared(1, stderr + f"{prog}: {e}\n")
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
                    locations=[loc for _, loc in texts], agent_listeners=agent_listeners)


def setup_agent(args: ServeArgs, vm) -> list:
    """Give the VM its guest agent (a virtserialport named org.qemu.guest_agent.0, or
    ``--guest-agent PATH``) and apply ``--guest-onlining``; return the listeners: (path, socket)."""
    from .machine.agent import GuestAgent
    a = args.agent
    if "guest-onlining" in a:
        vm.guest.set_onlining(a["guest-onlining"])
    channels = dropin.agent_channels(args.dropin)
    listeners = []
    if channels:
        port_id, chardev = channels[0]
        assert chardev.id is not None         # found by its id
        vm.agent = GuestAgent(vm, port_id=port_id, chardev_id=chardev.id, mode=a.get("agent-mode", "answering"),
                              os=a.get("guest-os", "linux"))
        listeners.append(dropin.chardev_listener(chardev))
    elif "guest-agent" in a:
        vm.agent = GuestAgent(vm, port_id="qga0", chardev_id="charqga0", mode=a.get("agent-mode", "answering"),
                              os=a.get("guest-os", "linux"))
        listeners.append((a["guest-agent"], None))
    elif "agent-mode" in a or "guest-os" in a:
        raise ValueError("--agent-mode/--guest-os need a guest agent: --guest-agent PATH or an "
                         "org.qemu.guest_agent.0 virtserialport")
    if vm.agent is not None and vm.guest.booted and vm.runstate == "running":
        vm.agent.guest_booted()       # the VM started running: the agent is up at once
        vm.drain_events()             # no client can have heard it: QEMU reports the port state in query-chardev
    return listeners


def die_of_signal(signum: int) -> None:
    """End this process as QEMU ends when it aborts: killed by ``signum`` (SIGABRT), so a parent
    sees the same wait status (-6).  Without a core file: the process is made non-dumpable and
    its core limit 0 first (whatever ``ulimit -c`` or ``core_pattern`` say), and Python's own
    handlers (faulthandler, a SIGABRT handler) are put back to the default so no traceback shows."""
    import resource
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    try:
        import ctypes
        PR_SET_DUMPABLE = 4
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        import faulthandler
        faulthandler.disable()
    except Exception:
        pass
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)          # not reached: the signal's default action ends the process


def serve(argv: list[str], *, prog: str, default_arch: str | None = None, early=None) -> int:
    """``early``: a :class:`cpuhot.early.EarlyGreeter` already listening on (some of) the monitors."""
    try:
        return _serve_main(argv, prog=prog, default_arch=default_arch, early=early)
    finally:
        if early is not None:
            early.abort()          # no-op once the server adopted its sockets (and the pid file)
            if early.daemon is not None:
                early.daemon.failed()      # no-op once it reported ready


def _serve_main(argv: list[str], *, prog: str, default_arch: str | None, early) -> int:
    prepared = prepare(argv, prog=prog, default_arch=default_arch)
    if prepared.exit_code is not None and early is not None:
        early.abort()              # before the error shows: nobody may find the socket afterwards
    elif prepared.written_pidfile:
        # the usual path writes the pid file only to serve: do what QEMU did by the time its
        # machine checks refused (written, then removed at exit), or fail as it failed first
        # (recorded from QEMU 7.2: a locked pid file wins over a bad -smp)
        pid = PidFile(prepared.written_pidfile)
        try:
            pid.write()
        except OSError as e:
            sys.stderr.write(f"{prog}: cannot create PID file: {e.strerror}\n")
            return 1
        pid.remove()
    sys.stdout.write(prepared.stdout)
    sys.stderr.write(prepared.stderr)
    sys.stderr.flush()
    if prepared.exit_code is not None and prepared.exit_code < 0:
        die_of_signal(-prepared.exit_code)
    if prepared.exit_code is not None:
        return prepared.exit_code
    assert prepared.args is not None          # prepare() sets it whenever exit_code is None
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
        prepared.agent_listeners[:] = [(os.path.abspath(p) if p else p, sock) for p, sock in prepared.agent_listeners]
        if early is not None and early.daemon is not None:
            daemon = early.daemon  # cpuhot.early forked already: this is the daemon
        else:
            daemon = Daemon()
            status = daemon.start()
            if status is not None:
                return status      # the original process: 0 once the daemon serves, 1 if it failed
    tracer = None
    if prepared.args.verbose:
        from .verbose import ConnectionLog, chain_tracers
        logger = ConnectionLog(prog, replies=prepared.args.verbose > 1)
    else:
        logger = None
    if prepared.args.trace_file:
        from .trace import Tracer
        try:
            tracer = Tracer(prepared.args.trace_file, argv=argv, prog=prog)
        except OSError as e:
            sys.stderr.write(f"{prog}: --trace {prepared.args.trace_file}: {e.strerror}\n")
            if daemon is not None:
                daemon.failed()
            return 1
    import asyncio
    hooks = tracer if logger is None else (logger if tracer is None else chain_tracers(tracer, logger))
    try:
        return asyncio.run(_serve(prepared.monitor, endpoints, prog, sockets=prepared.sockets,
                                  locations=prepared.locations, pidfile=d.pidfile, daemon=daemon, tracer=hooks,
                                  dropin_opts=d, agent_listeners=prepared.agent_listeners, early=early))
    finally:
        if daemon is not None:
            daemon.failed()        # no-op once it reported ready
        if tracer is not None:
            tracer.close()


def client_hint(address: str, prog: str) -> str:
    """How to reach a monitor printed as ``unix:PATH``/``tcp:HOST:PORT`` with the clients people use:
    qmp-shell, socat and qemu.qmp take a bare path (or ``HOST:PORT``), not ``unix:PATH``."""
    if address.startswith("unix:"):
        path = address[5:]
        return (f"{prog}: QMP monitor on {path}: qmp-shell {path} | socat - UNIX-CONNECT:{path} | "
                f"qemu.qmp QMPClient().connect('{path}')\n")
    host, _, port = address[4:].rpartition(":")
    return (f"{prog}: QMP monitor on {host}:{port}: qmp-shell {host}:{port} | socat - TCP:{host}:{port} | "
            f"qemu.qmp QMPClient().connect(('{host}', {port}))\n")


#: QEMU's termsig_handler signals (os_setup_signal_handling): SIGINT, SIGHUP, SIGTERM
TERMINATION_SIGNALS = frozenset({signal.SIGINT, signal.SIGHUP, signal.SIGTERM})


def qemu_pid_name(pid: int) -> str | None:
    """QEMU's qemu_get_pid_name (util/oslib-posix.c): the contents of ``/proc/PID/cmdline``,
    printed with ``%s`` so up to its first NUL (``argv[0]``), or None when it cannot be read
    (the sender has gone).  Bytes that are not UTF-8 show as ``\\xNN`` on cpuhot's stderr."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def kill_report(prog: str, signum: int, sender: int, name: str | None) -> str:
    """QEMU's qemu_kill_report (softmmu/runstate.c; the same text in 5.2, 7.2 and 10.0, recorded in
    tests/tools/data/qemu-signals.json): without a sender pid (a terminal's ^C) the short form."""
    if not sender:
        return f"{prog}: terminating on signal {signum}\n"
    return (f"{prog}: terminating on signal {signum} from pid {sender} "
            f"({name if name is not None else '<unknown process>'})\n")


def take_termination_signals(loop, terminate):
    """Take SIGINT, SIGHUP and SIGTERM with ``sigwaitinfo`` in a thread, which tells their sender,
    and run ``terminate(signum, sender_pid, sender_name)`` on ``loop``.  Only where they are blocked
    in this thread (:func:`cpuhot.early.block_termination_signals` blocks them before any thread
    starts, so no other thread takes them first).  Returns what to call when the loop ends, or
    None where the signals are not blocked (cpuhot run in-process).

    The thread wakes the loop through a pipe and the loop schedules ``terminate`` from there, as
    asyncio's own signal handling does: what the clients did before the signal (an EOF, say) is
    handled first."""
    if not TERMINATION_SIGNALS <= signal.pthread_sigmask(signal.SIG_BLOCK, []):
        return None
    import collections
    import threading
    taken: collections.deque = collections.deque()
    r, w = os.pipe()        # w stays open for the thread's life (the process's): never a reused number
    os.set_blocking(r, False)

    def wait() -> None:
        while True:
            info = signal.sigwaitinfo(TERMINATION_SIGNALS)
            taken.append((info.si_signo, info.si_pid, qemu_pid_name(info.si_pid) if info.si_pid else None))
            try:
                os.write(w, b"\0")
            except OSError:
                return             # the loop has gone (its end closed): the server is on its way out

    def wake() -> None:
        try:
            os.read(r, 4096)
        except OSError:
            pass
        while taken:
            loop.call_soon(terminate, *taken.popleft())

    def closed() -> None:
        loop.remove_reader(r)
        os.close(r)
    loop.add_reader(r, wake)
    threading.Thread(target=wait, name="cpuhot-signals", daemon=True).start()
    return closed


def _bind_error(ep, e: OSError) -> str:
    from .qmp.server import SocketInUse
    if isinstance(e, SocketInUse):
        assert e.strerror is not None         # raised with (errno, text)
        return e.strerror
    reason = os.strerror(e.errno) if e.errno else str(e)
    if ep.kind == "unix":
        return f"Failed to bind socket to {ep.path}: {reason}"
    return f"Failed to find an available port: {reason}"


async def _serve(monitor, endpoints, prog: str, *, sockets=(), locations=None, pidfile=None, daemon=None,
                 tracer=None, dropin_opts=None, agent_listeners=(), early=None) -> int:
    from .qmp.server import Endpoint, QMPServer

    def report(text: str) -> None:
        sys.stderr.write(dropin.stamp(text, prog, dropin_opts))
        sys.stderr.flush()

    def stderr_sink(lines):
        report("".join(f"{prog}: {text}\n" if prefixed else f"{text}\n" for prefixed, text in lines))
    import asyncio
    server = QMPServer(monitor, stderr_sink=stderr_sink, tracer=tracer)
    bound_all = []
    if early is not None:
        early.stop()
    # QEMU writes the pid file before it creates its monitors (recorded from 7.2: a locked pid
    # file is refused with a stale -qmp socket left untouched), and removes it at exit
    pid = None if early is None else early.take_pidfile()      # written before the early greeting
    if pidfile and pid is None:
        pid = PidFile(pidfile)
        try:
            pid.write()
        except OSError as e:
            report(f"{prog}: cannot create PID file: {e.strerror}\n")
            await server.close()
            return 1

    async def fail() -> int:
        await server.close()
        if pid is not None:
            pid.remove()
        return 1
    for n, ep in enumerate(endpoints):
        key = None if early is None else early.key_of(ep.kind, ep.path if ep.kind == "unix" else (ep.host, ep.port))
        if key is not None:
            listening, accepted = early.take(key)
            if ep.kind == "tcp":
                ep = Endpoint("tcp", host=ep.host, port=listening.getsockname()[1])
            await server.adopt_early(ep, listening, accepted)
            bound_all.append(ep)
            continue
        try:
            bound_all.append(await server.listen(ep))
        except OSError as e:
            where = locations[n] if locations and n < len(locations) else f"-qmp {ep}"
            report(f"{prog}: {where}: {_bind_error(ep, e)}\n")
            return await fail()
    if agent_listeners:
        from .qmp.agent_server import serve_agent
        try:
            await serve_agent(server, agent_listeners)
        except OSError as e:
            path = next((p for p, _ in agent_listeners if p), "")
            report(f"{prog}: guest agent chardev: {_bind_error(Endpoint('unix', path=path), e)}\n")
            return await fail()
    for _, sock in sockets:
        key = None if early is None else early.key_of("fd", sock.fileno())
        if key is not None:
            await server.adopt_early(None, sock, early.take(key)[1])
            continue
        await server.adopt_listening_socket(sock)
        # an inherited monitor socket (libvirt's -chardev fd=N) is not announced on stdout: QEMU
        # prints nothing there, and libvirt folds the domain's output into its error messages
    terminated: list[int] = []

    def terminate(signum: int, sender: int = 0, name: str | None = None) -> None:
        # QEMU (qemu_system_killed, then qemu_kill_report in the main loop): "terminating on signal
        # N[ from pid P (NAME)]", a SHUTDOWN event (guest false, reason host-signal), exit status 0;
        # once: its main loop has left when a later signal comes
        if terminated:
            return
        terminated.append(signum)
        report(kill_report(prog, signum, sender, name))
        monitor.vm.emit("SHUTDOWN", {"guest": False, "reason": "host-signal"})
        out = monitor.take_events()
        if out:
            server.deliver(out)
        server.request_stop()
    untake = None
    try:
        loop = asyncio.get_running_loop()
        untake = take_termination_signals(loop, terminate)
        if untake is None:
            for sig in (signal.SIGINT, signal.SIGTERM):      # run in-process: no sender pid
                loop.add_signal_handler(sig, terminate, int(sig))
        if daemon is None:
            for bound in bound_all:
                print(str(bound), flush=True)          # unix:PATH or tcp:HOST:PORT, for scripts
            if sys.stderr.isatty():                     # for people: what their clients accept
                report("".join(client_hint(str(b), prog) for b in bound_all))
        else:
            daemon.ready()
        await server.serve_until_stopped()
    finally:
        if untake is not None:
            untake()
        if pid is not None:
            pid.remove()
    return server.exit_code


USAGE = """usage: python -m cpuhot serve [QEMU options] [cpuhot options]
       cpuhot-system-x86_64 | cpuhot-system-ppc64 | cpuhot-system-s390x [QEMU options]     (drop-in for qemu-system-*)

Serves a simulated VM's QMP monitor; prints unix:PATH (or tcp:HOST:PORT) of each monitor on stdout.
QEMU options (single or double dash; docs/REFERENCE.md has every one):
  -machine TYPE[,k=v]  -M TYPE  -smp [cpus=]N[,maxcpus=,sockets=,dies=,clusters=,cores=,threads=]
  -cpu MODEL  -m SIZE  -object memory-backend-ram,id=ID,size=SIZE  -numa node|cpu|dist,...
  -device DRIVER,...   -S   -accel kvm|tcg   -enable-kvm   -incoming URI|defer
  -qmp unix:PATH[,server=on,wait=off] | tcp:HOST:PORT[,...]   (repeatable)
  -chardev socket,id=ID,path=PATH|fd=N,server=on,wait=off  -mon chardev=ID,mode=control
  -name [guest=]NAME  -uuid UUID  -daemonize  -pidfile FILE  -msg timestamp=on  -overcommit ...
  -rtc ...  -boot ...  -sandbox ...  -global ...  -no-shutdown  and QEMU's harmless flags
  -version  -h  -machine help  -cpu help  -accel help  -device help   (QEMU's own texts)
cpuhot options (double dash):
  --compat PROFILE     which QEMU to be (default cpuhot); profiles: {profiles}
  --arch x86_64|ppc64|s390x  target when -machine does not say
  --guest MODE         what the guest does after device_del: {modes}
  --state FILE         keep the VM in FILE: restored at start, rewritten after every change
  --seed N             seed of the guest's random choices (--guest flaky:P)
  --clock real|virtual the model's clock (virtual: time moves only with x-cpuhot-clock-step)
  --vcpu-threads       a real host thread per vCPU (thread-id); the drop-in binaries default to it
  --force-kvm          simulate KVM whatever -accel says (pseries SMT, x86 APIC IDs above 254)
  --trace FILE         write every QMP exchange as JSON lines (python -m cpuhot replay)
  --trace-file FILE    the same as --trace
  --validate-returns   check every reply against the QAPI schema (for tests)
  --guest-agent PATH   a guest agent (qemu-ga protocol) on a UNIX socket (or: a virtserialport
                       named org.qemu.guest_agent.0 on a -chardev socket)
  --agent-mode MODE    answering (default), never, late:SECONDS, absent
  --guest-os linux|windows   which vCPUs the guest can offline
  --guest-onlining MODE      hot-plugged vCPUs: udev (online at once), delayed:SECONDS, offline
  -v, --verbose        log connections and commands on stderr (-v -v: replies and events too)
  --help               this text
Other commands:
  python -m cpuhot replay TRACE [--against unix:PATH|tcp:HOST:PORT] [--show-argv]
  python -m cpuhot show unix:PATH [--svg FILE] [--watch]
  python -m cpuhot fleet --count N [--dir DIR] [serve options]
"""


def usage() -> str:
    from .machine.guest import MODES
    from .profiles import PROFILES
    return USAGE.format(profiles=", ".join(PROFILES), modes=", ".join(MODES))


#: subcommands other than ``serve``: name -> "module:function" taking argv, returning an exit status
SUBCOMMANDS = {
    "replay": "cpuhot.trace:replay_main",
    "show": "cpuhot.show:main",
    "fleet": "cpuhot.fleet:main",
}


def arch_of_program(prog: str) -> str | None:
    """``qemu-system-s390x``, ``cpuhot-system-ppc64``, ...: the target a program name says."""
    for arch in ("x86_64", "ppc64", "s390x"):
        if prog.endswith(arch):
            return arch
    return None


def main(argv: list[str] | None = None, *, early=None) -> int:
    """The command line (``early``: see :mod:`cpuhot.early`, which enters here)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = program_name()
    default_arch = None
    if prog.endswith("ppc64"):
        default_arch = "ppc64"
    elif prog.endswith("s390x"):
        default_arch = "s390x"
    elif prog.endswith("x86_64"):
        default_arch = "x86_64"
    if prog.startswith("cpuhot-system-"):
        # the drop-in binaries stand in for QEMU under libvirt & co: real vCPU threads by default
        argv = ["--vcpu-threads", *(argv[1:] if argv[:1] == ["serve"] else argv)]
        return serve(argv, prog=prog, default_arch=default_arch, early=early)
    if argv and argv[0] == "serve":
        return serve(argv[1:], prog=prog, default_arch=default_arch, early=early)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        module, func = SUBCOMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module), func)(argv[1:])
    if argv and argv[0] in ("--help", "help"):
        print(usage(), end="")
        return 0
    if argv and not argv[0].startswith("-"):
        names = ", ".join(["serve", *SUBCOMMANDS])
        sys.stderr.write(f"{prog}: '{argv[0]}' is not a cpuhot command (one of: {names}); "
                         f"see '{prog} --help'\n")
        return 1
    return serve(argv, prog=prog, default_arch=default_arch, early=early)


if __name__ == "__main__":
    sys.exit(main())
