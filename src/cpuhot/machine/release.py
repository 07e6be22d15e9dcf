"""Which QEMU release the model is: its version and the data tables recorded from it.

Everything that differs between QEMU releases lives here, as data: a :class:`Release` per
version, with its tables (``query-machines``, ``query-cpu-definitions``, ...) under
``data/<release>/`` and its behavioural rules as fields.  The model asks its release; it never
compares version numbers itself.  A table a release does not have is QEMU 7.2's (the files
directly under ``data/``), so a new release starts as 7.2 and is made exact by recording it and
adding what the replay shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    # -- behaviour (QEMU 7.2's by default; each is consulted in one place of the model) ---------
    #: ``-smp`` grammar, derivation and messages (:data:`cpuhot.machine.smp.SMP_PARSERS`):
    #: ``machine_parse_smp_config`` (6.1+) or ``smp_parse`` (<= 6.0: QemuOpts, sockets preferred)
    smp_parser: str = "machine_parse_smp_config"
    #: ``query-cpus-fast`` entries still carry the deprecated ``arch`` member (removed in 6.0)
    cpus_fast_arch: bool = False
    #: an unknown ``-machine`` type is reported with the option as location (``-machine nosuch: ...``)
    machine_error_location: bool = False
    #: commands whose events QEMU sends after the command's reply (the main loop acts on a request)
    events_after_reply: frozenset[str] = frozenset()
    #: pseries refuses a second unplug request of a PCI device still waiting for the guest
    #: ("PCI device unplug already in progress for device ID"; 5.2 accepts it silently)
    spapr_pci_unplug_once: bool = True
    #: ``device_del`` of ``""`` is DeviceNotFound (5.2 looks the empty name up in /machine/peripheral)
    empty_device_id_not_found: bool = False
    #: every ``-device`` option is parsed (duplicate ids refused) before any device is created
    device_opts_parsed_first: bool = False
    #: where x86 refuses APIC IDs of 255 and more under TCG: ``x86_cpus_init`` (7.2: "requires kernel
    #: irqchip and X2APIC API support") or ``pc_machine_done`` (5.2: boot CPUs fail to realize, then
    #: "requires Extended Interrupt Mode enabled")
    apic_id_limit_check: str = "x86_cpus_init"
    #: commands QEMU 7.2 no longer has that this release serves (see :data:`RELEASE_GATED_COMMANDS`)
    extra_commands: frozenset[str] = frozenset()
    #: how QMP output writes a double: ``%.17g`` (6.0+) or ``%f`` with trailing zeros cut (<= 5.2)
    json_double: str = "%.17g"
    #: sPAPR CPU core types that do not exist in this release (``power10_v2.0``: 6.0)
    spapr_cores_missing: frozenset[str] = frozenset()
    # -- fields of the QEMU 10.0 work; the defaults are QEMU 7.2's behaviour -----------------
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
    #: TCG runs pseries with threads > 1 per core (SMT under TCG, QEMU 9.0+)
    spapr_tcg_smt: bool = False
    #: TCG emulates x2APIC, so -smp with APIC IDs >= 255 starts under TCG (QEMU 8.x+)
    tcg_x2apic: bool = False
    #: ``error-desc`` of a migration the target rejected over the return path (None: none reported)
    migration_rejected_error: str | None = None
    #: a target waiting for its incoming migration reports ``status: setup`` (10.0; 7.2: no status)
    incoming_setup_status: bool = False
    #: a source whose migration failed goes back to its run state before (10.0) instead of postmigrate
    migration_failure_restores_runstate: bool = False
    #: QMP device_add reads its JSON with typed visitors (qdev_device_add_from_qdict, from_json):
    #: a non-string driver is "missing", a string for an integer CPU property is a type error
    device_add_typed_json: bool = False
    #: the refusal of migrate-pause outside postcopy
    migrate_pause_refusal: str = "migrate-pause is currently only supported during postcopy-active state"
    # -- fields appended by the s390x work (issue 12); the defaults are QEMU 7.2's behaviour --------
    #: how ``-smp`` is parsed and derived: "7.2" (machine_parse_smp_config of 7.2), "5.2" (vl.c's
    #: smp_parse, used by every board but pc), "10.0" (with drawers and books)
    smp_rules: str = "7.2"
    #: s390x refuses ``-smp threads>1`` (5.2 takes them and ignores them)
    s390x_threads_refused: bool = True
    #: s390x CPUs have socket-id/book-id/drawer-id (and entitlement/dedicated) properties
    s390x_topology: bool = False
    #: s390x refuses a CPU whose model differs from the boot CPU's ("Mixed CPU models"); these
    #: model names are one model under TCG (7.2, 10.0: ``max`` is ``qemu``; 5.2's ``max`` is more)
    s390x_same_models: tuple[tuple[str, ...], ...] = (("max", "qemu"),)
    #: s390x: what TCG says of a model newer than it can emulate (5.2), else the feature list
    s390x_too_new_text: str | None = None
    s390x_features_text: str = "Some features requested in the CPU model are not available in the configuration"
    #: device_add of a read-only property (``hotplugged``)
    readonly_property_text: str = "Property '{driver}.{key}' is not writable"
    #: device_add's property values go through the string input visitor (5.2, 10.0: a value that
    #: is no number "expects uint64"/"int64"), or the keyval one (7.2: "expects integer")
    string_input_visitor: bool = False
    #: device_add of an abstract type
    abstract_driver_text: str = "Parameter 'driver' expects a non-abstract device type"
    #: device_add checks the id's syntax (10.0 takes "bad id" over QMP)
    device_id_checked: bool = True
    #: the events of a guest panic without -no-shutdown (5.2 pauses first, then powers off)
    panic_poweroff_events: tuple[str, ...] = ("GUEST_PANICKED:poweroff", "SHUTDOWN")
    #: query-hotpluggable-cpus on a machine without CPU hotplug (-machine none)
    no_hotplug_text: str = "The feature 'query-hotpluggable-cpus' is not enabled"
    #: device_add with an id already in use
    duplicate_id_text: str = "Duplicate device ID '{id}'"
    #: the hint after an s390x CPU model refused at start-up (10.0)
    s390x_features_hint: str | None = None
    # -- fields of issue 14 (QEMU 10.0 gaps); the defaults are QEMU 7.2's behaviour ---------------
    #: the local APIC refuses an id >= 255 for a CPU without x2apic (QEMU 9.0+ apic_common_set_id,
    #: any accelerator); a boot CPU's refusal aborts QEMU, printed as "Unexpected error in" this
    #: place (None: no such check)
    x2apic_abort_location: str | None = None

    def reword(self, text: str) -> str:
        """An error text of QEMU 7.2 as this release words it (``data/<release>/error-texts.json``:
        ``[regex, replacement]`` pairs recorded from its QMP replies); 7.2's own texts unchanged."""
        for pattern, replacement in _error_texts(self.name):
            new, n = pattern.subn(replacement, text)
            if n:
                return new
        return text

    def int_error(self, name: str, ctype: str) -> str:
        """The text for a device property value that is not a number at all."""
        if self.string_input_visitor:
            return f"Parameter '{name}' expects {'uint64' if ctype.startswith('u') else 'int64'}"
        return f"Parameter '{name}' expects integer"

    def parse_int(self, name: str, text: str, ctype: str, parse: "Callable[[str, str, str], int]") -> int:
        """``parse`` (qdev.parse_int_property) with this release's wording for non-numbers."""
        try:
            return parse(name, text, ctype)
        except Exception as e:
            if str(getattr(e, "desc", "")).endswith("expects integer"):
                raise type(e)(self.int_error(name, ctype)) from None
            raise


RELEASES: dict[str, Release] = {
    # Debian 11; every field recorded from its real QEMU (transcripts/qemu-5.2)
    "5.2": Release("5.2", (5, 2, 0), smp_parser="smp_parse", cpus_fast_arch=True, machine_error_location=True,
                   events_after_reply=frozenset({"quit", "system_reset", "system_powerdown"}),
                   empty_device_id_not_found=True, device_opts_parsed_first=True, spapr_pci_unplug_once=False,
                   apic_id_limit_check="pc_machine_done", extra_commands=frozenset({"query-events"}),
                   json_double="%f",
                   spapr_cores_missing=frozenset({"power10_v2.0"}),
                   smp_rules="5.2", s390x_threads_refused=False,
                   s390x_same_models=(),
                   s390x_too_new_text="Selected CPU generation is too new. Maximum supported model in the "
                                      "configuration: 'z13.2'",
                   readonly_property_text="Insufficient permission to perform this operation",
                   string_input_visitor=True, abstract_driver_text="Parameter 'driver' expects non-abstract device type",
                   panic_poweroff_events=("GUEST_PANICKED:pause", "GUEST_PANICKED:poweroff", "STOP", "SHUTDOWN"),
                   duplicate_id_text="Duplicate ID '{id}' for device"),
    "7.2": Release("7.2", (7, 2, 22)),      # Debian 12
    "10.0": Release("10.0", (10, 0, 13),    # Debian 13, recorded in transcripts/qemu-10.0
                    status_singlestep=False, smp_zero_is_error=True,
                    smp_rules="10.0", s390x_topology=True,
                    s390x_features_text="Some features requested in the CPU model are not available in the current "
                                        "configuration",
                    s390x_features_hint="Consider a different accelerator, QEMU, or kernel version",
                    string_input_visitor=True, device_id_checked=False,
                    no_hotplug_text="machine does not support hot-plugging CPUs",
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
                    spapr_tcg_warns_sbbc=False, migration_device_state=True, incoming_setup_status=True,
                    spapr_tcg_smt=True, tcg_x2apic=True, migration_rejected_error="Sibling indicated error 1",
                    migration_failure_restores_runstate=True, device_add_typed_json=True,
                    x2apic_abort_location="apic_common_set_id() at hw/intc/apic_common.c:447",
                    migrate_pause_refusal="migrate-pause is currently only supported during postcopy-active "
                                          "or postcopy-recover state"),
}

DEFAULT_RELEASE = "7.2"

#: commands that exist only in the releases whose ``extra_commands`` name them (``query-events``:
#: removed in QEMU 6.0, its table is ``data/<release>/events.json``)
RELEASE_GATED_COMMANDS = frozenset({"query-events"})


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


@cache
def _error_texts(release: str) -> "tuple[tuple[re.Pattern[str], str], ...]":
    import json
    import re
    base = resources.files("cpuhot.machine").joinpath("data", release, "error-texts.json")
    if release == DEFAULT_RELEASE or not base.is_file():
        return ()
    return tuple((re.compile(p), r) for p, r in json.loads(base.read_text()))
