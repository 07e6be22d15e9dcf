"""64 clients hammering one VM: plugs, unplugs and queries, all at once.

The VM runs ``--guest cooperative --compat cpuhot`` so unplugs complete (5 ms after
device_del).  Every reply must carry its request's id; at the end every successful
device_add is present exactly once unless its device_del completed (with exactly one
DEVICE_DELETED event naming it), and no two CPUs share a slot, an id or a cpu-index.
"""

from __future__ import annotations

import json
import random
import threading
import time

from .helpers import Client, check_consistency

CLIENTS = 64
OPS = 40
MAXCPUS = 32


def test_64_clients_hammering_one_vm(serve_vm):
    vm = serve_vm("-machine", "q35", "-smp", f"2,maxcpus={MAXCPUS},sockets=4,cores=4,threads=2",
                  "--guest", "cooperative", "--compat", "cpuhot")
    setup = Client(vm.path)
    slots = setup.ok("query-hotpluggable-cpus")
    boot = {e["qom-path"] for e in slots if "qom-path" in e}
    free = [e for e in slots if "qom-path" not in e]
    setup.close()

    # an observer that reads every event while the others work
    observer = Client(vm.path, timeout=30)
    deleted_events: list[str] = []
    stop = threading.Event()

    def observe():
        while not stop.is_set():
            line = observer.line(0.1)
            if line is None:
                if observer.eof:
                    return
                continue
            msg = json.loads(line)
            if msg.get("event") == "DEVICE_DELETED" and "device" in msg.get("data", {}):
                deleted_events.append(msg["data"]["device"])
    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    try:
        run_clients(vm.path, free, boot, deleted_events)
    finally:
        stop.set()
        watcher.join(5)
        observer.close()


def run_clients(path, free, boot, deleted_events):
    results = [None] * CLIENTS
    errors: list[str] = []
    start = threading.Barrier(CLIENTS)

    def worker(k: int) -> None:
        rnd = random.Random(k)
        added: dict[str, str] = {}        # id -> slot props (as JSON), successful adds
        deleted: list[str] = []           # ids whose device_del was accepted
        live: list[str] = []
        try:
            c = Client(path, timeout=30)
            start.wait(30)
            for n in range(OPS):
                req = [k, n]
                r = rnd.random()
                if r < 0.45:
                    slot = rnd.choice(free)
                    ident = f"c{k}-{n}"
                    reply = c.call({"execute": "device_add", "id": req, "arguments": {
                        "driver": slot["type"], "id": ident, **slot["props"]}})
                    if "return" in reply:
                        added[ident] = json.dumps(slot["props"], sort_keys=True)
                        live.append(ident)
                    else:
                        assert "exists" in reply["error"]["desc"], reply
                elif r < 0.7 and live:
                    ident = live.pop(rnd.randrange(len(live)))
                    reply = c.call({"execute": "device_del", "id": req, "arguments": {"id": ident}})
                    assert reply.get("return") == {}, reply
                    deleted.append(ident)
                else:
                    execute = rnd.choice(["query-hotpluggable-cpus", "query-cpus-fast", "query-status"])
                    reply = c.call({"execute": execute, "id": req})
                    assert "return" in reply, reply
                assert reply["id"] == req, f"reply {reply.get('id')} to request {req}"
            c.close()
            results[k] = (added, deleted)
        except BaseException as e:       # reported below, with the client's number
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]

    added = {ident: props for a, _ in results for ident, props in a.items()}
    deleted = [ident for _, d in results for ident in d]
    assert len(deleted) == len(set(deleted))
    assert len(added) == sum(len(a) for a, _ in results)
    expected = boot | {f"/machine/peripheral/{i}" for i in added if i not in set(deleted)}

    check = Client(path)
    deadline = time.monotonic() + 10
    while True:        # the guest ejects each CPU 5 ms after its device_del
        state = check_consistency(check.ok)
        if state["present"] == expected or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert state["present"] == expected, (sorted(state["present"] - expected)[:5],
                                          sorted(expected - state["present"])[:5])
    # every success is in exactly one slot, the one it asked for
    slots = check.ok("query-hotpluggable-cpus")
    for e in slots:
        path = e.get("qom-path", "")
        if path.startswith("/machine/peripheral/"):
            assert json.dumps(e["props"], sort_keys=True) == added[path.rsplit("/", 1)[1]]
    assert sum(bool(a) for a, _ in results) > CLIENTS // 2, "too few plugs succeeded to mean anything"
    assert len(deleted) > CLIENTS // 2
    check.close()

    deadline = time.monotonic() + 5
    while sorted(deleted_events) != sorted(deleted) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(deleted_events) == sorted(deleted), "each completed unplug has exactly one DEVICE_DELETED"
