#!/usr/bin/env python3
"""Real QEMUs of three Debian releases on one machine: 5.2 (Debian 11), 7.2 (12) and 10.0 (13).

Usage (as root)::

    python tools/qemus.py ensure 5.2 7.2 10.0            # build/refresh what is missing, idempotent
    python tools/qemus.py ensure 10.0 --with libvirt      # extra package groups (see GROUPS)
    python tools/qemus.py status                          # what is there
    python tools/qemus.py run 10.0 -- qemu-system-x86_64 --version
    python tools/qemus.py remove 5.2                      # delete a chroot (refuses while mounted)

QEMU 7.2 is the host's own (Debian 12): ``ensure 7.2`` installs it with apt-get.  5.2 and 10.0
live in minimal chroots (``debootstrap --variant=minbase``) under :data:`CACHE`
(``/var/cache/cpuhot/qemus``; override with ``CPUHOT_QEMUS_CACHE``), outside the repository and
outside /tmp.

A program in a chroot is started through :func:`launcher`: ``unshare --mount`` gives it a private
mount namespace in which /tmp is bind-mounted into the chroot (so socket paths are the same
inside and out) and /proc, /sys and /dev are mounted for it.  Those mounts exist only in that
namespace and vanish with the process: nothing is ever left mounted on the host, so a chroot can
be deleted at any time.  ``unshare`` and ``chroot`` exec in place, so the PID a caller gets from
``Popen`` is QEMU's own, and QEMU's stderr prefix is its own basename.

The test-suite imports this module (``tests/qemu_versions.py``); it never builds anything by
itself except under ``CI=true`` (where a missing QEMU is a failure, not a skip).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("CPUHOT_QEMUS_CACHE", "/var/cache/cpuhot/qemus"))


@dataclass(frozen=True)
class Release:
    version: str          #: QEMU's major.minor
    codename: str         #: Debian release that ships it
    host: bool            #: the host's own QEMU (no chroot)
    #: package groups: name -> Debian packages
    groups: dict[str, tuple[str, ...]]


_QEMU_BOOKWORM = ("qemu-system-x86", "qemu-system-ppc", "qemu-system-misc")
RELEASES: dict[str, Release] = {
    "5.2": Release("5.2", "bullseye", False, {
        "qemu": ("qemu-system-x86", "qemu-system-ppc", "qemu-system-misc"),   # misc has s390x
        "ga": ("qemu-guest-agent",),
    }),
    "7.2": Release("7.2", "bookworm", True, {
        "qemu": _QEMU_BOOKWORM,
        "ga": ("qemu-guest-agent",),
        "libvirt": ("libvirt-daemon-driver-qemu", "libvirt-clients", "libvirt-daemon"),
    }),
    "10.0": Release("10.0", "trixie", False, {
        "qemu": ("qemu-system-x86", "qemu-system-ppc", "qemu-system-s390x"),
        "ga": ("qemu-guest-agent",),
        "libvirt": ("libvirt-daemon-driver-qemu", "libvirt-clients", "libvirt-daemon"),
        "python": ("python3", "python3-pydantic", "python3-venv"),
    }),
}
ARCH_BINARIES = {"x86_64": "qemu-system-x86_64", "ppc64": "qemu-system-ppc64", "s390x": "qemu-system-s390x"}


class QemusError(Exception):
    pass


def _say(msg: str) -> None:
    who = threading.current_thread().name
    tag = f"[{who}] " if who.startswith("qemu-") else ""
    print(f"qemus: {tag}{msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Hold ``CACHE/.lock-<name>`` (other processes) and its thread lock (other threads)."""
    with _THREAD_LOCKS.setdefault(name, threading.Lock()):
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / f".lock-{name}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


#: one per lock name; dict.setdefault is atomic under the GIL
_THREAD_LOCKS: dict[str, threading.Lock] = {}


def chroot_dir(version: str) -> Path:
    return CACHE / RELEASES[version].codename


def _stamp(version: str) -> Path:
    return chroot_dir(version) / ".cpuhot-qemus.json"


def _read_stamp(version: str) -> dict:
    try:
        return json.loads(_stamp(version).read_text())
    except (OSError, ValueError):
        return {}


def root(version: str) -> Path | None:
    """The root file system a release's programs run in (None: the host's)."""
    return None if RELEASES[version].host else chroot_dir(version)


def _wrap(version: str, argv: list[str], binds: tuple[str, ...] = ()) -> list[str]:
    """argv of a program in the release's file system (the host's for 7.2).

    ``binds``: host directories to make visible at the same path inside the root (e.g. the
    project tree, so a program there can import cpuhot); bind-mounted, like /tmp, only in the
    program's private mount namespace.  A missing mount point is created in the chroot."""
    d = root(version)
    if d is None:
        return list(argv)
    extra = "".join(f'mkdir -p "$d"{shlex.quote(os.path.abspath(b))} && mount --bind {shlex.quote(os.path.abspath(b))} '
                    f'"$d"{shlex.quote(os.path.abspath(b))} && ' for b in binds)
    script = ('d="$0"; mount --make-rprivate / && mount --bind /tmp "$d/tmp" && '
              'mount -t proc proc "$d/proc" && mount --rbind /sys "$d/sys" && mount --rbind /dev "$d/dev" && '
              + extra + 'exec chroot "$d" "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(d), *argv]


def launcher(version: str, arch: str = "x86_64") -> list[str]:
    """argv prefix that runs ``qemu-system-ARCH`` of *version* (append QEMU's own arguments)."""
    return _wrap(version, [f"/usr/bin/{ARCH_BINARIES[arch]}"])


def command(version: str, *argv: str, binds: tuple[str, ...] = ()) -> list[str]:
    """argv that runs any program of *version*'s file system (e.g. libvirtd of Debian 13);
    ``binds``: host directories seen at the same path inside (see :func:`_wrap`)."""
    return _wrap(version, list(argv), tuple(binds))


def missing(version: str, arch: str = "x86_64") -> str | None:
    """Why QEMU *version* for *arch* cannot run here, or None when it can."""
    if version not in RELEASES:
        return f"unknown QEMU version {version} (known: {', '.join(RELEASES)})"
    rel = RELEASES[version]
    if rel.host:
        exe = shutil.which(ARCH_BINARIES[arch])
        if exe is None:
            return f"{ARCH_BINARIES[arch]} is not installed (python tools/qemus.py ensure {version})"
        got = installed_version(version, arch)
        if got is None or not got.startswith(version + "."):
            return f"the host's {ARCH_BINARIES[arch]} is QEMU {got}, not {version}"
        return None
    if os.geteuid() != 0:
        return "not root: chroot QEMUs need root"
    if not (chroot_dir(version) / "usr/bin" / ARCH_BINARIES[arch]).exists():
        return f"no QEMU {version} chroot with {ARCH_BINARIES[arch]} (python tools/qemus.py ensure {version})"
    return None


def installed_version(version: str, arch: str = "x86_64") -> str | None:
    """``QEMU emulator version X`` of the binary, e.g. ``10.0.7 (Debian 1:10.0.7+ds-0+deb13u1)``."""
    try:
        out = subprocess.run(launcher(version, arch) + ["--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.splitlines()[0] if out else ""
    prefix = "QEMU emulator version "
    return first[len(prefix):].strip() if first.startswith(prefix) else None


def _run(argv: list[str], what: str, timeout: float = 900) -> None:
    _say(what)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0:
        raise QemusError(f"{what} failed (exit {r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
    _say(f"  done in {time.monotonic() - t0:.0f} s")


def _apt_install(version: str, packages: list[str]) -> None:
    d = root(version)
    if d is None:
        base = ["sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends " + " ".join(packages)]
        with _locked("host-apt"):           # the host's dpkg takes one apt-get at a time
            _run(base, f"apt-get install {' '.join(packages)} (host, QEMU {version})")
        return
    # apt inside the chroot: policy-rc.d keeps maintainer scripts from starting daemons
    prc = d / "usr/sbin/policy-rc.d"
    prc.write_text("#!/bin/sh\nexit 101\n")
    prc.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", d / "etc/resolv.conf")
    cmd = "apt-get update -qq && apt-get install -y -qq --no-install-recommends " + " ".join(packages)
    _run(command(version, "sh", "-c", cmd), f"apt-get install {' '.join(packages)} in {d}")


def ensure(version: str, groups: tuple[str, ...] = ("qemu",)) -> None:
    """Make QEMU *version* (and the package *groups*) runnable; do nothing that is done already."""
    if version not in RELEASES:
        raise QemusError(f"unknown QEMU version {version} (known: {', '.join(RELEASES)})")
    rel = RELEASES[version]
    for g in groups:
        if g not in rel.groups:
            raise QemusError(f"QEMU {version} ({rel.codename}) has no package group {g!r} (has: {', '.join(rel.groups)})")
    if os.geteuid() != 0:
        raise QemusError("must run as root (debootstrap, chroot, apt-get)")
    with _locked(version):                  # one builder per release; releases build side by side
        wanted = [p for g in groups for p in rel.groups[g]]
        if rel.host:
            have = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *wanted],
                                  capture_output=True, text=True).stdout
            ok = {line.split()[0] for line in have.splitlines() if line.endswith("install ok installed")}
            todo = [p for p in wanted if p not in ok]
            if todo:
                _apt_install(version, todo)
            else:
                _say(f"QEMU {version} (host): {', '.join(groups)} already installed")
            return
        d = chroot_dir(version)
        stamp = _read_stamp(version)
        if not stamp.get("debootstrap"):
            if d.exists():
                _say(f"removing the incomplete chroot {d}")
                _remove_tree(d)
            with _locked("debootstrap-install"):
                if shutil.which("debootstrap") is None:
                    _apt_install("7.2", ["debootstrap"])
            _run(["debootstrap", "--variant=minbase", rel.codename, str(d)],
                 f"debootstrap --variant=minbase {rel.codename} {d}")
            stamp = {"debootstrap": rel.codename, "packages": []}
            _stamp(version).write_text(json.dumps(stamp))
        todo = [p for p in wanted if p not in stamp["packages"]]
        if todo:
            _apt_install(version, todo)
            stamp["packages"] = sorted(set(stamp["packages"]) | set(todo))
            _stamp(version).write_text(json.dumps(stamp))
        else:
            _say(f"QEMU {version} ({d}): {', '.join(groups)} already installed")


def ensure_all(wanted: dict[str, tuple[str, ...]]) -> None:
    """:func:`ensure` several releases at once, each in its own thread (a cold machine spends its
    time in downloads and dpkg, so two chroots build in about the time of one); raises the first
    failure once all have ended."""
    errors: list[BaseException] = []

    def build(version: str, groups: tuple[str, ...]) -> None:
        try:
            ensure(version, groups)
        except BaseException as exc:          # reported after the others finish
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(v, g), name=f"qemu-{v}") for v, g in wanted.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _mounted_under(d: Path) -> list[str]:
    prefix = str(d.resolve()) + "/"
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if (line.split()[1] + "/").startswith(prefix)]


def _remove_tree(d: Path) -> None:
    mounts = _mounted_under(d)
    if mounts:
        raise QemusError(f"refusing to delete {d}: still mounted there: {', '.join(mounts)}")
    shutil.rmtree(d)


def remove(version: str) -> None:
    if RELEASES[version].host:
        raise QemusError("7.2 is the host's QEMU; remove it with apt-get")
    d = chroot_dir(version)
    if d.exists():
        _remove_tree(d)
        _say(f"removed {d}")


def status() -> list[dict]:
    rows = []
    for v, rel in RELEASES.items():
        for arch in ARCH_BINARIES:
            why = missing(v, arch)
            rows.append({"version": v, "codename": rel.codename, "arch": arch,
                         "root": str(root(v) or "/"), "ok": why is None,
                         "qemu": installed_version(v, arch) if why is None else None, "why": why})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qemus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure", help="build or complete QEMU chroots (idempotent)")
    e.add_argument("versions", nargs="+", choices=list(RELEASES))
    e.add_argument("--with", dest="groups", action="append", default=[],
                   help="extra package group (ga, libvirt, python); repeatable")
    sub.add_parser("status", help="which QEMUs can run")
    r = sub.add_parser("run", help="run a program in a release's file system")
    r.add_argument("version", choices=list(RELEASES))
    r.add_argument("argv", nargs=argparse.REMAINDER)
    rm = sub.add_parser("remove", help="delete a chroot")
    rm.add_argument("version", choices=[v for v, r in RELEASES.items() if not r.host])
    ns = ap.parse_args(argv)
    try:
        if ns.cmd == "ensure":
            ensure_all({v: ("qemu", *[g for g in ns.groups if g in RELEASES[v].groups]) for v in ns.versions})
        elif ns.cmd == "status":
            for row in status():
                print(f"{row['version']:5} {row['arch']:7} {'ok ' if row['ok'] else '-- '} "
                      f"{row['qemu'] or row['why']}")
        elif ns.cmd == "run":
            args = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
            os.execvp("unshare" if root(ns.version) else args[0], command(ns.version, *args))
        elif ns.cmd == "remove":
            remove(ns.version)
    except QemusError as exc:
        print(f"qemus: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
