"""Run Debian 13's libvirtd (libvirt 11.3) in the QEMU 10.0 chroot against cpuhot, beside the host's.

The daemon runs through ``tools/qemus.py`` (``command("10.0", ...)``): a private mount namespace
where /tmp, /proc, /sys, /dev and the project tree (at its own path, so the chroot's Python can
import cpuhot) are bind-mounted; nothing is mounted on the host, and the PID we hold is
libvirtd's own (stopped by that PID).  Its sockets live in the chroot's /run
(:data:`SOCKET` on the host); it has its own ``host_uuid`` so that the host's libvirt 9.0 and it
may migrate to each other on one machine.  cpuhot runs there from a venv made by the chroot's
python3 (``--system-site-packages`` for Debian's pydantic) at :data:`VENV` inside the root, whose
drop-in scripts import the project tree.

Everything this module adds under the chroot's libvirt directories (and the venv) is removed
again, the two config files it rewrites are put back byte for byte.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cpuhot

ROOT_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT_DIR / "tools"))
import qemus  # noqa: E402

from .libvirtd import Daemon  # noqa: E402

VERSION = "10.0"
#: the project tree (bind-mounted at the same path inside the chroot)
PROJECT = Path(cpuhot.__file__).resolve().parents[2]
#: the venv of the chroot's python3, a path inside the chroot
VENV = "/opt/cpuhot-libvirt-tests"
EMULATORS = {"x86_64": f"{VENV}/bin/cpuhot-system-x86_64", "ppc64": f"{VENV}/bin/cpuhot-system-ppc64"}
#: this daemon's host UUID (the host's libvirtd has its own): libvirt refuses same-host migration
HOST_UUID = "6c1b4c3e-2b8f-4a0e-9d4e-113000000113"
LOCK = Path("/run/lock/cpuhot-libvirt113-tests.lock")
PROBE_TIMEOUT = 300.0
REL_STATE = ["etc/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt", "run/libvirt"]
QEMU_CONF = """# written by cpuhot's libvirt 11.3 tests; restored afterwards
user = "root"
group = "root"
swtpm_user = "root"
swtpm_group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = f"""# written by cpuhot's libvirt 11.3 tests; restored afterwards
host_uuid = "{HOST_UUID}"
"""
ENTRY = """#!{venv}/bin/python3
import sys
from cpuhot.cli import main
sys.exit(main())
"""


def root() -> Path:
    return qemus.chroot_dir(VERSION)


def socket_path() -> Path:
    """The daemon's socket as seen from the host."""
    return root() / "run/libvirt/libvirt-sock"


def uri() -> str:
    """How a client outside the chroot (e.g. the host's virsh or libvirtd) reaches this daemon."""
    return f"qemu+unix:///system?socket={socket_path()}"


def missing() -> str | None:
    """Why libvirt 11.3 cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: the chroot's libvirtd needs root"
    r = root()
    for need in ("usr/sbin/libvirtd", "usr/bin/virsh", "usr/bin/python3"):
        if not (r / need).exists():
            return f"{r / need} missing (python tools/qemus.py ensure 10.0 --with libvirt --with python)"
    if not list((r / "usr/lib/python3/dist-packages").glob("pydantic")):
        return "python3-pydantic missing in the chroot (python tools/qemus.py ensure 10.0 --with python)"
    return None


def ensure_installed() -> str | None:
    why = missing()
    if why and os.environ.get("CI") == "true" and os.geteuid() == 0:
        try:
            qemus.ensure(VERSION, ("qemu", "libvirt", "python"))
        except qemus.QemusError as e:
            return str(e)
        why = missing()
    return why


def run113(*argv: str, **kw) -> subprocess.CompletedProcess:
    """Run a program of the chroot (with the project tree visible)."""
    return subprocess.run(qemus.command(VERSION, *argv, binds=(str(PROJECT),)), **kw)


def virsh113(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """The chroot's virsh (libvirt 11.3) talking to the chroot's libvirtd."""
    r = run113("virsh", "-c", "qemu:///system", *args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"virsh(11.3) {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
    return r


class Libvirtd113(Daemon):
    """Debian 13's libvirtd (libvirt 11.3) in the QEMU 10.0 chroot, beside the host's."""

    label = "libvirtd 11.3"
    lock_path = LOCK
    probe_timeout = PROBE_TIMEOUT
    stop_timeout = 30.0
    log_name = "libvirtd113.log"          # workdir is under /tmp: the same path inside

    def state_roots(self) -> list[Path]:
        return [root() / rel for rel in REL_STATE]

    def config_files(self) -> dict[Path, str]:
        return {root() / "etc/libvirt/qemu.conf": QEMU_CONF, root() / "etc/libvirt/libvirtd.conf": LIBVIRTD_CONF}

    def socket(self) -> Path:
        return socket_path()

    def command(self) -> list[str]:
        return qemus.command(VERSION, "/usr/sbin/libvirtd", binds=(str(PROJECT),))

    def version(self, timeout: float) -> subprocess.CompletedProcess:
        return virsh113("version", check=False, timeout=timeout)

    def prepare(self) -> None:
        self._make_venv()

    def _make_venv(self) -> None:
        venv = root() / VENV.lstrip("/")
        if venv.exists():
            shutil.rmtree(venv)
        run113("python3", "-m", "venv", "--without-pip", "--system-site-packages", VENV, check=True,
               capture_output=True, timeout=120)
        site = next((venv / "lib").glob("python3*")) / "site-packages"
        (site / "cpuhot-project.pth").write_text(str(PROJECT / "src") + "\n")
        for path in EMULATORS.values():
            script = root() / path.lstrip("/")
            script.write_text(ENTRY.format(venv=VENV))
            script.chmod(0o755)
        r = run113(f"{VENV}/bin/python3", "-c", "import cpuhot.cli, cpuhot.qmp.server", capture_output=True,
                   text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"cpuhot does not run in the chroot: {r.stderr.strip()[-500:]}")

    def before_restore(self) -> None:
        self._stop_leftover_emulators()

    def after_restore(self) -> None:
        venv = root() / VENV.lstrip("/")
        if venv.exists():
            shutil.rmtree(venv)

    def _stop_leftover_emulators(self) -> None:
        """cpuhot processes of this harness's venv that outlived the daemon (e.g. a capability probe
        of a daemon that crashed mid-probe): ended by their PIDs."""
        prefix = f"{VENV}/bin/".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(prefix) for a in argv[:2]):
                pid = int(entry.name)
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                for _ in range(50):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
                else:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
