"""Every recorded QEMU 7.2 transcript, replayed against cpuhot ``--compat qemu-7.2``.

A scenario cpuhot cannot match yet is listed in ``KNOWN_GAPS`` with the reason (an xfail,
strict: it turns red when the gap closes so the list stays honest).  Scenarios where QEMU
itself crashes (tag ``crash``) are replayed up to the crash only: cpuhot must answer instead.
"""

import json

import pytest

from .replay import TRANSCRIPTS, Mismatch, replay

KNOWN_GAPS: dict[str, str] = {
    "proto-query-commands-x86": "query-commands lists the commands cpuhot serves (the CPU-hotplug surface and "
                                "what clients need around it), not all 216 of QEMU 7.2's",
    "proto-query-commands-ppc64": "query-commands lists the commands cpuhot serves, not all 207 of QEMU 7.2's",
    "coldplug-pc-with-boot-cpus": "qom-list /machine/unattached: cpuhot models the CPUs there, not the ~120 "
                                  "other board objects (memory regions, IRQs, chipset devices) QEMU lists",
}

SCENARIOS = sorted(p.stem for p in TRANSCRIPTS.glob("*.json"))


def params():
    for name in SCENARIOS:
        marks = []
        if name in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[name], strict=True, raises=Mismatch))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(params()))
def test_replay_matches_qemu(name):
    transcript = json.loads((TRANSCRIPTS / f"{name}.json").read_text())
    if "crash" in transcript["tags"]:
        transcript = answer_instead_of_crashing(transcript)
    report = replay(transcript)
    assert report["compared"] > 0


def answer_instead_of_crashing(transcript: dict) -> dict:
    """Where QEMU died (the step before its EOF), cpuhot must match everything up to there, then
    answer the fatal command and keep serving: the replay expects a reply and a live query-status."""
    steps = transcript["steps"]
    cut = next(i for i, s in enumerate(steps) if s.get("eof"))
    fatal = steps[cut - 1]
    assert "send" in fatal
    vm, client = fatal["vm"], fatal["client"]
    tail = [fatal, {"vm": vm, "client": client, "recv_any_reply": True},
            {"vm": vm, "client": client, "send": {"execute": "query-status"}},
            {"vm": vm, "client": client, "recv_any_reply": True}]
    vms = {k: {**v, "stderr": v["stderr"].split("**\n")[0]} for k, v in transcript["vms"].items()}
    return {**transcript, "vms": vms, "steps": steps[:cut - 1] + tail}


def test_corpus_size_and_gap_budget():
    assert len(SCENARIOS) >= 80
    assert len(KNOWN_GAPS) < 0.05 * len(SCENARIOS), "more than 5% of the corpus is a known gap"
    assert set(KNOWN_GAPS) <= set(SCENARIOS), "a known gap names a scenario that does not exist"


def test_the_conformance_report_is_current():
    """docs/CONFORMANCE.md (linked from the README) names exactly today's gaps and corpus size."""
    report = (TRANSCRIPTS.parent.parent.parent / "docs" / "CONFORMANCE.md").read_text()
    assert f"of {len(SCENARIOS)} scenarios match" in report
    for name in KNOWN_GAPS:
        assert f"`{name}`" in report
    assert report.count("- `") == len(KNOWN_GAPS)
