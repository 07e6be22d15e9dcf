"""Every recorded QEMU transcript, replayed against the profile of its QEMU release.

``transcripts/qemu-X.Y/`` holds what real QEMU X.Y did; each transcript is replayed against
cpuhot ``--compat qemu-X.Y``.  A scenario cpuhot cannot match yet is listed in that corpus's
``known-gaps.json`` with the reason (an xfail, strict: it turns red when the gap closes so the list
stays honest).  Scenarios where QEMU itself crashes (tag ``crash``) are replayed up to the crash
only: cpuhot must answer instead.
"""

import json

import pytest

from .replay import CORPORA, Mismatch, corpora, known_gaps, replay, scenario_names


def params():
    for corpus in corpora():
        gaps = known_gaps(corpus)
        for name in scenario_names(corpus):
            marks = []
            if name in gaps:
                marks.append(pytest.mark.xfail(reason=gaps[name], strict=True, raises=Mismatch))
            yield pytest.param(corpus, name, marks=marks, id=f"{corpus}/{name}")


@pytest.mark.parametrize(("corpus", "name"), list(params()))
def test_replay_matches_qemu(corpus, name):
    transcript = json.loads((CORPORA / corpus / f"{name}.json").read_text())
    if "crash" in transcript["tags"]:
        transcript = answer_instead_of_crashing(transcript)
    report = replay(transcript, compat=corpus)
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
    # QEMU's dying words: a failed assertion (``**``) or an error passed to &error_abort
    vms = {k: {**v, "stderr": v["stderr"].split("**\n")[0].split("Unexpected error in ")[0]}
           for k, v in transcript["vms"].items()}
    # QEMU's final settle watched a dead QEMU; cpuhot's answer is checked by the tail instead
    rest = {k: v for k, v in transcript.items() if k != "final_settle"}
    return {**rest, "vms": vms, "steps": steps[:cut - 1] + tail}


@pytest.mark.parametrize("corpus", corpora())
def test_corpus_size_and_gap_budget(corpus):
    names = scenario_names(corpus)
    gaps = known_gaps(corpus)
    assert len(names) >= 240, "the issue asks for at least 240 recorded scenarios per release"
    assert len(gaps) < 0.05 * len(names), "more than 5% of the corpus is a known gap"
    assert set(gaps) <= set(names), "a known gap names a scenario that does not exist"


def test_the_conformance_report_is_current():
    """docs/CONFORMANCE.md (linked from the README) has a section per corpus naming exactly its
    gaps and its size."""
    report = (CORPORA.parent.parent.parent / "docs" / "CONFORMANCE.md").read_text()
    total_gaps = 0
    for corpus in corpora():
        release = corpus.split("-", 1)[1]
        head = f"## QEMU {release} (`--compat {corpus}`)"
        assert head in report, f"no section for {corpus}"
        part = report.split(head, 1)[1].split("\n## ", 1)[0]
        names, gaps = scenario_names(corpus), known_gaps(corpus)
        assert f"of {len(names)} scenarios match" in part
        for name in gaps:
            assert f"- `{name}`" in part
        assert part.count("- `") == len(gaps)
        total_gaps += len(gaps)
    assert report.count("- `") == total_gaps


@pytest.mark.parametrize("name", ["late-s390x-cont", "late-migrate", "late-quit"])
def test_the_final_settle_catches_late_events(name):
    """QEMU sent these late events after the last step: a transcript without them (the final
    settle still recorded) must not replay, since cpuhot sends them too -- and they must be
    complete in the real transcript, which replays."""
    transcript = json.loads((CORPORA / "qemu-7.2" / f"{name}.json").read_text())
    late = [s for s in transcript["steps"] if s.get("late")]
    assert late and transcript["final_settle"] > 0
    assert replay(transcript, compat="qemu-7.2")["compared"] > 0
    cut = {**transcript, "steps": [s for s in transcript["steps"] if not s.get("late")]}
    with pytest.raises(Mismatch, match="after the last step"):
        replay(cut, compat="qemu-7.2")
