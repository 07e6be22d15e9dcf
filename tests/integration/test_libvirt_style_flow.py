"""A libvirt-style client drives ``python -m cpuhot serve`` over a real socket with qemu.qmp."""

import asyncio

import pytest
from qemu.qmp import ExecuteError, QMPClient


async def plug_every_free_slot(path):
    qmp = QMPClient("libvirt-style")
    await qmp.connect(path)
    try:
        assert qmp.greeting.QMP.version["qemu"]["major"] == 7
        entries = await qmp.execute("query-hotpluggable-cpus")
        present = await qmp.execute("query-cpus-fast")
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
            fast = await qmp.execute("query-cpus-fast")
            new = [c for c in fast if c["qom-path"].startswith(f"/machine/peripheral/{ident}")]
            assert len(new) == e["vcpus-count"]
            assert all(c["props"] == e["props"] for c in new)
        after = await qmp.execute("query-hotpluggable-cpus")
        assert all("qom-path" in e for e in after)
        paths = {e["qom-path"]: e for e in after}
        for ident, e in plugged:
            assert paths[f"/machine/peripheral/{ident}"]["props"] == e["props"]
        fast = await qmp.execute("query-cpus-fast")
        # plug order is creation order: the new vCPUs follow the boot ones in the order we plugged
        hot = [c["qom-path"].split("/")[3] for c in fast if c["qom-path"].startswith("/machine/peripheral/")]
        assert list(dict.fromkeys(hot)) == [i for i, _ in plugged]
        assert len({c["cpu-index"] for c in fast}) == len(fast)
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("device_add", {"driver": after[0]["type"], "id": "extra", **after[0]["props"]})
        assert err.value.error_class == "GenericError"
        return len(fast)
    finally:
        await qmp.disconnect()


# the VMs come from cpuhot's pytest plugin (cpuhot_vm, configured by parametrisation), as a subprocess:
# a separate ``python -m cpuhot serve`` process, as a libvirt-style client meets it
@pytest.mark.parametrize("cpuhot_vm, plugged", [
    pytest.param(dict(smp="4,maxcpus=16", subprocess=True), 16, id="x86-pc-4-of-16"),
    pytest.param(dict(machine="pseries", smp="2,maxcpus=8", subprocess=True), 8, id="pseries-2-of-8"),
    pytest.param(dict(machine="pseries", smp="4,maxcpus=16,threads=4", accel="kvm", subprocess=True), 16,
                 id="pseries-smt4-simulated-kvm"),
    pytest.param(dict(machine="q35", smp="2,maxcpus=16,sockets=2,dies=2,cores=2,threads=2", subprocess=True), 16,
                 id="q35-dies"),
], indirect=["cpuhot_vm"])
def test_plug_every_free_slot(cpuhot_vm, plugged):
    assert asyncio.run(plug_every_free_slot(cpuhot_vm.qmp_path)) == plugged


def test_first_line_is_the_socket(serve_vm):
    vm = serve_vm("-smp", "2")
    assert vm.first_line == f"unix:{vm.path}"
