"""A picture of a machine's CPUs: ``python -m cpuhot show unix:PATH [--svg FILE] [--watch]``.

The topology comes from cpuhot's ``x-cpuhot-topology``; against a server that does not
have it (a real QEMU, or cpuhot ``--compat qemu-7.2``) it is put together from
``query-hotpluggable-cpus`` and ``query-cpus-fast``, so ``show`` draws any QEMU too.

The terminal picture is coloured when stdout is a terminal and ``NO_COLOR`` is unset:
green for present CPUs, dim for empty slots, yellow for CPUs whose unplug is pending.
``--svg FILE`` writes the same picture as SVG.  ``--watch`` redraws whenever the CPUs
change (it listens to events and polls), for ``--duration`` seconds or until Ctrl-C.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from typing import Any

from .client import QMPClient, QMPError

STATES = ("present", "empty", "pending-unplug")
SYMBOLS = {"present": "■", "empty": "□", "pending-unplug": "◩"}
ANSI = {"present": "\x1b[32m", "empty": "\x1b[2m", "pending-unplug": "\x1b[33m", "bold": "\x1b[1m",
        "reset": "\x1b[0m"}
SVG_FILL = {"present": "#2e7d32", "empty": "#f5f5f5", "pending-unplug": "#f9a825"}
SVG_TEXT = {"present": "#ffffff", "empty": "#616161", "pending-unplug": "#212121"}


# -- getting the tree --------------------------------------------------------------------------

def fetch_topology(qmp: QMPClient) -> dict[str, Any]:
    """``x-cpuhot-topology`` where the server has it, else the same tree from the standard queries."""
    try:
        tree: dict[str, Any] = qmp.execute("x-cpuhot-topology")
        return tree
    except QMPError as e:
        if e.error_class != "CommandNotFound":
            raise
    hotpluggable = qmp.execute("query-hotpluggable-cpus")
    cpus = qmp.execute("query-cpus-fast")
    try:
        machine = next((m["name"] for m in qmp.execute("query-machines") if m.get("is-current")), "")
    except QMPError:
        machine = ""
    try:
        arch = qmp.execute("query-target")["arch"]
    except QMPError:
        arch = ""
    return tree_from_queries(hotpluggable, cpus, machine=machine, arch=arch)


def tree_from_queries(hotpluggable: list[dict[str, Any]], cpus: list[dict[str, Any]], *, machine: str = "",
                      arch: str = "") -> dict[str, Any]:
    """Build the ``x-cpuhot-topology`` tree from what any QEMU answers (no arch-id, no pending state)."""
    entries = list(reversed(hotpluggable))          # QEMU lists the highest slot first
    by_path: dict[str, list[int]] = {}
    for c in cpus:
        path = c["qom-path"]
        by_path.setdefault(path, []).append(c["cpu-index"])
        if "/thread[" in path:
            by_path.setdefault(path.rsplit("/", 1)[0], []).append(c["cpu-index"])
    sockets: dict[int, Any] = {}
    counts = {s: 0 for s in STATES}
    granularity = "thread"
    per_core = max([e.get("vcpus-count", 1) for e in entries] or [1])
    for n, e in enumerate(entries):
        p = e["props"]
        if "thread-id" in p:
            s, d, c = p.get("socket-id", 0), p.get("die-id", 0), p.get("core-id", 0)
        else:
            granularity = "core"
            s, d, c = p.get("socket-id", 0), p.get("die-id", 0), p.get("core-id", n * per_core) // per_core
        slot: dict[str, Any] = {"slot": n, "state": "present" if "qom-path" in e else "empty", "type": e["type"],
                      "vcpus-count": e.get("vcpus-count", 1), "props": p}
        if "node-id" in p:
            slot["node-id"] = p["node-id"]
        if "qom-path" in e:
            slot["qom-path"] = e["qom-path"]
            if e["qom-path"].startswith("/machine/peripheral/"):
                slot["id"] = e["qom-path"].rsplit("/", 1)[1]
            indexes = sorted(by_path.get(e["qom-path"], []))
            if indexes:
                slot["cpu-index"], slot["cpu-indexes"] = indexes[0], indexes
        counts[slot["state"]] += 1
        core = sockets.setdefault(s, {}).setdefault(d, {}).setdefault(c, [])
        core.append(slot)
    tree_sockets = [{"socket-id": s, "dies": [{"die-id": d, "cores": [{"core-id": c, "slots": sockets[s][d][c]}
                                                                     for c in sorted(sockets[s][d])]}
                                              for d in sorted(sockets[s])]}
                    for s in sorted(sockets)]
    return {"machine": machine, "arch": arch, "topology": {}, "granularity": granularity, "vcpus": len(cpus),
            "counts": counts, "sockets": tree_sockets}


# -- text -------------------------------------------------------------------------------------

def _ranges(numbers: list[int]) -> str:
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def slot_label(slot: dict[str, Any]) -> str:
    """``cpu 3 vcpu3`` for a present x86 CPU, ``cpus 8-15`` for an sPAPR core, ``apic 5`` when empty."""
    if slot["state"] == "empty":
        if "arch-id" in slot:
            # an x86 slot (a thread) is named by its APIC ID, an sPAPR or s390x core by its core-id
            return f"{'apic' if 'thread-id' in slot.get('props', {}) else 'core'} {slot['arch-id']}"
        props = slot.get("props", {})
        if "thread-id" in props:
            return f"thread {props['thread-id']}"
        return f"core-id {props['core-id']}" if "core-id" in props else "-"
    indexes = slot.get("cpu-indexes", [])
    text = (f"cpu {indexes[0]}" if len(indexes) == 1 else f"cpus {_ranges(indexes)}") if indexes else "cpu ?"
    if slot.get("id"):
        text += f" {slot['id']}"
    return text


def _header(tree: dict[str, Any]) -> str:
    t = tree.get("topology") or {}
    parts = [p for p in (tree.get("machine"), tree.get("arch")) if p]
    if t:
        parts.append(f"{t['sockets']} socket(s) × {t['dies']} die(s) × {t['cores']} core(s) × {t['threads']} thread(s)")
    counts = tree["counts"]
    slots = sum(counts.values())
    parts.append(f"{tree['vcpus']} vCPU(s), {counts['present'] + counts['pending-unplug']}/{slots} slots used")
    return " · ".join(parts)


def render_text(tree: dict[str, Any], *, color: bool = False) -> str:
    """The topology as lines of text (ANSI colours if ``color``)."""
    def paint(state: str, text: str) -> str:
        return f"{ANSI[state]}{text}{ANSI['reset']}" if color else text

    slots_all = [s for so in tree["sockets"] for d in so["dies"] for c in d["cores"] for s in c["slots"]]
    numa = any("node-id" in s for s in slots_all)
    cells = {id(s): f"{SYMBOLS[s['state']]} {slot_label(s)}" + (f" n{s['node-id']}" if numa and "node-id" in s else "")
             for s in slots_all}
    width = max((len(c) for c in cells.values()), default=0)
    lines = [paint("bold", _header(tree)) if color else _header(tree),
             "  ".join(paint(st, f"{SYMBOLS[st]} {st}") for st in STATES)]
    multi_die = any(len(so["dies"]) > 1 for so in tree["sockets"])
    core_w = max((len(str(c["core-id"])) for so in tree["sockets"] for d in so["dies"] for c in d["cores"]), default=1)
    for so in tree["sockets"]:
        for d in so["dies"]:
            title = f"socket {so['socket-id']}" + (f" / die {d['die-id']}" if multi_die else "")
            lines.append(paint("bold", title) if color else title)
            for c in d["cores"]:
                row = "  ".join(paint(s["state"], cells[id(s)].ljust(width)) for s in c["slots"])
                lines.append(f"  core {str(c['core-id']).rjust(core_w)}  {row}".rstrip())
    if not slots_all:
        lines.append("(no CPU slots)")
    return "\n".join(lines) + "\n"


# -- SVG -------------------------------------------------------------------------------------

def render_svg(tree: dict[str, Any]) -> str:
    """The topology as a standalone SVG document."""
    slot_w, slot_h, gap, pad, label_h = 96, 44, 6, 10, 18
    max_row_w = 1100
    font = "font-family='DejaVu Sans, Verdana, sans-serif'"
    body: list[str] = []
    y = 62
    width = 640

    def esc(text: object) -> str:
        return html.escape(str(text), quote=True)

    multi_die = any(len(so["dies"]) > 1 for so in tree["sockets"])
    for so in tree["sockets"]:
        for d in so["dies"]:
            cores = d["cores"]
            n_slots = max((len(c["slots"]) for c in cores), default=1)
            core_w = n_slots * (slot_w + gap) + gap
            core_h = label_h + slot_h + 2 * gap
            per_row = max(1, min(len(cores) or 1, (max_row_w - 2 * pad) // (core_w + gap)))
            rows = (len(cores) + per_row - 1) // per_row
            box_w = 2 * pad + per_row * (core_w + gap) - gap
            box_h = label_h + 2 * pad + rows * (core_h + gap) - gap
            title = f"socket {so['socket-id']}" + (f" / die {d['die-id']}" if multi_die else "")
            body.append(f"<rect x='10' y='{y}' width='{box_w}' height='{box_h}' rx='8' fill='#e3f2fd' "
                        f"stroke='#1565c0' stroke-width='1.5'/>")
            body.append(f"<text x='{10 + pad}' y='{y + 15}' {font} font-size='13' font-weight='bold' "
                        f"fill='#0d47a1'>{esc(title)}</text>")
            for k, c in enumerate(cores):
                cx = 10 + pad + (k % per_row) * (core_w + gap)
                cy = y + label_h + pad + (k // per_row) * (core_h + gap)
                body.append(f"<rect x='{cx}' y='{cy}' width='{core_w}' height='{core_h}' rx='5' fill='#ffffff' "
                            f"stroke='#90a4ae'/>")
                body.append(f"<text x='{cx + gap}' y='{cy + 13}' {font} font-size='11' fill='#37474f'>"
                            f"core {esc(c['core-id'])}</text>")
                for j, s in enumerate(c["slots"]):
                    sx = cx + gap + j * (slot_w + gap)
                    sy = cy + label_h + gap - 4
                    state = s["state"]
                    dash = " stroke-dasharray='4 3'" if state == "empty" else ""
                    tip = esc(json.dumps({k: v for k, v in s.items() if k != "props"}))
                    body.append(f"<g><title>{tip}</title><rect x='{sx}' y='{sy}' width='{slot_w}' height='{slot_h}' "
                                f"rx='4' fill='{SVG_FILL[state]}' stroke='#455a64'{dash}/>")
                    label = slot_label(s)
                    line1 = label if not s.get("id") else label[: -len(s["id"]) - 1]
                    line2 = s.get("id") or ("n%s" % s["node-id"] if "node-id" in s else state)
                    if s.get("id") and "node-id" in s:
                        line2 += f" · n{s['node-id']}"
                    body.append(f"<text x='{sx + slot_w / 2}' y='{sy + 18}' {font} font-size='12' "
                                f"text-anchor='middle' fill='{SVG_TEXT[state]}'>{esc(line1)}</text>")
                    body.append(f"<text x='{sx + slot_w / 2}' y='{sy + 34}' {font} font-size='10' "
                                f"text-anchor='middle' fill='{SVG_TEXT[state]}'>{esc(line2)}</text></g>")
            width = max(width, box_w + 20)
            y += box_h + 12
    if not tree["sockets"]:
        body.append(f"<text x='10' y='{y + 20}' {font} font-size='13'>(no CPU slots)</text>")
        y += 30
    legend = []
    lx = 10
    for st in STATES:
        dash = " stroke-dasharray='4 3'" if st == "empty" else ""
        legend.append(f"<rect x='{lx}' y='36' width='14' height='14' rx='2' fill='{SVG_FILL[st]}' "
                      f"stroke='#455a64'{dash}/><text x='{lx + 20}' y='48' {font} font-size='12' "
                      f"fill='#212121'>{st}</text>")
        lx += 130
    height = y + 4
    width = max(width, 20 + int(len(_header(tree)) * 8.8))
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>")
    return "\n".join([
        "<?xml version='1.0' encoding='UTF-8'?>", head,
        f"<rect width='{width}' height='{height}' fill='#fafafa'/>",
        f"<text x='10' y='22' {font} font-size='15' font-weight='bold' fill='#212121'>{esc(_header(tree))}</text>",
        *legend, *body, "</svg>", ""])


# -- command line ---------------------------------------------------------------------------------

def _use_color(mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _fingerprint(tree: dict[str, Any]) -> str:
    return json.dumps(tree, sort_keys=True)


def main(argv: list[str]) -> int:
    """``python -m cpuhot show ADDRESS [--svg FILE] [--watch [--duration S] [--interval S]]``"""
    ap = argparse.ArgumentParser(prog="python -m cpuhot show",
                                 description="Draw the CPU topology of a running VM (cpuhot or QEMU).")
    ap.add_argument("address", help="the QMP monitor: unix:PATH or tcp:HOST:PORT")
    ap.add_argument("--svg", metavar="FILE", help="also write the picture as SVG")
    ap.add_argument("--json", action="store_true", help="print the topology tree as JSON instead")
    ap.add_argument("--watch", action="store_true", help="redraw as CPUs come and go (Ctrl-C to stop)")
    ap.add_argument("--interval", type=float, default=0.5, help="--watch: poll at least this often (s)")
    ap.add_argument("--duration", type=float, default=600.0, help="--watch: stop after this many seconds")
    ap.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    ns = ap.parse_args(argv)
    color = _use_color(ns.color)
    try:
        qmp = QMPClient(ns.address, timeout=10.0)
    except (OSError, ValueError) as e:
        print(f"show: {ns.address}: {e}", file=sys.stderr)
        return 2
    try:
        return _run(qmp, ns, color)
    except KeyboardInterrupt:
        print()
        return 0
    except (ConnectionError, TimeoutError) as e:
        if ns.watch:
            print(f"show: {ns.address}: the VM went away ({e})")
            return 0
        print(f"show: {ns.address}: {e}", file=sys.stderr)
        return 2
    except QMPError as e:
        print(f"show: {ns.address}: {e}", file=sys.stderr)
        return 2
    finally:
        qmp.close()


def _emit(tree: dict[str, Any], ns: argparse.Namespace, color: bool, redraw: bool) -> None:
    if ns.json:
        text = json.dumps(tree, indent=2) + "\n"
    else:
        text = render_text(tree, color=color)
    if redraw and color:
        sys.stdout.write("\x1b[H\x1b[2J")
    elif redraw:
        sys.stdout.write(f"--- {time.strftime('%H:%M:%S')}\n")
    sys.stdout.write(text)
    sys.stdout.flush()
    if ns.svg:
        tmp = ns.svg + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(render_svg(tree))
        os.replace(tmp, ns.svg)


def _run(qmp: QMPClient, ns: argparse.Namespace, color: bool) -> int:
    tree = fetch_topology(qmp)
    _emit(tree, ns, color, redraw=False)
    if not ns.watch:
        return 0
    last = _fingerprint(tree)
    deadline = time.monotonic() + ns.duration
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 0
        qmp.get_event(timeout=min(ns.interval, left))    # an event (DEVICE_DELETED, ...) or a poll tick
        while qmp.get_event(timeout=0.0) is not None:
            pass
        if qmp.reader.eof:
            raise ConnectionError("connection closed")
        tree = fetch_topology(qmp)
        fp = _fingerprint(tree)
        if fp != last:
            last = fp
            _emit(tree, ns, color, redraw=True)
