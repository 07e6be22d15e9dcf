"""The sans-IO pieces libvirt's save/restore/migration and libvirt 11.3's start need.

Expected values are QEMU 7.2's (recorded with qemu-system-x86_64 7.2 over QMP) or QEMU's
documented command-line equivalences."""

import os

import pytest

from cpuhot.machine.errors import DeviceNotFound, GenericError
from cpuhot.machine.migration_params import MigrationParameters
from cpuhot.machine.options import object_option_string
from cpuhot.qmp.fdpass import FdTable
from cpuhot.qmp.migration_io import _split
from cpuhot.qmp.typeinfo import list_types, object_properties


def test_json_object_argument_is_its_key_value_form():
    assert object_option_string('{"qom-type":"memory-backend-ram","id":"pc.ram","size":67108864}') == \
        "qom-type=memory-backend-ram,id=pc.ram,size=67108864"
    assert object_option_string('{"qom-type":"memory-backend-file","id":"m","share":true,"mem-path":"/a,b"}') == \
        "qom-type=memory-backend-file,id=m,share=on,mem-path=/a,,b"
    assert object_option_string("memory-backend-ram,id=m,size=1G") == "memory-backend-ram,id=m,size=1G"
    nested = '{"qom-type":"x","id":"y","list":[1]}'
    assert object_option_string(nested) == nested


def test_generic_pc_machine_properties_are_the_boards_shared_ones():
    props = {p["name"]: p["type"] for p in object_properties("x86_64", "generic-pc-machine")}
    assert props["acpi"] == "OnOffAuto" and props["i8042"] == "bool" and props["smm"] == "OnOffAuto"
    assert "sata" in props                                         # pc and q35 both have it
    with pytest.raises(DeviceNotFound, match="Class 'generic-pc-machine' not found"):
        object_properties("ppc64", "generic-pc-machine")


def test_i8042_is_an_x86_type_only():
    assert "i8042" in {t["name"] for t in list_types("x86_64", None, False)}
    assert "i8042" not in {t["name"] for t in list_types("ppc64", None, False)}


def test_bracketed_ipv6_listen_uri():
    assert _split("tcp:[::]:49152") == ("tcp", "::", 49152)
    assert _split("tcp:127.0.0.1:49152") == ("tcp", "127.0.0.1", 49152)


def test_fd_table_as_qemu():
    t = FdTable()
    with pytest.raises(GenericError, match="^No file descriptor supplied via SCM_RIGHTS$"):
        t.getfd("migrate", None)
    r, w = os.pipe()
    with pytest.raises(GenericError, match="^Parameter 'fdname' expects a name not starting with a digit$"):
        t.getfd("1x", r)
    with pytest.raises(OSError):
        os.fstat(r)                                  # refused fds are closed
    r, w2 = os.pipe()
    t.getfd("migrate", w)
    t.getfd("migrate", w2)                           # same name: the old fd is replaced and closed
    with pytest.raises(OSError):
        os.fstat(w)
    assert t.take("migrate") == w2                   # a URI takes it out of the table
    with pytest.raises(GenericError, match="^File descriptor named 'migrate' has not been found$"):
        t.take("migrate")
    with pytest.raises(GenericError, match="^File descriptor named 'migrate' not found$"):
        t.closefd("migrate")
    os.close(w2)
    os.close(r)


def test_migration_parameters_all_or_nothing_and_uint64_wrap():
    p = MigrationParameters()
    with pytest.raises(GenericError, match="compress_level"):
        p.set({"downtime-limit": 5, "compress-level": 10})
    assert p.query()["downtime-limit"] == 300
    p.set({"max-bandwidth": -1, "tls-creds": None})
    assert p.query()["max-bandwidth"] == 18446744073709551615 and p.query()["tls-creds"] == ""
    with pytest.raises(GenericError, match="^Parameter 'downtime_limit' expects"):
        p.set({"downtime-limit": -1})                 # wraps to 2**64-1: out of range, as in QEMU
