"""x86 slot enumeration and APIC IDs (values verified with qom-get apic-id on QEMU 7.2)."""

from hypothesis import given, strategies as st

from cpuhot.machine.topology import CpuTopology, TopoIds, field_width


def T(sockets, dies, cores, threads, modules=1):
    n = sockets * dies * modules * cores * threads
    return CpuTopology(cpus=1, sockets=sockets, dies=dies, clusters=1, cores=cores, threads=threads, max_cpus=n,
                       modules=modules)


def test_apic_ids_recorded_on_qemu():
    t = T(2, 1, 3, 3)
    assert t.apic_id(TopoIds(1, 0, 2, 2)) == 26
    assert t.apic_id(TopoIds(1, 0, 0, 0)) == 16
    assert t.apic_id(TopoIds(0, 0, 1, 1)) == 5
    t = T(2, 3, 3, 1)
    assert t.apic_id(TopoIds(1, 2, 2, 0)) == 26
    assert t.apic_id(TopoIds(1, 0, 1, 0)) == 17
    assert T(2, 2, 2, 2).apic_id(TopoIds(1, 1, 1, 1)) == 15


def test_field_width():
    assert [field_width(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 2, 2, 3, 3, 4]


def test_slot_index_is_socket_major():
    t = T(2, 1, 2, 2)
    assert [tuple(t.ids_from_index(i))[:4] for i in range(8)][:5] == [
        (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 0, 1, 1), (1, 0, 0, 0)]


def test_module_bits_recorded_on_qemu_10_0():
    """-smp 1,maxcpus=16,sockets=2,modules=2,cores=2,threads=2 on QEMU 10.0 (x86-q35-modules-plug):
    qom-get apic-id of (socket 0, module 1, core 1, thread 1) is 7, of (socket 1, module 1, core 0,
    thread 0) is 12; the module bits sit between the core and the die bits."""
    t = T(2, 1, 2, 2, modules=2)
    assert t.apic_id(TopoIds(0, 0, 1, 1, module=1)) == 7
    assert t.apic_id(TopoIds(1, 0, 0, 0, module=1)) == 12
    assert t.ids_from_apic_id(6) == TopoIds(0, 0, 1, 0, module=1)
    # slots run module-major inside a die: index 4 is module 1's first thread
    assert t.ids_from_index(4) == TopoIds(0, 0, 0, 0, module=1)
    # dies=2, modules=3, cores=3: 2 core bits, 2 module bits, 1 die bit
    t = T(2, 2, 3, 1, modules=3)
    assert t.apic_id(TopoIds(1, 1, 2, 0, module=2)) == (1 << 5) | (1 << 4) | (2 << 2) | 2


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.data())
def test_module_round_trip(sockets, dies, modules, cores, threads, data):
    t = T(sockets, dies, cores, threads, modules=modules)
    i = data.draw(st.integers(0, t.max_cpus - 1))
    ids = t.ids_from_index(i)
    assert t.index_from_ids(ids) == i
    assert t.ids_from_apic_id(t.apic_id(ids)) == ids
    assert ids.module < modules


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 7), st.integers(1, 5), st.data())
def test_index_ids_apic_round_trip(sockets, dies, cores, threads, data):
    t = T(sockets, dies, cores, threads)
    i = data.draw(st.integers(0, t.max_cpus - 1))
    ids = t.ids_from_index(i)
    assert t.index_from_ids(ids) == i
    assert t.ids_from_apic_id(t.apic_id(ids)) == ids


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 7), st.integers(1, 5))
def test_apic_ids_unique_and_increasing(sockets, dies, cores, threads):
    t = T(sockets, dies, cores, threads)
    apics = [t.apic_id_from_index(i) for i in range(t.max_cpus)]
    assert apics == sorted(set(apics))
