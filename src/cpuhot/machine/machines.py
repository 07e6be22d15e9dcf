"""The machine-type table: QEMU 7.2's machine types, as its ``query-machines`` lists them.

The data files under ``data/`` are the replies of a real QEMU 7.2
(``query-machines``) for each target; cpuhot runs the families it simulates
(``pc-i440fx-*``, ``pc-q35-*``, ``pseries-*``) and lists the rest so that a
client probing the binary sees the same table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .errors import ConfigError
from .release import DEFAULT_RELEASE, data_text, get_release

ARCHES = ("x86_64", "ppc64", "s390x")


@dataclass(frozen=True)
class MachineType:
    name: str
    arch: str
    cpu_max: int
    hotpluggable_cpus: bool
    default_cpu_type: str | None
    alias: str | None
    is_default: bool
    deprecated: bool
    numa_mem_supported: bool
    default_ram_id: str | None
    #: whether the machine has ACPI; ``query-machines`` says so from QEMU 9.1 (None: not reported)
    acpi: bool | None = None

    @property
    def family(self) -> str:
        """``pc``, ``q35``, ``pseries`` or ``other`` (not simulated)."""
        if self.name.startswith("pc-i440fx-"):
            return "pc"
        if self.name.startswith("pc-q35-"):
            return "q35"
        if self.name.startswith("pseries-"):
            return "pseries"
        if self.name.startswith("s390-ccw-virtio"):
            return "s390-ccw-virtio"
        if self.name == "none":
            return "none"
        return "other"

    @property
    def version(self) -> tuple[int, ...]:
        """Machine version as a tuple (``pc-q35-4.0.1`` -> ``(4, 0, 1)``); unversioned -> ``()``."""
        m = re.search(r"-(\d+(?:\.\d+)+)(?:-.*)?$", self.name)
        return tuple(int(x) for x in m.group(1).split(".")) if m else ()

    @property
    def simulated(self) -> bool:
        return self.family in ("pc", "q35", "pseries", "s390-ccw-virtio")

    def to_qmp(self) -> dict[str, Any]:
        """The entry ``query-machines`` returns for this type."""
        d: dict[str, Any] = {"hotpluggable-cpus": self.hotpluggable_cpus, "name": self.name,
                   "numa-mem-supported": self.numa_mem_supported}
        if self.default_cpu_type is not None:
            d["default-cpu-type"] = self.default_cpu_type
        if self.acpi is not None:
            d["acpi"] = self.acpi
        if self.is_default:
            d["is-default"] = True
        d["cpu-max"] = self.cpu_max
        d["deprecated"] = self.deprecated
        if self.default_ram_id is not None:
            d["default-ram-id"] = self.default_ram_id
        if self.alias is not None:
            d["alias"] = self.alias
        return d




@cache
def machine_table(arch: str, release: str = DEFAULT_RELEASE) -> tuple[MachineType, ...]:
    """All machine types of ``arch`` in ``query-machines`` order of QEMU ``release``."""
    raw = json.loads(data_text(release, f"machines-{arch}.json"))
    return tuple(
        MachineType(
            name=m["name"], arch=arch, cpu_max=m["cpu-max"], hotpluggable_cpus=m["hotpluggable-cpus"],
            default_cpu_type=m.get("default-cpu-type"), alias=m.get("alias"),
            is_default=m.get("is-default", False), deprecated=m["deprecated"],
            numa_mem_supported=m["numa-mem-supported"], default_ram_id=m.get("default-ram-id"),
            acpi=m.get("acpi"),
        )
        for m in raw
    )


def find_machine(arch: str, name: str | None, release: str = DEFAULT_RELEASE) -> MachineType:
    """Resolve a ``-machine`` type name or alias; ``None`` gives the default type."""
    table = machine_table(arch, release)
    for m in table:
        if (name is None and m.is_default) or (name is not None and name in (m.name, m.alias)):
            return m
    text = f'unsupported machine type: "{name}"' if get_release(release).unknown_machine_named else \
        "unsupported machine type"
    raise ConfigError(text, hints=("Use -machine help to list supported machines",))


def arch_of_machine(name: str, release: str = DEFAULT_RELEASE) -> str | None:
    """The target a machine name belongs to (``pc``/``q35`` -> x86_64, ``pseries`` -> ppc64)."""
    for arch in ARCHES:
        for m in machine_table(arch, release):
            if name in (m.name, m.alias) and m.simulated:
                return arch
    for arch in ARCHES:
        for m in machine_table(arch, release):
            if name in (m.name, m.alias):
                return arch
    return None
