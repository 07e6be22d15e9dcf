"""``query-migrate``'s ``ram`` statistics of a paused, guest-less VM, computed as QEMU does.

With no guest running, what QEMU's RAM migration (``migration/ram.c``) sends is fixed by
the machine: its RAM blocks (the guest RAM of ``-m`` plus the firmware and ROM blocks of the
machine type, ``info ramblock``) and which of their pages are not zero (the firmware images
and the ACPI tables, whose size grows with ``maxcpus``).  The release's table
``data/<release>/migration-ram.json`` (written by ``tools/record_migration_ram.py`` from the
real QEMU) holds per machine family the block list and the non-zero page count by
``maxcpus``, and the release's key order.  From it:

* ``total`` = the blocks' used lengths; ``normal`` = non-zero pages, ``duplicate`` = the rest
  (zero pages), ``normal-bytes`` = ``normal`` * ``page-size``;
* RAM bytes = 9 per zero page (the 8-byte page header of ``save_page_header`` and the fill
  byte), 8 + 4096 per normal page, 1 + len(name) per block (the first page of a block names
  it), 8 for the end-of-section marker of the one pass a paused VM's RAM takes;
* ``transferred``: the RAM bytes (5.2, 7.2, where ``downtime-bytes`` equals it), or (10.0,
  which counts the whole stream) the RAM bytes plus the device state: a base per machine
  family and a size per vCPU (the recorded ``stream``), plus 14 bytes with ``return-path``
  (the OPEN_RETURN_PATH and PING commands);
* ``remaining``, ``skipped``, the postcopy, multifd, precopy and zero-copy counters: 0;
  ``dirty-sync-count``: 2 (the bitmap syncs of setup and of completion).

QEMU's rates (``mbps``, ``pages-per-second``) and durations are not modelled beyond a plausible
value; a VM whose RAM takes more than one pass (timing: large ``-m``) adds 8 bytes per extra
pass in QEMU, which cpuhot does not.  A family the table lacks (``none``) reports the guest RAM
alone, all zero (inferred).
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from .release import data_text

if TYPE_CHECKING:
    from .vm import VirtualMachine

PAGE_SIZE = 4096
#: save_page_header (be64 offset|flags) + the fill byte of a zero page
ZERO_PAGE_BYTES = 8 + 1
#: save_page_header + the page
NORMAL_PAGE_BYTES = 8 + PAGE_SIZE
#: RAM_SAVE_FLAG_EOS ending the RAM section of a pass
EOS_BYTES = 8
#: QEMU_VM_COMMAND OPEN_RETURN_PATH (1 + 2 + 2) and PING (1 + 2 + 2 + 4) with return-path (10.0's count)
RETURN_PATH_BYTES = 14


@cache
def _table(release: str) -> dict[str, Any]:
    return cast("dict[str, Any]", json.loads(data_text(release, "migration-ram.json")))


def blocks(release: str, family: str, ram_size: int) -> list[tuple[str, int]]:
    """The migrated RAM blocks (name, used length) of a machine of ``family``, in QEMU's order."""
    entry = _table(release)["machines"].get(family)
    if entry is None:
        return [("ram", ram_size)]
    return [(name, ram_size if size is None else size) for name, size in entry["blocks"]]


def normal_pages(release: str, family: str, max_cpus: int) -> int:
    """Non-zero pages of a guest-less machine (firmware, ROMs, ACPI tables)."""
    entry = _table(release)["machines"].get(family)
    if entry is None:
        return 0
    pages = 0
    for from_cpus, count in entry["normal"]:
        if max_cpus >= from_cpus:
            pages = count
    return pages


def ram_bytes(release: str, family: str, ram_size: int, max_cpus: int) -> int:
    """What the RAM section of the stream carries: pages, block names and one end marker."""
    bl = blocks(release, family, ram_size)
    pages = sum(size for _, size in bl) // PAGE_SIZE
    normal = normal_pages(release, family, max_cpus)
    return ((pages - normal) * ZERO_PAGE_BYTES + normal * NORMAL_PAGE_BYTES
            + sum(1 + len(name.encode()) for name, _ in bl) + EOS_BYTES)


def completed(vm: VirtualMachine, *, return_path: bool, total_time: int) -> dict[str, Any]:
    """``query-migrate``'s ``ram`` of ``vm``'s completed outgoing migration, in the release's order."""
    release = vm.release_info.name
    table = _table(release)
    family = vm.machine.family
    bl = blocks(release, family, vm.ram_size)
    total = sum(size for _, size in bl)
    normal = normal_pages(release, family, vm.topology.max_cpus)
    ram = ram_bytes(release, family, vm.ram_size, vm.topology.max_cpus)
    transferred = ram
    stream = table["machines"].get(family, {}).get("stream")
    if stream is not None:
        transferred += stream["base"] + stream["per_cpu"] * len(vm.vcpus)
        transferred += RETURN_PATH_BYTES if return_path else 0
    seconds = max(total_time, 1) / 1000
    values = {
        "total": total, "postcopy-requests": 0, "dirty-sync-count": 2, "multifd-bytes": 0,
        "pages-per-second": 0, "downtime-bytes": ram, "page-size": PAGE_SIZE, "remaining": 0,
        "postcopy-bytes": 0, "mbps": transferred * 8 / seconds / 1e6, "transferred": transferred,
        "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 0, "duplicate": total // PAGE_SIZE - normal,
        "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": normal * PAGE_SIZE, "normal": normal,
    }
    return {key: values[key] for key in table["keys"]}
