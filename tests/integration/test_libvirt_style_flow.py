"""A libvirt-style client drives ``python -m cpuhot serve`` over a real socket with qemu.qmp."""

import asyncio

import pytest
from qemu.qmp import ExecuteError, QMPClient

from cpuhot.profiles import PROFILES


async def present_cpus(qmp, fast: bool) -> list[dict]:
    """libvirt's qemuMonitorGetCPUInfo: query-cpus-fast (QEMU 2.12+), else query-cpus in the same terms."""
    if fast:
        return await qmp.execute("query-cpus-fast")
    return [{"qom-path": c["qom_path"], "cpu-index": c["CPU"], "props": c["props"], "thread-id": c["thread_id"]}
            for c in await qmp.execute("query-cpus")]


async def plug_every_free_slot(path, profile="cpuhot"):
    qmp = QMPClient("libvirt-style")
    await qmp.connect(path)
    fast = PROFILES[profile].serves("query-cpus-fast")
    try:
        assert qmp.greeting.QMP.version["qemu"]["major"] == PROFILES[profile].version[0]
        entries = await qmp.execute("query-hotpluggable-cpus")
        present = await present_cpus(qmp, fast)
        by_path = {c["qom-path"]: c for c in present}
        # every occupied entry matches a present vCPU by qom-path (x86) or its threads (sPAPR)
        for e in entries:
            if "qom-path" in e:
                assert any(p == e["qom-path"] or p.startswith(e["qom-path"] + "/") for p in by_path)
        free = [e for e in reversed(entries) if "qom-path" not in e]     # libvirt plugs in slot order
        plugged = []
        for n, e in enumerate(free, start=len(present)):
            ident = f"vcpu{n}"
            await qmp.execute("device_add", {"driver": e["type"], "id": ident, **e["props"]})
            plugged.append((ident, e))
            now = await present_cpus(qmp, fast)
            new = [c for c in now if c["qom-path"].startswith(f"/machine/peripheral/{ident}")]
            assert len(new) == e["vcpus-count"]
            assert all(c["props"] == e["props"] for c in new)
        after = await qmp.execute("query-hotpluggable-cpus")
        assert all("qom-path" in e for e in after)
        paths = {e["qom-path"]: e for e in after}
        for ident, e in plugged:
            assert paths[f"/machine/peripheral/{ident}"]["props"] == e["props"]
        now = await present_cpus(qmp, fast)
        # plug order is creation order: the new vCPUs follow the boot ones in the order we plugged
        hot = [c["qom-path"].split("/")[3] for c in now if c["qom-path"].startswith("/machine/peripheral/")]
        assert list(dict.fromkeys(hot)) == [i for i, _ in plugged]
        assert len({c["cpu-index"] for c in now}) == len(now)
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("device_add", {"driver": after[0]["type"], "id": "extra", **after[0]["props"]})
        assert err.value.error_class == "GenericError"
        return len(now)
    finally:
        await qmp.disconnect()


# the VMs come from cpuhot's pytest plugin (cpuhot_vm, configured by parametrisation), as a subprocess:
# a separate ``python -m cpuhot serve`` process, as a libvirt-style client meets it
_VMS = [
    (dict(smp="4,maxcpus=16"), 16, "x86-pc-4-of-16"),
    (dict(machine="pseries", smp="2,maxcpus=8"), 8, "pseries-2-of-8"),
    (dict(machine="pseries", smp="4,maxcpus=16,threads=4", accel="kvm"), 16, "pseries-smt4-simulated-kvm"),
    (dict(machine="q35", smp="2,maxcpus=16,sockets=2,dies=2,cores=2,threads=2"), 16, "q35-dies"),
]


# every VM against every profile: libvirt meets each QEMU release (and cpuhot's own profile)
@pytest.mark.parametrize("cpuhot_vm, plugged, profile", [
    pytest.param(dict(vm, subprocess=True, compat=profile), n, profile, id=f"{profile}-{name}")
    for profile in PROFILES for vm, n, name in _VMS
], indirect=["cpuhot_vm"])
def test_plug_every_free_slot(cpuhot_vm, plugged, profile):
    assert asyncio.run(plug_every_free_slot(cpuhot_vm.qmp_path, profile)) == plugged


def test_first_line_is_the_socket(serve_vm):
    vm = serve_vm("-smp", "2")
    assert vm.first_line == f"unix:{vm.path}"
