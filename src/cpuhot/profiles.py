"""Compatibility profiles: which QEMU a cpuhot instance pretends to be.

A profile fixes the version in the greeting and ``query-version``, the set of
commands ``query-commands`` lists and the dispatcher serves, and the machine
rules that changed across QEMU versions.

=========  ======== =================================================  ============  ==========
profile    version  commands                                           cpu_index     plug order
=========  ======== =================================================  ============  ==========
cpuhot     7.2.22   everything: modern, legacy and ``x-cpuhot-*``      slot index    any
qemu-7.2   7.2.22   what 7.2 has (no ``cpu-add``, no ``query-cpus``)   slot index    any
qemu-5.2   5.2.0    what 5.2 has (``query-cpus``, no ``cpu-add``)      slot index    any
qemu-10.0  10.0.13  what 10.0 has (release "10.0": its tables, rules)  slot index    any
qemu-5.1   5.1.0    both worlds (``query-cpus-fast`` and ``cpu-add``)  slot index    any
qemu-2.7   2.7.1    ``query-cpus``, ``cpu-add``, hotpluggable-cpus;    creation      in order
                    no ``query-cpus-fast`` (2.12), no OOB (3.0)        count
=========  ======== =================================================  ============  ==========

``qemu-5.1`` and ``qemu-2.7`` run QEMU 5.2's recorded model (release ``5.2``: its -smp rules and
messages, machine types, CPU models, query shapes, texts and events), the nearest real QEMU this
project records.  What 5.2 cannot show stays inferred from QEMU's history (qemu-facts section 9):
``cpu-add`` (removed in 5.2), 2.7's cpu_index-by-count and in-order plug rules, 2.7's lack of
``query-cpus-fast`` and OOB.  A real 5.1 also lacks the ``*-5.2`` machine types that 5.2 lists.

The ``qemu-*`` profiles serve one client at a time on a socket, as QEMU does,
and default to a guest-less VM (``--guest none``) unless told otherwise.

The default ``cpuhot`` profile keeps release 7.2: the intended default is the newest exact
release plus cpuhot's extensions, switched only when every test including the real-libvirt
suite passes with it (not yet run against release 10.0; see README "Compatibility profiles").
"""

from __future__ import annotations

from dataclasses import dataclass

from .machine.release import RELEASE_GATED_COMMANDS, get_release

CPUHOT_PREFIX = "x-cpuhot-"


@dataclass(frozen=True)
class Profile:
    name: str
    version: tuple[int, int, int]
    #: the QEMU release whose machine model, tables and texts this profile uses
    #: (:data:`cpuhot.machine.release.RELEASES`)
    release: str = "7.2"
    #: commands this profile leaves out (answered with CommandNotFound)
    without: frozenset[str] = frozenset()
    #: ``slot`` (QEMU 2.8+) or ``count`` (QEMU <= 2.7: the number of CPUs at creation)
    cpu_index_rule: str = "slot"
    #: QEMU 2.7: CPUs are plugged in slot order and unplugged in reverse order
    in_order_plug: bool = False
    #: QEMU's socket monitor serves one client at a time; others wait, without greeting
    single_client: bool = False
    #: whether the x-cpuhot-* commands exist
    cpuhot_commands: bool = False
    #: whether the greeting offers out-of-band execution (QEMU 3.0+)
    oob: bool = True

    def serves(self, command: str) -> bool:
        if command.startswith(CPUHOT_PREFIX):
            return self.cpuhot_commands
        if command in RELEASE_GATED_COMMANDS and command not in get_release(self.release).extra_commands:
            return False
        return command not in self.without


LEGACY_COMMANDS = frozenset({"cpu-add", "query-cpus"})

PROFILES = {
    "cpuhot": Profile("cpuhot", (7, 2, 22), cpuhot_commands=True),
    "qemu-7.2": Profile("qemu-7.2", (7, 2, 22), without=LEGACY_COMMANDS, single_client=True),
    "qemu-5.2": Profile("qemu-5.2", (5, 2, 0), without=frozenset({"cpu-add"}), single_client=True, release="5.2"),
    "qemu-10.0": Profile("qemu-10.0", (10, 0, 13), without=LEGACY_COMMANDS, single_client=True, release="10.0"),
    # re-based on QEMU 5.2's recording (release="5.2"); cpu-add and 2.7's rules are inferred (see above)
    "qemu-5.1": Profile("qemu-5.1", (5, 1, 0), single_client=True, release="5.2"),
    "qemu-2.7": Profile("qemu-2.7", (2, 7, 1), without=frozenset({"query-cpus-fast", "migrate-pause"}),
                        cpu_index_rule="count", in_order_plug=True, single_client=True, oob=False,
                        release="5.2"),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown compatibility profile '{name}' (known: {', '.join(PROFILES)})") from None
