"""s390x scenarios (``qemu-system-s390x``, ``-machine s390-ccw-virtio``), recorded from QEMU 5.2, 7.2, 10.0.

Registered from ``scenarios.py`` by ``register(S)`` (S is that module: its helpers build the
scenarios).  Every name starts with ``s390x-`` so ``record.py --only 's390x-*'`` records exactly
these.  Start-ups whose fate differs between releases (``-smp`` shapes 5.2 accepts and 7.2
refuses, 10.0's books/drawers) are marked ``may_refuse``: the recorder stops at a refusal and the
transcript holds only the exit code and stderr.
"""

from __future__ import annotations

S390 = "qemu-system-s390x"
QCPU = "qemu-s390x-cpu"
M = ["-machine", "s390-ccw-virtio"]

#: -smp shapes: every release records each (refused or started)
SMP_SHAPES = [
    ("default", None), ("1", "1"), ("4", "4"), ("1-max4", "1,maxcpus=4"), ("sockets2", "2,sockets=2"),
    ("threads2", "2,threads=2"), ("cores2", "2,cores=2"), ("dies2", "1,dies=2"), ("clusters2", "1,clusters=2"),
    ("books2", "1,books=2"), ("drawers2", "1,drawers=2"), ("s2c2", "4,sockets=2,cores=2"),
    ("max249", "1,maxcpus=249"), ("max248", "1,maxcpus=248"), ("zero", "0"), ("max0", "1,maxcpus=0"),
    ("t2-max8", "4,threads=2,maxcpus=8"), ("s2-max8", "2,sockets=2,maxcpus=8"), ("c2-max8", "2,cores=2,maxcpus=8"),
    ("cpus-gt-max", "5,maxcpus=4"), ("s3-max4", "1,sockets=3,maxcpus=4"), ("books2-max4", "2,books=2,maxcpus=4"),
    ("d2b2s2", "1,drawers=2,books=2,sockets=2,maxcpus=8"), ("s2c2t2", "8,sockets=2,cores=2,threads=2"),
    ("negative", "-1"), ("max-x", "1,maxcpus=x"), ("nosuch", "1,nosuch=1"), ("sockets0", "1,sockets=0"),
    ("s2-max6", "3,maxcpus=6,sockets=2"),
    ("2-max248", "2,maxcpus=248"), ("248", "248"), ("c3-max3", "1,cores=3,maxcpus=3"), ("sockets3", "3,sockets=3"),
    ("s1c2-max2", "2,sockets=1,cores=2,maxcpus=2"), ("named-cpus", "cpus=2,maxcpus=4"), ("cpus-x", "x"),
    ("max-lt-cpus", "2,maxcpus=1"), ("hex", "0x2,maxcpus=0x4"), ("max-huge", "1,maxcpus=4294967297"),
    ("threads1", "1,threads=1"), ("dies1", "1,dies=1"), ("clusters1", "1,clusters=1"), ("books1", "1,books=1"),
    ("drawers1", "1,drawers=1"), ("4-sockets2", "4,sockets=2"), ("cpus-gt-product", "6,sockets=2,cores=2"),
    ("s2c2-max8", "1,sockets=2,cores=2,maxcpus=8"), ("cores0", "1,cores=0"), ("threads0", "2,threads=0"),
]


def register(S) -> None:
    def s390(name, description, tags, args=None, steps=(), **kw):
        kw.setdefault("volatile_patterns", [r"thread_id=\d+"])
        return S.sc(name, description, ["s390x"] + list(tags), args=args, steps=steps, binary=S390, **kw)

    def smp_args(smp, *more):
        return M + (["-smp", smp] if smp is not None else []) + list(more)

    def dadd(core_id=None, id=None, driver=QCPU, **extra):
        p = {"driver": driver}
        if id is not None:
            p["id"] = id
        if core_id is not None:
            p["core-id"] = core_id
        p.update(S._kw(extra))
        return S.qmp("device_add", p)

    info = [S.hmp("info hotpluggable-cpus"), S.hmp("info cpus")]

    # ---------------------------------------------------------------- -smp per release
    for suffix, smp in SMP_SHAPES:
        s = s390(f"s390x-smp-{suffix}", f"-smp {smp}: started (slots, cpu-states) or refused, as this release does",
                 ["smp", "startup"], smp_args(smp), [S.start(), S.queries(), info])
        s["may_refuse"] = True

    # ---------------------------------------------------------------- machine types, models
    s390("s390x-machines", "query-machines and query-cpu-definitions of qemu-system-s390x",
         ["machines", "cpu-models"], smp_args("1"),
         [S.start(), S.qmp("query-machines"), S.qmp("query-cpu-definitions"), S.qmp("query-target")])
    s390("s390x-machine-none", "-machine none: no CPU slots; query-target, query-hotpluggable-cpus",
         ["machines"], ["-machine", "none"], [S.start(), S.qmp("query-target"), S.queries()])
    s = s390("s390x-machine-5.0", "a versioned machine type (s390-ccw-virtio-5.0)", ["machines"],
             ["-machine", "s390-ccw-virtio-5.0", "-smp", "1,maxcpus=2"], [S.start(), S.queries()])
    s = s390("s390x-machine-unknown", "an unknown machine type is refused", ["machines", "startup-refusal"],
             ["-machine", "s390-ccw-virtio-99.0"])
    s = s390("s390x-cpu-max", "-cpu max: the slots' type is max-s390x-cpu", ["cpu-models"],
             smp_args("1,maxcpus=2", "-cpu", "max"), [S.start(), S.queries(), dadd(1, id="m1"), S.qcf()])
    s["may_refuse"] = True
    s = s390("s390x-cpu-z14", "-cpu z14 under TCG: refused with the features TCG lacks", ["cpu-models"],
             smp_args("1", "-cpu", "z14"), [S.start(), S.queries()])
    s["may_refuse"] = True
    for model in ("qemu", "z900", "z13", "host"):
        s = s390(f"s390x-cpu-model-{model}", f"-cpu {model} under TCG: started (the slots' type) or refused",
                 ["cpu-models"], smp_args("1,maxcpus=2", "-cpu", model), [S.start(), S.queries(), dadd(1), S.qcf()])
        s["may_refuse"] = True
    for version in ("4.0", "2.9"):
        s390(f"s390x-machine-{version}", f"s390-ccw-virtio-{version}: slots and (where deprecated) the warning",
             ["machines"], ["-machine", f"s390-ccw-virtio-{version}", "-smp", "1,maxcpus=3"],
             [S.start(), S.queries(), dadd(2, id="m")])
    s390("s390x-cpu-nosuch", "-cpu nosuch is refused", ["cpu-models", "startup-refusal"],
         smp_args("1", "-cpu", "nosuch"))
    s390("s390x-numa-refused", "-numa node is refused at start-up", ["numa", "startup-refusal"],
         smp_args("2,maxcpus=4", "-numa", "node"))

    # ---------------------------------------------------------------- device_add
    s390("s390x-dadd-basic", "device_add core-id 2 with an id; queries, HMP views, qom-get",
         ["device_add"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(2, id="c2"), S.queries(), info,
          S.qom_get("/machine/peripheral/c2", "core-id"), S.qom_get("/machine/peripheral/c2", "hotplugged"),
          S.qom_get("/machine/unattached/device[0]", "hotplugged"), S.qom_get("/machine/peripheral/c2", "realized"),
          S.qom_get("/machine/peripheral/c2", "nosuch")])
    s390("s390x-dadd-errors", "device_add refusals in QEMU's order: core-id missing/used/out of range/"
         "negative/not a number/too big, unknown properties, bus, abstract and unknown drivers",
         ["device_add", "errors"], smp_args("1,maxcpus=3"),
         [S.start(), dadd(), dadd(0), dadd(9), dadd(3), dadd(-1), dadd("x"), dadd(4294967297), dadd(2.5),
          dadd(True), dadd(1, thread_id=0), dadd(1, node_id=0), dadd(1, bus="virtual-css"), dadd(1, bus="nosuch"),
          dadd(1, driver="s390x-cpu"), dadd(1, driver="nosuch-cpu"), dadd(1, driver="z14-s390x-cpu"),
          dadd(1, hotplugged=True), dadd(1, id="bad id"), S.queries()])
    s390("s390x-dadd-json-types", "QEMU 10.0 device_add: unknown members of every JSON type, wrong types",
         ["device_add", "errors"], smp_args("1,maxcpus=3"),
         [S.start(), dadd(1, bogus={}), dadd(1, bogus=None), dadd(1, bogus=[1]), dadd(1, dedicated="on"),
          dadd(1, entitlement=1), dadd(1, socket_id="0"), dadd("1", bogus=1), S.queries()], only_versions=["10.0"])
    s390("s390x-dadd-anon", "anonymous CPUs: peripheral-anon numbers, also consumed by refused adds",
         ["device_add"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(1), dadd(1), dadd(9), dadd(2), S.queries(), info])
    s390("s390x-dadd-out-of-order", "plug core 3, then 1: cpu-index is the core-id, list order is creation order",
         ["device_add", "order"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(3, id="c3"), dadd(1, id="c1"), S.queries(), info])
    s390("s390x-dadd-fill", "plug every free core, then one more", ["device_add"], smp_args("2,maxcpus=5"),
         [S.start(), dadd(2, id="a"), dadd(3, id="b"), dadd(4, id="c"), dadd(4, id="d"), S.queries()])
    s390("s390x-dadd-duplicate-id", "the same id twice; an id used by another device kind",
         ["device_add"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(1, id="x"), dadd(2, id="x"), S.queries()])
    s390("s390x-dadd-string-props", "device_add with core-id as a string",
         ["device_add"], smp_args("1,maxcpus=4"), [S.start(), dadd("2", id="s"), dadd("0x3"), S.queries()])
    s390("s390x-dadd-topology-props", "device_add with socket-id/book-id/drawer-id/entitlement/dedicated",
         ["device_add", "topology"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(1, id="t1", socket_id=0), S.qcf(), dadd(2, id="t2", book_id=0, drawer_id=0, socket_id=0),
          S.qcf(), dadd(3, id="t3", entitlement="high"), dadd(3, id="t4", dedicated=True), S.queries()])

    # ---------------------------------------------------------------- device_del
    s390("s390x-ddel", "device_del: hot-plugged, boot, anonymous, unknown, containers: unplug is refused",
         ["device_del"], smp_args("1,maxcpus=4"),
         [S.start(), dadd(1, id="c1"), dadd(2), S.ddel("c1"), S.ddel("/machine/unattached/device[0]"),
          S.ddel("/machine/peripheral-anon/device[0]"), S.ddel("nosuch"), S.ddel("/machine/peripheral"),
          S.ddel("/machine/peripheral/c1"), S.queries()])

    # ---------------------------------------------------------------- cold plug
    s390("s390x-coldplug", "-device qemu-s390x-cpu,core-id=2: present at start, not hot-plugged",
         ["coldplug"], smp_args("1,maxcpus=4", "-device", f"{QCPU},core-id=2,id=cp"),
         [S.start(), S.queries(), S.qom_get("/machine/peripheral/cp", "hotplugged")])
    s390("s390x-coldplug-used", "-device on the boot CPU's core is refused", ["coldplug", "startup-refusal"],
         smp_args("1,maxcpus=4", "-device", f"{QCPU},core-id=0"))
    s390("s390x-coldplug-range", "-device with a core-id beyond maxcpus is refused", ["coldplug", "startup-refusal"],
         smp_args("1,maxcpus=4", "-device", f"{QCPU},core-id=7"))

    # ---------------------------------------------------------------- run state and cpu-state
    s390("s390x-run-no-shutdown", "-no-shutdown: cont, no guest code: disabled wait -> GUEST_PANICKED (pause); "
         "cpu-state stays; system_reset; cont again",
         ["runstate"], smp_args("1,maxcpus=3", "-no-shutdown"),
         [S.start(), dadd(1, id="a"), S.qmp("cont"), S.settle(0.5), S.qmp("query-status"), S.qcf(),
          dadd(2, id="b"), S.qcf(), S.qmp("system_reset"), S.settle(0.5), S.qmp("query-status"), S.qcf()])
    s390("s390x-run-exit", "without -no-shutdown the disabled-wait panic powers the VM off (exit 0)",
         ["runstate"], smp_args("1"),
         [S.start(), S.qmp("cont"), S.eof(), S.wait_exit()])
    s390("s390x-stop-cont", "stop before cont, query-status in prelaunch; plug while paused",
         ["runstate"], smp_args("1,maxcpus=2", "-no-shutdown"),
         [S.start(), S.qmp("stop"), S.qmp("query-status"), dadd(1, id="p"), S.qcf()])

    # ---------------------------------------------------------------- legacy and HMP
    s390("s390x-legacy-commands", "cpu-add (gone in 5.2) and query-cpus (5.2 only)", ["legacy"],
         smp_args("1,maxcpus=3"),
         [S.start(), S.qmp("cpu-add", {"id": 1}), S.qmp("query-cpus"), dadd(2, id="q2"), S.qmp("query-cpus")],
         volatile_keys=["thread_id"])
    s390("s390x-hmp", "HMP device_add/device_del and info on s390x", ["hmp"], smp_args("1,maxcpus=3"),
         [S.start(), S.hmp(f"device_add {QCPU},core-id=1,id=h1"), S.hmp(f"device_add {QCPU},core-id=1"),
          S.hmp("device_del h1"), info, S.hmp("info status")])
    s390("s390x-qom-list", "qom-list of /machine/peripheral and of the containers",
         ["qom"], smp_args("1,maxcpus=3"),
         [S.start(), dadd(1, id="q1"), S.qmp("qom-list", {"path": "/machine/peripheral"}),
          S.qom_get("/machine/unattached/device[0]", "type")])

    # ---------------------------------------------------------------- late events (the final settle)
    s390("late-s390x-cont", "cont is the last step: no guest code, so the disabled-wait panic and (with "
         "-no-shutdown) the pause come after the reply", ["late", "runstate"], smp_args("1", "-no-shutdown"),
         [S.start(), S.qmp("cont")])

    # ---------------------------------------------------------------- migration
    m4 = smp_args("1,maxcpus=4")
    _migration(S, "s390x-mig-matching", "s390x: source hot-plugs core 2, target has it via -device: completes",
               m4, m4 + ["-device", f"{QCPU},core-id=2,id=hp2"], [dadd(2, id="hp2")])
    _migration(S, "s390x-mig-src-extra-cpu", "s390x: source hot-plugged core 2, target lacks it: target fails",
               m4, m4, [dadd(2, id="hp2")], dst_fails=True, return_path=True)

    # ---------------------------------------------------------------- 10.0: s390x CPU topology
    v10 = ["10.0"]
    s390("s390x-topo-drawers", "10.0: -smp with drawers, books, sockets: the slots' ids", ["topology"],
         smp_args("2,drawers=2,books=2,sockets=2,cores=2,maxcpus=16"), [S.start(), S.queries(), info],
         only_versions=v10)
    s390("s390x-topo-dadd-ids", "10.0: device_add giving matching and mismatching socket/book/drawer ids",
         ["topology", "device_add"], smp_args("1,drawers=2,books=2,sockets=2,cores=2,maxcpus=16"),
         [S.start(), dadd(3, id="a", socket_id=1, book_id=0, drawer_id=0), dadd(5, id="b", socket_id=0),
          dadd(6, id="c", socket_id=9, book_id=9, drawer_id=9), dadd(7, id="d", entitlement="vertical-high"),
          S.queries()], only_versions=v10)
    s390("s390x-topo-qom", "10.0: the topology properties of a CPU (qom-get)", ["topology", "qom"],
         smp_args("1,sockets=2,cores=2,maxcpus=4"),
         [S.start(), dadd(3, id="a"), *(S.qom_get("/machine/peripheral/a", p) for p in
                                          ("socket-id", "book-id", "drawer-id", "entitlement", "dedicated", "core-id"))],
         only_versions=v10)
    s390("s390x-topo-commands", "10.0 under TCG: set-cpu-topology, query-s390x-cpu-polarization",
         ["topology"], smp_args("1,maxcpus=4"),
         [S.start(), S.qmp("query-s390x-cpu-polarization"), S.qmp("set-cpu-topology", {"core-id": 0}),
          S.qmp("set-cpu-topology", {"core-id": 0, "entitlement": "high"})], only_versions=v10)


def _migration(S, name, description, src_args, dst_args, src_setup, dst_fails=False, return_path=False):
    S.migration(name, description, ["s390x"], src_args, dst_args, src_setup, binary=S390, dst_fails=dst_fails,
                return_path=return_path)
