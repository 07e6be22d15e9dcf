"""Compatibility profiles: which QEMU a cpuhot instance pretends to be.

A profile fixes the version in the greeting and ``query-version``, the set of
commands ``query-commands`` lists and the dispatcher serves, and the machine
rules that changed across QEMU versions (cpu_index assignment, in-order plug).

======== ========= ============================================ ==========
profile  version   commands                                     cpu_index
======== ========= ============================================ ==========
cpuhot   7.2.22    everything (modern and legacy)               slot index
qemu-7.2 7.2.22    what 7.2 has (no cpu-add / query-cpus)       slot index
======== ========= ============================================ ==========
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    version: tuple[int, int, int]
    #: commands this profile leaves out (answered with CommandNotFound)
    without: frozenset[str] = frozenset()
    #: commands only this profile family has
    cpu_index_rule: str = "slot"
    in_order_plug: bool = False
    #: QEMU's socket monitor serves one client at a time; others wait, without greeting
    single_client: bool = False

    def serves(self, command: str) -> bool:
        return command not in self.without


LEGACY_COMMANDS = frozenset({"cpu-add", "query-cpus"})
CPUHOT_COMMANDS = frozenset({"x-cpuhot-guest-mode", "x-cpuhot-guest-cpus", "x-cpuhot-topology",
                             "x-cpuhot-clock-step", "x-cpuhot-guest-eject", "x-cpuhot-guest-online"})

PROFILES = {
    "cpuhot": Profile("cpuhot", (7, 2, 22)),
    "qemu-7.2": Profile("qemu-7.2", (7, 2, 22), without=LEGACY_COMMANDS | CPUHOT_COMMANDS, single_client=True),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown compatibility profile '{name}' (known: {', '.join(PROFILES)})") from None
