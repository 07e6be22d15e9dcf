"""QOM type information derived from cpuhot's registries (for qom-list-types & co.).

Only types cpuhot actually models are listed: accelerators, the machine types of
the target, its CPU types (and sPAPR core types), memory backends and the few
non-CPU devices it knows.  Property lists describe what ``device_add`` accepts.
"""

from __future__ import annotations

from typing import Required, TypedDict

from ..machine.cpu_models import SPAPR_CORE_MODELS, cpu_definitions
from ..machine.devices import PCI_DEVICES
from ..machine.errors import DeviceNotFound
from ..machine.machines import machine_table
from ..machine.spapr import CORE_PROPERTIES
from ..machine.x86 import X86_CPU_FLAGS, X86_CPU_PROPERTIES

_C_TO_QOM = {"int32_t": "int32", "uint32_t": "uint32", "int64_t": "int64"}


class ObjectTypeInfo(TypedDict, total=False):
    """QAPI's ``ObjectTypeInfo``, as ``qom-list-types`` returns it."""

    name: Required[str]
    parent: str
    abstract: bool


def _types(arch: str) -> list[ObjectTypeInfo]:
    out: list[ObjectTypeInfo] = [{"name": "accel", "parent": "object", "abstract": True},
           {"name": "tcg-accel", "parent": "accel"}, {"name": "kvm-accel", "parent": "accel"},
           {"name": "machine", "parent": "object", "abstract": True},
           {"name": "memory-backend", "parent": "object", "abstract": True},
           {"name": "memory-backend-ram", "parent": "memory-backend"},
           {"name": "memory-backend-file", "parent": "memory-backend"},
           {"name": "memory-backend-memfd", "parent": "memory-backend"},
           {"name": "device", "parent": "object", "abstract": True},
           {"name": "cpu", "parent": "device", "abstract": True}]
    out += [{"name": f"{m.name}-machine", "parent": "machine"} for m in machine_table(arch)]
    if arch == "x86_64":
        out.append({"name": "x86_64-cpu", "parent": "cpu", "abstract": True})
        out += [{"name": d["typename"], "parent": "x86_64-cpu"} for d in cpu_definitions(arch) if d["typename"]]
        # the PS/2 controller every pc/q35 board has (QEMU 7.2 lists it; libvirt 11 only keeps a
        # domain's implicit ps2 mouse and keyboard, e.g. of a migrated one, if the type exists)
        out.append({"name": "isa-device", "parent": "device", "abstract": True})
        out.append({"name": "i8042", "parent": "isa-device"})
    else:
        out.append({"name": "powerpc64-cpu", "parent": "cpu", "abstract": True})
        out += [{"name": d["typename"], "parent": "powerpc64-cpu"}
                for d in cpu_definitions(arch) if d["typename"]]
        out.append({"name": "cpu-core", "parent": "device", "abstract": True})
        out.append({"name": "spapr-cpu-core", "parent": "cpu-core", "abstract": True})
        out += [{"name": f"{f}-spapr-cpu-core", "parent": "spapr-cpu-core"} for f in sorted(SPAPR_CORE_MODELS)]
        out.append({"name": "spapr-pci-host-bridge", "parent": "device"})
    out += [{"name": d, "parent": "device"} for d in PCI_DEVICES]
    seen: set[str] = set()
    unique: list[ObjectTypeInfo] = []
    for t in out:
        if t["name"] not in seen:
            seen.add(t["name"])
            unique.append(t)
    return unique


def _ancestors(types: dict[str, ObjectTypeInfo], name: str) -> set[str]:
    out = {name}
    while name in types and "parent" in types[name]:
        name = types[name]["parent"]
        out.add(name)
    return out


def list_types(arch: str, implements: str | None, abstract: bool) -> list[ObjectTypeInfo]:
    types = _types(arch)
    by_name = {t["name"]: t for t in types}
    out: list[ObjectTypeInfo] = []
    for t in types:
        if t.get("abstract") and not abstract:
            continue
        if implements is not None and implements not in _ancestors(by_name, t["name"]):
            continue
        out.append(t)
    return out


def _props(arch: str, typename: str) -> list[dict[str, str]] | None:
    types = {t["name"]: t for t in _types(arch)}
    if typename not in types:
        return None
    lineage = _ancestors(types, typename)
    if "x86_64-cpu" in lineage:
        props = [{"name": k, "type": _C_TO_QOM[v]} for k, v in X86_CPU_PROPERTIES.items()]
        return props + [{"name": f, "type": "bool"} for f in X86_CPU_FLAGS]
    if "spapr-cpu-core" in lineage:
        return [{"name": k, "type": _C_TO_QOM[v]} for k, v in CORE_PROPERTIES.items()]
    if typename in PCI_DEVICES:
        return [{"name": p, "type": "str"} for p in PCI_DEVICES[typename]]
    if "memory-backend" in lineage:
        return [{"name": "size", "type": "int"}]
    return []


def device_properties(arch: str, typename: str) -> list[dict[str, str]]:
    props = _props(arch, typename)
    if props is None:
        raise DeviceNotFound(f"Device '{typename}' not found")
    return props


def object_properties(arch: str, typename: str) -> list[dict[str, str]]:
    """Never an error for a type cpuhot knows (libvirt 9.0 crashes on an error reply here)."""
    props = _props(arch, typename)
    if props is None:
        props = _abstract_machine_props(arch, typename)
    if props is None:
        raise DeviceNotFound(f"Class '{typename}' not found")
    return props


#: abstract machine classes QEMU answers qom-list-properties for (libvirt 11.3 asks for
#: generic-pc-machine and segfaults on an error reply): class -> (arch, families it is the base of)
ABSTRACT_MACHINES = {"generic-pc-machine": ("x86_64", ("pc", "q35"))}


def _abstract_machine_props(arch: str, typename: str) -> list[dict[str, str]] | None:
    """The properties an abstract machine class has: those all its recorded QEMU 7.2 families share
    (inferred: QEMU 7.2 lists them, with descriptions, for generic-pc-machine; links are left out as
    in the recorded families)."""
    from .._qemu_argv_data import MACHINE_PROPS
    owner = ABSTRACT_MACHINES.get(typename)
    if owner is None or owner[0] != arch:
        return None
    families = [MACHINE_PROPS[arch][f] for f in owner[1]]
    return [{"name": k, "type": v} for k, v in families[0].items() if all(k in f for f in families[1:])]
