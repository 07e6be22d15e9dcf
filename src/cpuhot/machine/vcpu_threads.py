"""Real, parked OS threads for vCPUs, so a reported ``thread-id`` is a live TID.

libvirt calls ``sched_setaffinity`` on each vCPU's ``thread-id`` (``virsh vcpuinfo``,
``vcpupin``) and, with cgroups, moves it into a per-vCPU cgroup; a made-up number
fails.  With ``--vcpu-threads`` every vCPU gets a thread that blocks on an event
until its vCPU is unplugged; the thread is named ``CPU N/KVM`` as QEMU names
its vCPU threads with ``debug-threads=on``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_PR_SET_NAME = 15
_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:      # pragma: no cover - no libc (not Linux)
    _libc = None


class VcpuThreads:
    def __init__(self) -> None:
        self._threads: dict[int, tuple[threading.Thread, threading.Event]] = {}

    def start(self, cpu_index: int) -> int:
        """Start a parked thread for a vCPU; return its native thread id."""
        ready = threading.Event()
        stop = threading.Event()
        box: list[int] = []

        def park() -> None:
            if _libc is not None:
                _libc.prctl(_PR_SET_NAME, f"CPU {cpu_index}/KVM".encode()[:15], 0, 0, 0)
            box.append(threading.get_native_id())
            ready.set()
            stop.wait()

        t = threading.Thread(target=park, name=f"CPU {cpu_index}/KVM", daemon=True)
        t.start()
        ready.wait()
        tid = box[0]
        self._threads[tid] = (t, stop)
        return tid

    def stop(self, tid: int) -> None:
        entry = self._threads.pop(tid, None)
        if entry is not None:
            thread, stop = entry
            stop.set()
            thread.join(1.0)

    def stop_all(self) -> None:
        for tid in list(self._threads):
            self.stop(tid)

    def __len__(self) -> int:
        return len(self._threads)
