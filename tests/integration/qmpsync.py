"""A small blocking QMP client for tests that juggle several processes."""

import json
import socket
import time


class QMPError(Exception):
    def __init__(self, error):
        super().__init__(error["desc"])
        self.error_class = error["class"]
        self.desc = error["desc"]


class SyncQMP:
    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = json.loads(self.file.readline())
        self.events: list[dict] = []
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise EOFError("server closed the connection")
        return json.loads(line)

    def cmd(self, name: str, args: dict | None = None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode())
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QMPError(reply["error"])
            else:
                return reply["return"]

    def wait_event(self, name: str, pred=lambda d: True, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and pred(e.get("data", {})):
                    self.events.remove(e)
                    return e
            if time.monotonic() > deadline:
                raise TimeoutError(name)
            self.events.append(self._read())

    def close(self) -> None:
        self.file.close()
        self.sock.close()
