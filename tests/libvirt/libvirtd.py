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


def _inventory() -> set[Path]:
    found: set[Path] = set()
    for root in STATE_ROOTS:
        if root.exists():
            found.add(root)
            for dirpath, dirnames, filenames in os.walk(root):
                for n in dirnames + filenames:
                    found.add(Path(dirpath) / n)
    return found
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


class Libvirtd:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self._saved_conf: str | None = None
        self._had_conf = False
        self.log = workdir / "libvirtd.log"

    # -- system changes, all undone by restore() ---------------------------------------------
    def configure(self) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._before = _inventory()
        self._accounts = {}
        if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode != 0:
            self._accounts = {p: p.read_bytes() for p in ACCOUNT_FILES if p.exists()}
            subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=False, capture_output=True)
            subprocess.run(["useradd", "--system", "--no-create-home", "-g", "libvirt-qemu",
                            "-s", "/usr/sbin/nologin", "libvirt-qemu"], check=True, capture_output=True)
        self._had_conf = QEMU_CONF.exists()
        if self._had_conf:
            self._saved_conf = QEMU_CONF.read_text()
        QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
        QEMU_CONF.write_text(TEST_CONF)

    def restore(self) -> None:
        self.stop()
        for path, data in getattr(self, "_accounts", {}).items():
            path.write_bytes(data)
        if self._had_conf:
            QEMU_CONF.write_text(self._saved_conf or "")
        elif QEMU_CONF.exists():
            QEMU_CONF.unlink()
        # remove what the daemon created (deepest first), keep everything that was there before
        for path in sorted(_inventory() - getattr(self, "_before", set()), key=lambda p: len(p.parts), reverse=True):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
            except FileNotFoundError:
                pass
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()
            self._lock = None

    def forget_capabilities(self, emulators: list[str]) -> None:
        """Drop libvirt's cached probes of these binaries (the cache is keyed by a hash of the path)."""
        import hashlib
        for path in emulators:
            f = CAPS_CACHE / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest() + ".xml")
            if f.exists():
                f.unlink()

    # -- the daemon ------------------------------------------------------------------------
    def start(self) -> None:
        if SOCKET.exists() and self.proc is None:
            # another libvirtd already runs here; refuse to interfere with it
            r = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=10)
            if r.returncode == 0:
                raise RuntimeError("a libvirtd is already running on this machine")
        env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"1:file:{self.log}", LIBVIRT_LOG_FILTERS="1:qemu 1:libvirt")
        self.proc = subprocess.Popen(["libvirtd"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                r = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True,
                                   timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited with {self.proc.returncode}: {self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"libvirtd did not come up: {self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
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


def virsh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
    return r
