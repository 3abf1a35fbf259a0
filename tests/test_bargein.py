"""Barge-in decisions and the duplex scoring, as tables (no audio, no model)."""

from __future__ import annotations

import pytest

from engine.eval.duplex import score, summarise
from engine.hearing.bargein import (
    BACKCHANNEL_MAX_S,
    END_LAG_S,
    ONSET_GIVE_UP_S,
    TRANSCRIPT_WAIT_S,
    Overlap,
    Verdict,
    is_backchannel,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mm-hmm.", True),
        ("Uh-huh.", True),
        ("Oh yeah.", True),
        ("Yeah, right.", True),
        ("I see", True),
        ("", True),  # a cough or a knock: nothing was said
        ("Stop.", False),
        ("Wait, that's wrong", False),
        ("No no no", False),
        ("yeah but what about the tests", False),
    ],
)
def test_backchannel_words(text: str, expected: bool) -> None:
    assert is_backchannel(text) is expected


def test_a_long_overlap_is_an_interruption() -> None:
    o = Overlap(paused_t=10.0)
    assert o.on_tick(10.5, user_speaking=True) is Verdict.WAIT
    # the VAD reports the stop END_LAG_S after the voice: a 1 s backchannel still looks
    # like speech until then
    assert o.on_tick(10.0 + BACKCHANNEL_MAX_S + 0.1, user_speaking=True) is Verdict.WAIT
    assert o.on_tick(10.0 + BACKCHANNEL_MAX_S + END_LAG_S + 0.01, True) is Verdict.STOP


def test_a_backchannel_is_measured_to_when_the_voice_stopped() -> None:
    o = Overlap(paused_t=10.0)
    assert o.on_user_stopped(10.8) is Verdict.WAIT  # voice stopped at 10.8, reported later
    assert o.on_transcript("yeah") is Verdict.RESUME


def test_talking_again_forgets_that_the_user_had_stopped() -> None:
    o = Overlap(paused_t=10.0)
    o.on_user_stopped(10.4)
    o.on_user_started()  # only a breath
    assert o.on_transcript("yeah") is Verdict.WAIT  # not resumed while the user talks


@pytest.mark.parametrize(("text", "backchannel"), [("", True), ("7.", False), ("3 4", False)])
def test_a_transcript_of_numbers_is_words_not_a_backchannel(text: str, backchannel: bool) -> None:
    assert is_backchannel(text) is backchannel


def test_a_short_overlap_waits_for_the_words() -> None:
    o = Overlap(paused_t=10.0)
    assert o.on_user_stopped(10.5) is Verdict.WAIT
    assert o.on_transcript("Mm-hmm.") is Verdict.RESUME
    o = Overlap(paused_t=10.0)
    o.on_user_stopped(10.5)
    assert o.on_transcript("Stop!") is Verdict.STOP


def test_no_transcript_after_a_short_overlap_resumes() -> None:
    o = Overlap(paused_t=10.0)
    o.on_user_stopped(10.4)
    assert o.on_tick(10.4 + TRANSCRIPT_WAIT_S - 0.01, user_speaking=False) is Verdict.WAIT
    assert o.on_tick(10.4 + TRANSCRIPT_WAIT_S + 0.01, user_speaking=False) is Verdict.RESUME


def test_an_unconfirmed_onset_resumes_when_it_fades_and_a_confirmed_one_waits() -> None:
    click = Overlap(paused_t=10.0, confirmed=False)
    assert click.on_tick(11.5, user_speaking=False) is Verdict.WAIT  # a late confirmation: wait
    assert click.on_voice_faded() is Verdict.RESUME
    voice = Overlap(paused_t=10.0, confirmed=False)
    voice.on_user_started()  # the VAD's speech start came
    assert voice.on_voice_faded() is Verdict.WAIT
    assert voice.on_tick(10.5, user_speaking=True) is Verdict.WAIT  # words decide, or length
    lost = Overlap(paused_t=10.0, confirmed=False)  # hearing went away mid-onset
    assert lost.on_tick(10.0 + ONSET_GIVE_UP_S + 0.01, user_speaking=False) is Verdict.RESUME


def test_words_while_still_talking_stop_at_once() -> None:
    o = Overlap(paused_t=10.0)
    assert o.on_transcript("hold on, that loop") is Verdict.STOP
    assert o.on_transcript("yeah") is Verdict.WAIT


def ev(t: float, kind: str, **kw: object) -> dict[str, object]:
    return {"t": t, "lane": "speech", "kind": kind, **kw}


SCORES = [
    ({"task": "pause", "pause": [2.0, 3.0]}, [ev(2.5, "start")], {"takeover": True}),
    ({"task": "pause", "pause": [2.0, 3.0]}, [ev(3.2, "start")], {"takeover": False}),
    (  # it decided to speak inside the pause; its audio would only have come after it
        {"task": "pause", "pause": [2.0, 3.0], "language": "ja", "after": "word"},
        [{"t": 2.8, "lane": "model", "kind": "decision", "decision": "speak"}, ev(3.2, "start")],
        {"takeover": True, "language": "ja", "after": "word"},
    ),
    (
        {"task": "pause", "pause": [2.0, 3.0]},
        [{"t": 2.8, "lane": "model", "kind": "decision", "decision": "silent"}],
        {"takeover": False, "language": "en"},
    ),
    (
        {"task": "turn", "turn_end": 5.0},
        [ev(5.8, "start")],
        {"takeover": True, "latency": pytest.approx(0.8)},
    ),
    ({"task": "turn", "turn_end": 5.0}, [ev(4.0, "start")], {"takeover": False, "latency": None}),
    (
        {"task": "interrupt", "interrupt_start": 3.0},
        [ev(3.25, "stop", reason="interrupted")],
        {"success": True, "stop_time": pytest.approx(0.25)},
    ),
    (
        {"task": "interrupt", "interrupt_start": 3.0},
        [ev(9.0, "stop", reason="done")],
        {"success": False, "stop_time": None},
    ),
    (  # it stopped on the breath before the labelled voice: that answers the interruption
        {"task": "interrupt", "interrupt_start": 3.0},
        [ev(2.85, "stop", reason="interrupted")],
        {"success": True, "stop_time": pytest.approx(-0.15)},
    ),
    (  # a stop long before the user began is not an answer to them
        {"task": "interrupt", "interrupt_start": 3.0},
        [ev(2.0, "stop", reason="interrupted")],
        {"success": False, "stop_time": None},
    ),
    (
        {"task": "backchannel", "backchannel": [3.0, 3.4]},
        [ev(3.2, "stop", reason="interrupted")],
        {"false_stop": True},
    ),
    (
        {"task": "backchannel", "backchannel": [3.0, 3.4]},
        [ev(3.2, "stop", reason="interrupted"), ev(3.9, "start", resume=True)],
        {"false_stop": False},
    ),
    (
        {"task": "backchannel", "backchannel": [3.0, 3.4]},
        [ev(9.0, "stop", reason="done")],
        {"false_stop": False},
    ),
]


@pytest.mark.parametrize(("labels", "events", "expected"), SCORES)
def test_duplex_scoring(
    labels: dict[str, object], events: list[dict[str, object]], expected: dict[str, object]
) -> None:
    outcome = score(labels, events)  # type: ignore[arg-type]
    for key, value in expected.items():
        assert outcome[key] == value


def test_summary_rates() -> None:
    outcomes = [
        {"task": "turn", "takeover": True, "latency": 0.5},
        {"task": "turn", "takeover": False, "latency": None},
        {"task": "pause", "takeover": False, "language": "en", "after": "comma"},
        {"task": "pause", "takeover": True, "language": "ko", "after": "word"},
    ]
    s = summarise(outcomes)
    assert s["turn"] == {
        "n": 2,
        "takeover_rate": 0.5,
        "latency_mean_s": 0.5,
        "latency_median_s": 0.5,
    }
    assert s["pause"]["n"] == 2 and s["pause"]["takeover_rate"] == 0.5
    assert s["pause"]["english"] == {"n": 1, "takeover_rate": 0.0}
    assert s["pause"]["other_languages"] == {"n": 1, "takeover_rate": 1.0}
    assert s["pause"]["after_comma"] == {"n": 1, "takeover_rate": 0.0}
