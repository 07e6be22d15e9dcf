"""QEMU 10.0's s390x CPU-topology commands, where cpuhot simulates KVM (documented, not observed).

QEMU builds ``set-cpu-topology`` and ``query-s390x-cpu-polarization`` only for s390x with KVM
(qapi/machine-s390x.json: ``'if': { 'all': [ 'TARGET_S390X', 'CONFIG_KVM' ] }``); Debian's
qemu-system-s390x on an x86 host answers CommandNotFound (observed, scenario s390x-topo-commands).
cpuhot has them when it models an s390x 10.0 machine under (simulated) KVM, ``--force-kvm``, with
the semantics of docs/devel/s390-cpu-topology.rst and hw/s390x/cpu-topology.c (``s390_change_topology``,
``s390_topology_check``); elsewhere they are CommandNotFound, as in the real binary here.
``x-cpuhot-s390x-polarize`` stands in for the guest's PTF instruction: it changes the polarization
and sends ``CPU_POLARIZATION_CHANGE`` (documented event, no guest here to cause it).
"""

from __future__ import annotations

from ..machine.errors import CommandNotFound, GenericError
from ..machine.s390x import ENTITLEMENTS, S390Policy
from .context import Context
from .registry import command
from .dispatch import Arg


def _topology_policy(ctx: Context, name: str) -> S390Policy:
    policy = ctx.vm.policy
    if not (isinstance(policy, S390Policy) and policy.kvm_topology):
        raise CommandNotFound(f"The command {name} has not been found")
    return policy


@command("query-s390x-cpu-polarization")
def query_s390x_cpu_polarization(ctx: Context) -> dict[str, str]:
    """The CPU polarization the guest chose (``horizontal`` until it asks for ``vertical``)."""
    return {"polarization": _topology_policy(ctx, "query-s390x-cpu-polarization").polarization}


@command("set-cpu-topology", args=(Arg("core-id", "int"), Arg("socket-id", "int", True), Arg("book-id", "int", True),
                                   Arg("drawer-id", "int", True),
                                   Arg("entitlement", "str", True), Arg("dedicated", "bool", True)))
def set_cpu_topology(ctx: Context, core_id: int, socket_id: int | None = None, book_id: int | None = None,
                     drawer_id: int | None = None, entitlement: str | None = None, dedicated: bool | None = None) -> None:
    """Move a CPU in the topology or change its entitlement/dedication (``s390_change_topology``)."""
    policy = _topology_policy(ctx, "set-cpu-topology")
    if entitlement is not None and entitlement not in ENTITLEMENTS:
        raise GenericError(f"Parameter 'entitlement' does not accept value '{entitlement}'")
    policy.set_cpu_topology(ctx.vm, core_id, socket_id=socket_id, book_id=book_id, drawer_id=drawer_id,
                            entitlement=entitlement, dedicated=dedicated)


@command("x-cpuhot-s390x-polarize", args=(Arg("polarization", "str"),))
def x_cpuhot_s390x_polarize(ctx: Context, polarization: str) -> None:
    """The guest's PTF: set the polarization; a change is reported as CPU_POLARIZATION_CHANGE."""
    policy = _topology_policy(ctx, "x-cpuhot-s390x-polarize")
    if polarization not in ("horizontal", "vertical"):
        raise GenericError(f"Parameter 'polarization' does not accept value '{polarization}'")
    if polarization != policy.polarization:
        policy.polarization = polarization
        ctx.vm.emit("CPU_POLARIZATION_CHANGE", {"polarization": polarization})
