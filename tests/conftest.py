import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from cpuhot.launch import terminate


class ServedVM:
    """A ``python -m cpuhot serve`` subprocess with its QMP socket."""

    def __init__(self, args, *, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="cpuhot-test-")
        self.path = os.path.join(self.dir, "qmp.sock")
        env = dict(os.environ, **(extra_env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cpuhot", "serve", "--validate-returns", *args, "-qmp", f"unix:{self.path},server=on,wait=off"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.first_line = self.proc.stdout.readline().strip()
        if not self.first_line:
            err = self.proc.stderr.read()
            raise RuntimeError(f"cpuhot did not start: rc={self.proc.wait()} stderr={err!r}")

    def stop(self):
        terminate(self.proc, 5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def serve_vm():
    """Factory: ``serve_vm("-machine", "pc", "-smp", "4,maxcpus=16")`` -> running :class:`ServedVM`."""
    started = []

    def start(*args, **kw):
        vm = ServedVM(list(args), **kw)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.stop()


def qemu_available(binary="qemu-system-x86_64"):
    return shutil.which(binary) is not None
