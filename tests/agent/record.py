#!/usr/bin/env python3
"""Record real qemu-ga replies (Debian's 7.2 on the host, 10.0 in the Debian 13 chroot) for replay.

Run as root: ``python tests/agent/record.py [7.2] [10.0]``.  qemu-ga runs ONLY in a private mount
namespace over a fake ``/sys/devices/system/cpu`` (a tmpfs holding cpu0..cpu3; cpu0 has no
``online`` file, as on real Linux, so it cannot go offline) and listens on a UNIX socket
(``--method unix-listen``).  The script refuses to start qemu-ga unless that tmpfs is mounted.
State-changing commands that could reach the machine (shutdown, time, users, suspend, exec,
files, fsfreeze) are blocked with ``-b``; only their "disabled" replies are recorded.  The
replies of what cpuhot does when those commands succeed are inferred from qemu-ga's sources.

Each transcript is ``{"qemu-ga": VERSION, "exchanges": [{"send": TEXT, "recv": [MSG...]}]}``;
``recv`` holds the parsed replies, with ``"\\u00ff"`` marking the 0xFF sentinel byte.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools"))

BLOCKED = ("guest-shutdown,guest-exec,guest-exec-status,guest-file-open,guest-set-time,guest-set-user-password,"
           "guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fsfreeze-thaw,guest-suspend-disk,"
           "guest-suspend-ram,guest-suspend-hybrid,guest-set-memory-blocks,guest-ssh-add-authorized-keys,"
           "guest-ssh-remove-authorized-keys,guest-fstrim,guest-network-get-interfaces")

FAKE_SYSFS = r"""set -e
mount -t tmpfs none /sys/devices/system/cpu
[ "$(stat -f -c %T /sys/devices/system/cpu)" = tmpfs ] || exit 99
for i in 0 1 2 3; do mkdir /sys/devices/system/cpu/cpu$i; done
for i in 1 2 3; do echo 1 > /sys/devices/system/cpu/cpu$i/online; done
echo 0-3 > /sys/devices/system/cpu/possible; echo 0-3 > /sys/devices/system/cpu/present
exec "$0" --method unix-listen --path "$1" -b "$2"
"""

#: what is sent, in order; every state change is to the fake sysfs only
SCRIPT = [
    '{"execute": "guest-sync", "arguments": {"id": 1234}}',
    '{"execute": "guest-sync-delimited", "arguments": {"id": 4321}}',
    '{"execute": "guest-ping"}',
    '{"execute": "guest-ping", "id": "abc"}',
    '{"execute": "guest-get-vcpus"}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 1, "online": false}]}}',
    '{"execute": "guest-get-vcpus"}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 2, "online": false}, '
    '{"logical-id": 7, "online": false}, {"logical-id": 3, "online": false}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 7, "online": true}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": false}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": true}, '
    '{"logical-id": 1, "online": true}, {"logical-id": 2, "online": true}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": []}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 1}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 1, "online": true, "can-offline": false}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": "1", "online": true}]}}',
    '{"execute": "guest-set-vcpus", "arguments": {}}',
    '{"execute": "guest-set-vcpus"}',
    '{"execute": "guest-get-vcpus"}',
    '{"execute": "guest-sync"}',
    '{"execute": "guest-sync", "arguments": {"id": "x"}}',
    '{"execute": "guest-sync", "arguments": {"id": 1, "extra": 2}}',
    '{"execute": "guest-no-such-command"}',
    '{"execute": "guest-shutdown"}',
    '{"execute": "guest-set-time"}',
    '{"execute": "guest-ping", "arguments": {"x": 1}}',
    '{"exec": "guest-ping"}',
    '[]',
    '{"execute": 1}',
    '{"execute": ]',
    '}',
    '{"execute": "guest-ping"}',
    '{"execute": "guest-get-time"}',
    '{"execute": "guest-get-host-name"}',
    '{"execute": "guest-get-osinfo"}',
    '{"execute": "guest-get-timezone"}',
    '{"execute": "guest-get-users"}',
    '{"execute": "guest-info"}',
]


def read_replies(sock: socket.socket, quiet: float = 0.4) -> list:
    """Everything that arrives until the line is quiet, split into messages (0xFF kept as a marker)."""
    data = b""
    sock.settimeout(quiet)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            if data:
                break
            continue
        if not chunk:
            break
        data += chunk
    out = []
    for part in data.replace(b"\xff", b"\n\xff\n").split(b"\n"):
        part = part.strip()
        if part == b"\xff":
            out.append("\u00ff")
        elif part:
            out.append(json.loads(part))
    return out


def record(version: str) -> dict:
    import qemus
    path = f"/tmp/cpuhot-qga-record-{os.getpid()}.sock"
    exe = "/usr/sbin/qemu-ga"
    inner = ["/bin/sh", "-c", FAKE_SYSFS, exe, path, BLOCKED]
    if version == "7.2":
        argv = ["unshare", "--mount", "--propagation", "private", *inner]
    else:
        argv = qemus.command(version, *inner)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if os.path.exists(path):
                break
            if proc.poll() is not None:
                raise SystemExit(f"qemu-ga {version} exited: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        exchanges = []
        for text in SCRIPT:
            sock.sendall(text.encode() + b"\n")
            exchanges.append({"send": text, "recv": read_replies(sock)})
        sock.close()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.path.exists(path):
            os.unlink(path)
    return {"qemu-ga": version, "blocked": BLOCKED.split(","), "exchanges": exchanges}


def main(argv: list[str]) -> int:
    for version in argv or ["7.2", "10.0"]:
        t = record(version)
        out = HERE / "transcripts" / f"qemu-ga-{version}.json"
        out.write_text(json.dumps(t, indent=1) + "\n")
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
