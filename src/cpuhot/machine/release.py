"""Which QEMU release the model is: its version and the data tables recorded from it.

Everything that differs between QEMU releases lives here, as data: a :class:`Release` per
version, with its tables (``query-machines``, ``query-cpu-definitions``, ...) under
``data/<release>/`` and its behavioural rules as fields.  The model asks its release; it never
compares version numbers itself.  A table a release does not have is QEMU 7.2's (the files
directly under ``data/``), so a new release starts as 7.2 and is made exact by recording it and
adding what the replay shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Release:
    """One QEMU release, as cpuhot models it."""

    #: "7.2": the key of :data:`RELEASES`, and the data subdirectory (``data/7.2`` falls back to ``data/``)
    name: str
    #: what the greeting and ``query-version`` say
    version: tuple[int, int, int]
    # -- behavioural rules; the default is QEMU 7.2's behaviour --------------------------------
    #: ``query-status`` still has ``singlestep`` (QEMU 8.1 dropped it)
    status_singlestep: bool = True
    #: an -smp member given as 0: a deprecation warning (7.2) or a refusal (9.0+)
    smp_zero_is_error: bool = False
    #: -smp keys beyond 7.2's (10.0 parses drawers, books and modules for every machine)
    smp_extra_keys: tuple[str, ...] = ()
    #: the refusal of an unsupported -smp level; ``{level}`` is e.g. ``dies``
    smp_unsupported_text: str = "{level} not supported by this machine's CPU topology"
    #: x86 has a module level between die and core (9.1+): -smp messages count ``modules (1)``,
    #: CPU names say ``module: 0``
    x86_modules: bool = False
    #: qemu64 with threads > 1 on x86: the AMD hyperthreading warning as one line (10.0) or two (7.2)
    amd_ht_warning_one_line: bool = False
    #: an unknown -machine type: ``unsupported machine type: "NAME"`` (10.0) or without the name (7.2)
    unknown_machine_named: bool = False
    #: printed (after ``warning: ``) for a machine type query-machines marks deprecated; None: nothing
    deprecated_machine_warning: str | None = None
    #: device_del of a QOM path that is not a device
    not_a_device_text: str = "{} is not a hotpluggable device"
    #: ppc64 CPU families with a ``*-spapr-cpu-core`` type (qom-list-types); None: 7.2's
    #: (:data:`cpuhot.machine.cpu_models.SPAPR_CORE_MODELS`)
    spapr_core_models: frozenset[str] | None = None
    #: TCG warns about pseries' default ``cap-sbbc=workaround`` (4.0+ machines on 7.2; never on 10.0)
    spapr_tcg_warns_sbbc: bool = True
    #: the source passes through the ``device`` state (a MIGRATION event) before the last pass (9.x+)
    migration_device_state: bool = False
    #: ``query-migrate``'s ``ram`` still has ``skipped`` (dropped in 9.1)
    migration_ram_skipped: bool = True
    #: TCG runs pseries with threads > 1 per core (SMT under TCG, QEMU 9.0+)
    spapr_tcg_smt: bool = False
    #: TCG emulates x2APIC, so -smp with APIC IDs >= 255 starts under TCG (QEMU 8.x+)
    tcg_x2apic: bool = False
    #: ``error-desc`` of a migration the target rejected over the return path (None: none reported)
    migration_rejected_error: str | None = None
    #: a source whose migration failed goes back to its run state before (10.0) instead of postmigrate
    migration_failure_restores_runstate: bool = False
    #: QMP device_add reads its JSON with typed visitors (qdev_device_add_from_qdict, from_json):
    #: a non-string driver is "missing", a string for an integer CPU property is a type error
    device_add_typed_json: bool = False
    #: the refusal of migrate-pause outside postcopy
    migrate_pause_refusal: str = "migrate-pause is currently only supported during postcopy-active state"


RELEASES: dict[str, Release] = {
    "5.2": Release("5.2", (5, 2, 0)),       # Debian 11; made exact in the multi-version work
    "7.2": Release("7.2", (7, 2, 22)),      # Debian 12
    "10.0": Release("10.0", (10, 0, 13),    # Debian 13, recorded in transcripts/qemu-10.0
                    status_singlestep=False, smp_zero_is_error=True,
                    smp_extra_keys=("drawers", "books", "modules"),
                    smp_unsupported_text="{level} > 1 not supported by this machine's CPU topology",
                    x86_modules=True, amd_ht_warning_one_line=True, unknown_machine_named=True,
                    deprecated_machine_warning="Machine type '{}' is deprecated: machines more than 3 years "
                                               "old are subject to deletion after 6 years",
                    not_a_device_text="{} is not a device",
                    spapr_core_models=frozenset({    # qom-list-types of QEMU 10.0.13
                        "970_v2.2", "970mp_v1.0", "970mp_v1.1", "power5p_v2.1", "power7_v2.3", "power7p_v2.1",
                        "power8_v2.0", "power8e_v2.1", "power8nvl_v1.0", "power9_v2.0", "power9_v2.2",
                        "power10_v2.0", "power11_v2.0"}),
                    spapr_tcg_warns_sbbc=False, migration_device_state=True, migration_ram_skipped=False,
                    spapr_tcg_smt=True, tcg_x2apic=True, migration_rejected_error="Sibling indicated error 1",
                    migration_failure_restores_runstate=True, device_add_typed_json=True,
                    migrate_pause_refusal="migrate-pause is currently only supported during postcopy-active "
                                          "or postcopy-recover state"),
}

DEFAULT_RELEASE = "7.2"


def get_release(name: str | Release | None) -> Release:
    if isinstance(name, Release):
        return name
    try:
        return RELEASES[name or DEFAULT_RELEASE]
    except KeyError:
        raise ValueError(f"unknown QEMU release '{name}' (known: {', '.join(RELEASES)})") from None


@cache
def data_text(release: str, filename: str) -> str:
    """A data table of ``release``: ``data/<release>/<filename>``, else QEMU 7.2's ``data/<filename>``."""
    base = resources.files("cpuhot.machine").joinpath("data")
    own = base.joinpath(release, filename)
    if own.is_file():
        return own.read_text()
    return base.joinpath(filename).read_text()
