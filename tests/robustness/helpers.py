"""Test helpers: raw QMP clients, a cpuhot server on a thread with chosen limits, a live QEMU."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from cpuhot.cli import prepare

SENTINEL = b'{"execute": "query-status", "id": "sentinel"}'


class Client:
    """A raw, blocking QMP client: bytes in, lines out, with timeouts everywhere."""

    def __init__(self, path: str, *, greet: bool = True, negotiate: bool = True, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.events: list[dict] = []
        self.greeting = None
        if greet:
            self.greeting = json.loads(self.line())
            if negotiate:
                assert self.call({"execute": "qmp_capabilities"}) == {"return": {}}

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> bool:
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self, timeout: float | None = None) -> bytes | None:
        """The next line (without \\r\\n), None on timeout or EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            if self.eof or time.monotonic() >= deadline:
                return None
            self._fill(deadline - time.monotonic())
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.endswith(b"\r"), line
        return line[:-1]

    def lines_until_quiet(self, quiet: float = 0.2) -> list[bytes]:
        out = []
        while True:
            line = self.line(quiet)
            if line is None:
                return out
            out.append(line)

    def reply(self, timeout: float | None = None) -> dict:
        """The next reply (events are collected in ``self.events``)."""
        while True:
            line = self.line(timeout)
            if line is None:
                raise TimeoutError(f"no reply (eof={self.eof})")
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def call(self, msg: dict, timeout: float | None = None) -> dict:
        self.send(json.dumps(msg).encode())
        return self.reply(timeout)

    def ok(self, execute: str, **arguments):
        msg = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        reply = self.call(msg)
        assert "return" in reply, (msg, reply)
        return reply["return"]

    def at_eof(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.buf = b""
            self._fill(deadline - time.monotonic())
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ServerThread:
    """``cpuhot serve ARGV`` in-process, on a thread of its own, with QMPServer keyword arguments."""

    def __init__(self, *argv: str, **server_kwargs):
        from cpuhot.qmp.server import Endpoint, QMPServer
        self.dir = tempfile.mkdtemp(prefix="cpuhot-rob-")
        self.path = os.path.join(self.dir, "qmp.sock")
        prepared = prepare(list(argv), prog="cpuhot", default_endpoint=False)
        assert prepared.exit_code is None, prepared.stderr
        self.monitor = prepared.monitor
        self.vm = prepared.monitor.vm
        self.stderr: list = []
        ready = threading.Event()
        self.error = None

        async def main():
            self.loop = asyncio.get_running_loop()
            self.server = QMPServer(self.monitor, stderr_sink=self.stderr.extend, **server_kwargs)
            try:
                await self.server.listen(Endpoint("unix", path=self.path))
            except BaseException as e:
                self.error = e
                ready.set()
                return
            ready.set()
            await self.server.serve_until_stopped()

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        if self.error:
            raise self.error

    def client(self, **kw) -> Client:
        return Client(self.path, **kw)

    def call_soon(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and return its result (for peeking at state)."""
        done = threading.Event()
        box = {}

        def run():
            try:
                box["value"] = fn(*args)
            except BaseException as e:
                box["error"] = e
            done.set()
        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_stop)
            self.thread.join(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Qemu:
    """A real ``qemu-system-*`` with a QMP socket (the caller skips when it is not installed)."""

    def __init__(self, *argv: str, binary: str = "qemu-system-x86_64"):
        self.dir = tempfile.mkdtemp(prefix="cpuhot-rob-qemu-")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.proc = subprocess.Popen([binary, "-nodefaults", "-display", "none", *argv,
                                      "-qmp", f"unix:{self.path},server=on,wait=off"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"QEMU did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.005)

    def client(self, **kw) -> Client:
        return Client(self.path, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def check_consistency(call) -> dict:
    """Assert that the VM's two views of its CPUs agree; ``call(execute)`` returns a command's result.

    query-hotpluggable-cpus and query-cpus-fast must name the same present CPUs (x86: the same
    qom-paths; sPAPR: every thread under a present core), with unique qom-paths and cpu-indexes,
    the vCPU count a slot announces, and the slot's properties."""
    status = call("query-status")
    assert status["status"] in ("running", "prelaunch", "paused", "postmigrate", "shutdown"), status
    for _ in range(100):     # two commands are no snapshot: a guest may eject a CPU between them
        slots = call("query-hotpluggable-cpus")
        cpus = call("query-cpus-fast")
        if call("query-hotpluggable-cpus") == slots:
            break
        time.sleep(0.005)
    present = {e["qom-path"]: e for e in slots if "qom-path" in e}
    assert len(present) == sum("qom-path" in e for e in slots), "two slots share a qom-path"
    props = [json.dumps(e["props"], sort_keys=True) for e in slots]
    assert len(set(props)) == len(props), "two slots share properties"
    indexes = [c["cpu-index"] for c in cpus]
    assert len(set(indexes)) == len(indexes), f"duplicate cpu-index: {sorted(indexes)}"
    paths = [c["qom-path"] for c in cpus]
    assert len(set(paths)) == len(paths), "two vCPUs share a qom-path"
    per_core: dict[str, int] = {}
    for c in cpus:
        core = c["qom-path"] if c["qom-path"] in present else c["qom-path"].rsplit("/thread[", 1)[0]
        assert core in present, f"vCPU {c['qom-path']} belongs to no present slot"
        per_core[core] = per_core.get(core, 0) + 1
        slot_props = {k: v for k, v in present[core]["props"].items()}
        if "/thread[" not in c["qom-path"]:
            assert c["props"] == slot_props, (c, present[core])
    for path, entry in present.items():
        assert per_core.get(path, 0) == entry["vcpus-count"], f"{path}: {per_core.get(path, 0)} vCPUs"
    return {"present": set(present), "cpus": len(cpus)}
