"""query-qmp-schema and the libvirt probe commands, through the sans-IO monitor."""

from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.qmp.framing import Parsed
from cpuhot.qmp.protocol import Monitor


def monitor(**kw):
    mon = Monitor(build_machine(LaunchOptions(**kw)).vm, "cpuhot", validate_returns=True)
    s = mon.open_session()
    mon.handle(s, Parsed({"execute": "qmp_capabilities"}))
    return mon, s


def call(mon, s, name, args=None):
    msg = {"execute": name, **({"arguments": args} if args else {})}
    return mon.handle(s, Parsed(msg))[-1][1]


def resolve(schema, path):
    """libvirt's virQEMUQAPISchemaPathGet, reduced: command/arg-type|ret-type/member/..."""
    by_name = {e["name"]: e for e in schema}
    parts = path.split("/")
    entry = by_name[parts[0]]
    for part in parts[1:]:
        while entry["meta-type"] == "array":
            entry = by_name[entry["element-type"]]
        if part in ("arg-type", "ret-type"):
            entry = by_name[entry[part]]
            continue
        if part.startswith("^"):
            return part[1:] in entry.get("values", [])
        members = {m["name"]: m for m in entry.get("members", [])}
        if part not in members:
            return False
        entry = by_name[members[part]["type"]]
    return True


def test_schema_lists_every_served_command_and_event_with_unique_names():
    mon, s = monitor()
    schema = call(mon, s, "query-qmp-schema")["return"]
    names = [e["name"] for e in schema]
    assert len(names) == len(set(names))
    commands = {e["name"] for e in schema if e["meta-type"] == "command"}
    assert commands == set(mon.served_commands())
    events = {e["name"] for e in schema if e["meta-type"] == "event"}
    assert {"DEVICE_DELETED", "ACPI_DEVICE_OST", "DEVICE_UNPLUG_GUEST_ERROR", "SHUTDOWN"} <= events
    by_name = {e["name"]: e for e in schema}
    for e in schema:       # every referenced type exists
        for key in ("arg-type", "ret-type", "element-type"):
            if key in e:
                assert e[key] in by_name, (e, key)
        for m in e.get("members", []):
            if "type" in m:
                assert m["type"] in by_name, (e["name"], m)


def test_schema_has_what_libvirt_checks_for_cpus():
    mon, s = monitor()
    schema = call(mon, s, "query-qmp-schema")["return"]
    assert resolve(schema, "query-hotpluggable-cpus/ret-type/props/die-id")
    assert resolve(schema, "query-hotpluggable-cpus/ret-type/vcpus-count")
    assert resolve(schema, "query-cpus-fast/ret-type/props/node-id")
    assert not resolve(schema, "query-hotpluggable-cpus/ret-type/props/no-such-id")


def test_strict_profile_schema_leaves_out_what_it_does_not_serve():
    mon = Monitor(build_machine(LaunchOptions()).vm, "qemu-7.2")
    s = mon.open_session()
    mon.handle(s, Parsed({"execute": "qmp_capabilities"}))
    names = {e["name"] for e in call(mon, s, "query-qmp-schema")["return"] if e["meta-type"] == "command"}
    assert "cpu-add" not in names and "x-cpuhot-guest-mode" not in names and "query-hotpluggable-cpus" in names


def test_probe_commands_answer_as_libvirt_needs():
    mon, s = monitor(machine="none,accel=kvm:tcg")
    types = {t["name"] for t in call(mon, s, "qom-list-types")["return"]}
    assert {"tcg-accel", "kvm-accel", "qemu64-x86_64-cpu", "pc-i440fx-7.2-machine"} <= types
    assert call(mon, s, "qom-list-properties", {"typename": "memory-backend-file"})["return"] == [
        {"name": "size", "type": "int"}]
    assert isinstance(call(mon, s, "qom-list-properties", {"typename": "none-machine"})["return"], list)
    assert call(mon, s, "device-list-properties", {"typename": "nosuch"})["error"] == {
        "class": "DeviceNotFound", "desc": "Device 'nosuch' not found"}
    props = {p["name"] for p in call(mon, s, "device-list-properties", {"typename": "qemu64-x86_64-cpu"})["return"]}
    assert {"socket-id", "core-id", "thread-id", "apic-id", "node-id"} <= props
    for name in ("query-chardev", "query-block", "query-jobs", "query-named-block-nodes", "query-cpus-fast"):
        assert call(mon, s, name)["return"] == []
    assert call(mon, s, "query-tpm-models")["error"]["class"] == "CommandNotFound"
    assert call(mon, s, "device_add", {"driver": "qemu64-x86_64-cpu"})["error"]["desc"] == (
        "Device 'qemu64-x86_64-cpu' can not be hotplugged on this machine")


def test_ppc64_probe_lists_the_phb_and_core_types():
    mon, s = monitor(arch="ppc64", machine="none")
    types = {t["name"] for t in call(mon, s, "qom-list-types")["return"]}
    assert {"spapr-pci-host-bridge", "power9_v2.0-spapr-cpu-core", "pseries-7.2-machine"} <= types
    assert "spapr-cpu-core" not in types
    assert "spapr-cpu-core" in {t["name"] for t in call(mon, s, "qom-list-types", {"abstract": True})["return"]}


def test_an_internal_error_becomes_a_reply_not_a_crash():
    from cpuhot.qmp.dispatch import Registry
    from cpuhot.qmp.commands import COMMANDS
    reg = Registry()
    reg.commands = dict(COMMANDS.commands)

    @reg.command("x-cpuhot-boom")
    def boom(ctx):
        raise KeyError("oops")

    mon = Monitor(build_machine(LaunchOptions()).vm, "cpuhot", registry=reg)
    s = mon.open_session()
    mon.handle(s, Parsed({"execute": "qmp_capabilities"}))
    reply = mon.handle(s, Parsed({"execute": "x-cpuhot-boom", "id": 7}))[-1][1]
    assert reply == {"id": 7, "error": {"class": "GenericError",
                                         "desc": "cpuhot internal error: KeyError: 'oops'"}}
    assert mon.handle(s, Parsed({"execute": "query-status"}))[-1][1]["return"]["status"] == "running"
