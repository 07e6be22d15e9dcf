"""Pydantic v2 models of the QAPI types cpuhot returns, named as QEMU's schema names them.

Commands declare their return type with these models; the dispatcher can
check every reply against them (``validate_returns``, on in the test-suite),
and ``query-qmp-schema`` style introspection can be generated from them.
Field names use QEMU's wire spelling through aliases (``vcpus-count``).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class QAPIModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class CpuInstanceProperties(QAPIModel):
    node_id: Optional[int] = Field(None, alias="node-id")
    drawer_id: Optional[int] = Field(None, alias="drawer-id")      # s390x (QEMU 8.2+)
    book_id: Optional[int] = Field(None, alias="book-id")          # s390x (QEMU 8.2+)
    socket_id: Optional[int] = Field(None, alias="socket-id")
    die_id: Optional[int] = Field(None, alias="die-id")
    cluster_id: Optional[int] = Field(None, alias="cluster-id")
    module_id: Optional[int] = Field(None, alias="module-id")      # x86 (QEMU 9.1+)
    core_id: Optional[int] = Field(None, alias="core-id")
    thread_id: Optional[int] = Field(None, alias="thread-id")


class HotpluggableCPU(QAPIModel):
    type: str
    vcpus_count: int = Field(alias="vcpus-count")
    props: CpuInstanceProperties
    qom_path: Optional[str] = Field(None, alias="qom-path")


class CpuInfoFast(QAPIModel):
    #: QEMU <= 5.2 only (``Release.cpus_fast_arch``); removed in 6.0
    arch: Optional[str] = None
    cpu_index: int = Field(alias="cpu-index")
    qom_path: str = Field(alias="qom-path")
    thread_id: int = Field(alias="thread-id")
    props: Optional[CpuInstanceProperties] = None
    target: str
    #: s390x: the CPU's state (``CpuS390State``)
    cpu_state: Optional[Literal["uninitialized", "stopped", "check-stop", "operating", "load"]] = Field(
        None, alias="cpu-state")
    #: deprecated in 2.12, removed in 6.0 (QEMU 5.2 still sends it)
    # (a second annotation of ``arch``: the field keeps the first one's place, which the schema's member order shows)
    arch: Optional[Literal["x86", "sparc", "ppc", "mips", "tricore", "s390", "riscv", "other"]] = None  # type: ignore[no-redef]


class CpuInfo(QAPIModel):
    """Legacy ``query-cpus`` entry (QEMU <= 5.2)."""
    CPU: int
    current: bool
    halted: bool
    qom_path: str
    thread_id: int
    props: Optional[CpuInstanceProperties] = None
    arch: Literal["x86", "sparc", "ppc", "mips", "tricore", "s390", "riscv", "other"]
    pc: Optional[int] = None
    nip: Optional[int] = None
    cpu_state: Optional[Literal["uninitialized", "stopped", "check-stop", "operating", "load"]] = Field(
        None, alias="cpu-state")


class StatusInfo(QAPIModel):
    running: bool
    singlestep: Optional[bool] = None      # gone in QEMU 10.0
    status: str


class VersionTriple(QAPIModel):
    major: int
    minor: int
    micro: int


class VersionInfo(QAPIModel):
    qemu: VersionTriple
    package: str


class CommandInfo(QAPIModel):
    name: str


class TargetInfo(QAPIModel):
    arch: str


class KvmInfo(QAPIModel):
    enabled: bool
    present: bool


class NameInfo(QAPIModel):
    name: Optional[str] = None


class UuidInfo(QAPIModel):
    UUID: str


class MachineInfo(QAPIModel):
    name: str
    alias: Optional[str] = None
    is_default: Optional[bool] = Field(None, alias="is-default")
    cpu_max: int = Field(alias="cpu-max")
    hotpluggable_cpus: bool = Field(alias="hotpluggable-cpus")
    numa_mem_supported: bool = Field(alias="numa-mem-supported")
    deprecated: bool
    default_cpu_type: Optional[str] = Field(None, alias="default-cpu-type")
    default_ram_id: Optional[str] = Field(None, alias="default-ram-id")
    acpi: Optional[bool] = None         # QEMU 9.1+


class CpuDefinitionInfo(QAPIModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)
    name: str
    typename: str
    static: bool
    deprecated: bool
    migration_safe: Optional[bool] = Field(None, alias="migration-safe")
    unavailable_features: Optional[list[str]] = Field(None, alias="unavailable-features")


class Empty(QAPIModel):
    pass


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def resolve(return_type: object) -> Any:
    """A command's declared return type: a model, or its name as a string (``"list[CpuInfoFast]"``),
    which keeps pydantic out of the start-up path until a reply is validated or introspected."""
    if isinstance(return_type, str):
        return eval(return_type, globals())       # names of this module only
    return return_type


def validate(return_type: Any, value: object) -> None:        # a model or its name
    """Raise ``pydantic.ValidationError`` unless ``value`` is a valid ``return_type``."""
    if return_type is None:
        return
    return_type = resolve(return_type)
    adapter = _ADAPTERS.get(return_type)
    if adapter is None:
        adapter = _ADAPTERS[return_type] = TypeAdapter(return_type)
    adapter.validate_python(value)


# -- event data ---------------------------------------------------------------------------------

class DeviceDeletedData(QAPIModel):
    device: Optional[str] = None
    path: str


class ACPIOSTInfo(QAPIModel):
    device: Optional[str] = None
    slot: str
    slot_type: Literal["DIMM", "CPU"] = Field(alias="slot-type")
    source: int
    status: int


class ACPIDeviceOstData(QAPIModel):
    info: ACPIOSTInfo


class DeviceUnplugGuestErrorData(QAPIModel):
    device: Optional[str] = None
    path: str


class ShutdownData(QAPIModel):
    guest: bool
    reason: str


class MigrationEventData(QAPIModel):
    status: str


class MigrationPassData(QAPIModel):
    pass_: int = Field(alias="pass")


#: every event cpuhot emits, with the model of its ``data`` (None: no data)
EVENTS: dict[str, type[QAPIModel] | None] = {
    "DEVICE_DELETED": DeviceDeletedData,
    "ACPI_DEVICE_OST": ACPIDeviceOstData,
    "DEVICE_UNPLUG_GUEST_ERROR": DeviceUnplugGuestErrorData,
    "STOP": None,
    "RESUME": None,
    "RESET": ShutdownData,
    "SHUTDOWN": ShutdownData,
    "POWERDOWN": None,
    "MIGRATION": MigrationEventData,
    "MIGRATION_PASS": MigrationPassData,
    "BALLOON_CHANGE": None,
}


class BalloonChangeData(QAPIModel):
    actual: int


EVENTS["BALLOON_CHANGE"] = BalloonChangeData


class VserportChangeData(QAPIModel):
    id: str
    open: bool


EVENTS["VSERPORT_CHANGE"] = VserportChangeData


class ObjectTypeInfo(QAPIModel):
    name: str
    abstract: Optional[bool] = None
    parent: Optional[str] = None


class ObjectPropertyInfo(QAPIModel):
    name: str
    type: str
    description: Optional[str] = None
    default_value: Optional[object] = Field(None, alias="default-value")


class MigrationInfo(QAPIModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)
    status: Optional[str] = None


class MigrationCapabilityStatus(QAPIModel):
    capability: str
    state: bool


class CommandLineOptionInfo(QAPIModel):
    option: str
    parameters: list[dict[str, Any]]


class GuestModeInfo(QAPIModel):
    mode: str
    effective: str
    booted: bool


class GuestCpuInfo(QAPIModel):
    cpu_index: int = Field(alias="cpu-index")
    qom_path: str = Field(alias="qom-path")
    online: bool
