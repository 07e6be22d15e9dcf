"""Run a real libvirtd (Debian's libvirt 9.0) against cpuhot, and put the system back afterwards.

libvirtd runs directly (no systemd) as root with a test qemu.conf: domains run as root, no
security driver, no cgroups, no namespaces.  Everything this module changes on the system is
recorded and restored: /etc/libvirt/qemu.conf (restored or removed), the capabilities cache
entries of cpuhot's binaries, and the daemon itself (stopped).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PACKAGES = ["libvirt-daemon-driver-qemu", "libvirt-clients", "libvirt-daemon"]
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
#: account files touched when the libvirt-qemu user must be created (libvirt 9.0 resolves it at
#: start-up even when qemu.conf says root); saved byte for byte and put back afterwards
ACCOUNT_FILES = [Path("/etc/passwd"), Path("/etc/group"), Path("/etc/shadow"), Path("/etc/gshadow")]
SOCKET = Path("/run/libvirt/libvirt-sock")
CAPS_CACHE = Path("/var/cache/libvirt/qemu/capabilities")
#: where libvirtd leaves state; whatever the test run adds under them is removed again
#: held from configure() to restore(): one libvirt test run at a time on this machine
LOCK = Path("/run/lock/cpuhot-libvirt-tests.lock")
#: the first ``virsh version`` after a start waits for libvirtd to probe every qemu-system-* it
#: finds (about 15 s on a machine where libvirt never probed anything; more on a loaded one)
PROBE_TIMEOUT = 240.0
STATE_ROOTS = [Path("/etc/libvirt"), Path("/var/lib/libvirt"), Path("/var/cache/libvirt"),
               Path("/var/log/libvirt"), Path("/run/libvirt")]


TEST_CONF = """# written by cpuhot's libvirt end-to-end test; restored afterwards
user = "root"
group = "root"
swtpm_user = "root"
swtpm_group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""


def unavailable(reason: str) -> None:
    """libvirt cannot run here: skip loudly, but fail under CI=true (.ci/run installs it, so a green
    CI must never hide a libvirt that was not there)."""
    import pytest
    msg = f"!!! LIBVIRT END-TO-END TEST SKIPPED: {reason} !!!"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (CI=true: .ci/run must have installed it)")
    pytest.skip(msg)


def ensure_installed() -> str | None:
    """Install libvirt from Debian's packages when missing; return a reason if impossible."""
    if shutil.which("libvirtd") and shutil.which("virsh"):
        return None
    if os.geteuid() != 0:
        return "not root: cannot install libvirt or run libvirtd in system mode"
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        r = subprocess.run(["sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                            + " ".join(PACKAGES)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not shutil.which("libvirtd"):
        return f"apt-get install {' '.join(PACKAGES)} failed: {r.stderr.strip()[-300:]}"
    return None


class Daemon:
    """One libvirtd of a test run and what the run changes around it; :meth:`restore` undoes it all.

    :meth:`configure` takes the daemon's machine-wide lock (one test run at a time), notes what
    exists under :meth:`state_roots` and saves the :meth:`config_files` it then rewrites;
    :meth:`restore` stops the daemon, puts the files back byte for byte (or removes them), removes
    whatever appeared under the state roots, and releases the lock.  Subclasses say where the
    daemon lives (:meth:`command`, :meth:`version`) and add their own set-up (:meth:`prepare`,
    :meth:`before_restore`, :meth:`after_restore`).
    """

    #: shown in messages
    label = "libvirtd"
    lock_path = LOCK
    probe_timeout = PROBE_TIMEOUT
    stop_timeout = 20.0
    log_name = "libvirtd.log"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log = workdir / self.log_name
        self._saved: dict[Path, bytes | None] = {}
        self._before: set[Path] = set()
        self._lock = None

    # -- what a subclass says ------------------------------------------------------------------
    def state_roots(self) -> list[Path]:
        raise NotImplementedError

    def config_files(self) -> dict[Path, str]:
        """The files rewritten for the run, and their test contents."""
        raise NotImplementedError

    def socket(self) -> Path:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def version(self, timeout: float) -> subprocess.CompletedProcess:
        """``virsh version`` against this daemon (check=False)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """More set-up after the config files are written."""

    def before_restore(self) -> None:
        """More clean-up once the daemon is stopped, before the files are put back."""

    def after_restore(self) -> None:
        """More clean-up after the state roots are back as they were."""

    # -- system changes, all undone by restore() ---------------------------------------------
    def _inventory(self) -> set[Path]:
        found: set[Path] = set()
        for root in self.state_roots():
            if root.exists():
                found.add(root)
                for dirpath, dirnames, filenames in os.walk(root):
                    for n in dirnames + filenames:
                        found.add(Path(dirpath) / n)
        return found

    def configure(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.lock_path, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._before = self._inventory()
        for path, text in self.config_files().items():
            self._saved[path] = path.read_bytes() if path.exists() else None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.prepare()

    def restore(self) -> None:
        self.stop()
        self.before_restore()
        for path, data in self._saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        self._saved.clear()
        # remove what the daemon created (deepest first), keep everything that was there before
        for path in sorted(self._inventory() - self._before, key=lambda p: len(p.parts), reverse=True):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
            except FileNotFoundError:
                pass
        self.after_restore()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the daemon ------------------------------------------------------------------------
    def start(self) -> None:
        if self.socket().exists() and self.proc is None:
            # another daemon already answers there; refuse to interfere with it
            if self.version(30).returncode == 0:
                raise RuntimeError(f"a {self.label} is already running on this machine")
        env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"1:file:{self.log}", LIBVIRT_LOG_FILTERS="1:qemu 1:libvirt")
        self.proc = subprocess.Popen(self.command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.probe_timeout
        while time.monotonic() < deadline:
            try:
                r = self.version(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not come up: {self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


class Libvirtd(Daemon):
    """The host's libvirtd (Debian 12's libvirt 9.0), run as root with :data:`TEST_CONF`."""

    def state_roots(self) -> list[Path]:
        return STATE_ROOTS

    def config_files(self) -> dict[Path, str]:
        return {QEMU_CONF: TEST_CONF}

    def socket(self) -> Path:
        return SOCKET

    def command(self) -> list[str]:
        return ["libvirtd"]

    def version(self, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=timeout)

    def prepare(self) -> None:
        # libvirt 9.0 resolves the libvirt-qemu user at start-up even when qemu.conf says root
        self._accounts: dict[Path, bytes] = {}
        if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode != 0:
            self._accounts = {p: p.read_bytes() for p in ACCOUNT_FILES if p.exists()}
            subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=False, capture_output=True)
            subprocess.run(["useradd", "--system", "--no-create-home", "-g", "libvirt-qemu",
                            "-s", "/usr/sbin/nologin", "libvirt-qemu"], check=True, capture_output=True)

    def before_restore(self) -> None:
        for path, data in getattr(self, "_accounts", {}).items():
            path.write_bytes(data)

    def forget_capabilities(self, emulators: list[str]) -> None:
        """Drop libvirt's cached probes of these binaries (the cache is keyed by a hash of the path)."""
        import hashlib
        for path in emulators:
            f = CAPS_CACHE / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest() + ".xml")
            if f.exists():
                f.unlink()


def virsh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
    return r
