"""CPU models per target, from QEMU 7.2's ``query-cpu-definitions``.

x86 model names are exact (``qemu64``, ``Haswell``, ``max``) and the CPU type
is ``NAME-x86_64-cpu``.  ppc64 names are case-insensitive aliases
(``POWER9`` -> ``power9_v2.0-powerpc64-cpu``) and the pluggable unit on
pseries is the matching core type ``power9_v2.0-spapr-cpu-core``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from .errors import ConfigError
from .release import DEFAULT_RELEASE, data_text

#: ppc64 CPU families for which QEMU 7.2 has a ``*-spapr-cpu-core`` type.
SPAPR_CORE_MODELS = frozenset({
    "970_v2.2", "970mp_v1.0", "970mp_v1.1", "power5+_v2.1", "power7_v2.3", "power7+_v2.1",
    "power8_v2.0", "power8e_v2.1", "power8nvl_v1.0", "power9_v1.0", "power9_v2.0",
    "power10_v1.0", "power10_v2.0",
})


@dataclass(frozen=True)
class CpuModel:
    name: str          # what -cpu said, resolved (e.g. "power9_v2.0" or "Haswell")
    cpu_type: str      # QOM type of one vCPU thread
    core_type: str | None  # sPAPR core type (ppc64 only)

    @property
    def plug_type(self) -> str:
        """The type ``query-hotpluggable-cpus`` reports and ``device_add`` must name."""
        return self.core_type or self.cpu_type


@cache
def cpu_definitions(arch: str, release: str = DEFAULT_RELEASE) -> tuple[dict[str, Any], ...]:
    raw = json.loads(data_text(release, f"cpu-definitions-{arch}.json"))
    return tuple(raw)


def _x86_types(release: str = DEFAULT_RELEASE) -> dict[str, str]:
    return {d["name"]: d["typename"] for d in cpu_definitions("x86_64", release)}


def spapr_core_models(release: str = DEFAULT_RELEASE) -> frozenset[str]:
    """The CPU families that have an sPAPR core type in QEMU ``release``."""
    from .release import get_release
    rel = get_release(release)
    return (rel.spapr_core_models or SPAPR_CORE_MODELS) - rel.spapr_cores_missing


def resolve_cpu_model(arch: str, text: str | None, default_cpu_type: str | None,
                      release: str = DEFAULT_RELEASE) -> CpuModel:
    """Resolve ``-cpu MODEL[,features]`` (features are accepted and ignored) among ``release``'s models."""
    if text is None:
        if default_cpu_type is None:
            raise ConfigError("machine has no default CPU type")
        return model_from_type(arch, default_cpu_type, release)
    name = text.split(",", 1)[0]
    if arch == "s390x":
        # s390x model names are exact: qemu, max, z14, z14.2-base, ... (type NAME-s390x-cpu)
        for d in cpu_definitions(arch, release):
            if d["name"] == name:
                return CpuModel(name=name, cpu_type=d["typename"], core_type=None)
        raise ConfigError(f"unable to find CPU model '{name}'")
    if arch == "x86_64":
        types = _x86_types(release)
        if name not in types:
            raise ConfigError(f"unable to find CPU model '{name}'")
        return CpuModel(name=name, cpu_type=types[name], core_type=None)
    lname = name.lower()
    for d in cpu_definitions("ppc64", release):
        if d["name"].lower() == lname and d["typename"]:
            return model_from_type(arch, d["typename"], release)
    for d in cpu_definitions("ppc64", release):
        if d["name"].lower() == lname:
            return model_from_type(arch, f"{d['name']}-powerpc64-cpu", release)
    raise ConfigError(f"unable to find CPU model '{name}'")


def model_from_type(arch: str, cpu_type: str, release: str = DEFAULT_RELEASE) -> CpuModel:
    if arch == "s390x":
        return CpuModel(name=cpu_type.removesuffix("-s390x-cpu"), cpu_type=cpu_type, core_type=None)
    if arch == "x86_64":
        return CpuModel(name=cpu_type.removesuffix("-x86_64-cpu"), cpu_type=cpu_type, core_type=None)
    family = cpu_type.removesuffix("-powerpc64-cpu")
    core = f"{family}-spapr-cpu-core" if family in spapr_core_models(release) else None
    return CpuModel(name=family, cpu_type=cpu_type, core_type=core)


@cache
def _tcg_warning_table(release: str = DEFAULT_RELEASE) -> dict[str, list[str]]:
    return cast("dict[str, list[str]]", json.loads(data_text(release, "tcg-warnings-x86_64.json")))


@cache
def _tcg_feature_lines(release: str = DEFAULT_RELEASE) -> tuple[dict[str, str], dict[str, int]]:
    """feature name -> warning text, and the print rank of each CPUID word."""
    lines: dict[str, str] = {}
    rank: dict[str, int] = {}
    for texts in _tcg_warning_table(release).values():
        for text in texts:
            where = text.split(": ", 1)[1]             # CPUID.01H:ECX.x2apic [bit 21]
            word, rest = where.rsplit(".", 1)
            name = rest.split(" [", 1)[0]
            lines[name] = text
            rank.setdefault(word, len(rank))
    return lines, rank


@cache
def x2apic_models(release: str = DEFAULT_RELEASE) -> frozenset[str]:
    """The x86 CPU models that have x2apic once realized under TCG (``data/<release>/x2apic-x86_64.json``,
    recorded by tools/record_release_data.py --x2apic; only releases that check it have the table)."""
    try:
        return frozenset(json.loads(data_text(release, "x2apic-x86_64.json")))
    except FileNotFoundError:
        return frozenset()


@cache
def ht_warning_models(release: str = DEFAULT_RELEASE) -> frozenset[str]:
    """The x86 models whose first CPU warns "This family of AMD CPU doesn't support hyperthreading"
    with threads > 1 (an AMD model without topoext once realized; ``data/<release>/ht-warning-x86_64.json``,
    recorded by tools/record_release_data.py --ht).  A release without the table: qemu64 only (7.2's
    corpus records no other model with threads > 1)."""
    try:
        return frozenset(json.loads(data_text(release, "ht-warning-x86_64.json")))
    except FileNotFoundError:
        return frozenset({"qemu64"})


def tcg_feature_warnings(cpu_text: str, release: str = DEFAULT_RELEASE) -> list[str]:
    """What QEMU's TCG prints (one line per feature) when it realises an x86 CPU of ``-cpu cpu_text``."""
    name, *features = cpu_text.split(",")
    table = _tcg_warning_table(release)
    feature_lines, rank = _tcg_feature_lines(release)
    own = table.get(name, [])
    wanted = {t.split(": ", 1)[1].rsplit(".", 1)[1].split(" [", 1)[0]: t for t in own}
    for f in features:
        if f.startswith("+") or f.endswith("=on"):
            key = f[1:] if f.startswith("+") else f[:-3]
            if key in feature_lines:
                wanted[key] = feature_lines[key]
        elif f.startswith("-") or f.endswith("=off"):
            wanted.pop(f[1:] if f.startswith("-") else f[:-4], None)

    def order(text: str) -> tuple[int, int]:
        where = text.split(": ", 1)[1]
        word = where.rsplit(".", 1)[0]
        bit = int(where.rsplit("[bit ", 1)[1].rstrip("]"))
        return rank.get(word, 99), bit
    if list(wanted.values()) == own:
        return list(own)          # the model's own warnings, in the order recorded from QEMU
    # features added or removed: QEMU's FeatureWord order, as far as the warning texts show it
    # (10.0's texts name no CPUID subleaf, so CPUID.07H:EDX is two words there: approximate)
    return sorted(wanted.values(), key=order)


@cache
def known_plug_types(arch: str, release: str = DEFAULT_RELEASE) -> frozenset[str]:
    """Every CPU device type ``device_add`` recognises as a driver name on ``arch`` in ``release``."""
    if arch == "x86_64":
        return frozenset(t for t in _x86_types(release).values() if t)
    if arch == "s390x":
        return frozenset(d["typename"] for d in cpu_definitions(arch, release) if d["typename"])
    return frozenset(f"{f}-spapr-cpu-core" for f in spapr_core_models(release))
