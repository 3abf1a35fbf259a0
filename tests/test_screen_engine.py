"""Screen cues through the real engine in virtual time (fake model): when Tandem speaks up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from engine.core.engine import Engine, ReplyBudget, asks_about_screen
from engine.core.events import TimelineEvent, to_json
from engine.core.frames import (
    ControlEvent,
    ControlKind,
    FocusChange,
    ScreenCue,
    ScreenText,
    TranscriptDelta,
    TypedText,
)
from engine.core.proactivity import Proactivity, ProactivityConfig, offer
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.voice.handles import PacedTextSpeech
from tests.fakes import FakeBackend
from tests.timelines import drive

Item = TypedText | FocusChange | ControlEvent | TranscriptDelta | ScreenCue | ScreenText

FAIL = ScreenCue(
    2.1,
    "test_failure",
    "test_parser fails with KeyError",
    "test_failure:test_parser",
    (4, 300, 600, 18),
    "XTerm",
)


def run(
    items: Sequence[Item],
    duration: float,
    *,
    level: Proactivity = Proactivity.NORMAL,
    screen_text: Callable[[], str] | None = None,
) -> tuple[list[dict[str, Any]], FakeBackend]:
    fake = FakeBackend(reply="Sure.")
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    events: list[TimelineEvent] = []
    engine = Engine(
        worker,
        PacedTextSpeech(),
        events.append,
        budget=ReplyBudget(8),
        proactive=ProactivityConfig(level=level),
        screen_text=screen_text,
    )
    try:
        asyncio.run(drive(engine, items, duration))
    finally:
        worker.close()
    return [to_json(e) for e in sorted(events, key=lambda e: e.t)], fake


def remarks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["lane"] == "speech" and e["kind"] == "start"]


def test_a_failure_on_screen_is_offered_within_three_seconds() -> None:
    events, fake = run([FAIL], 6.0)
    cue = next(e for e in events if e["lane"] == "screen" and e["kind"] == "cue")
    assert cue == {
        "t": 2.1,
        "lane": "screen",
        "kind": "cue",
        "what": "test_failure",
        "summary": "test_parser fails with KeyError",
        "box": [4, 300, 600, 18],
    }
    (said,) = remarks(events)
    assert said["text"] == "test_parser fails with KeyError: want me to look?" == offer(FAIL)
    assert 2.1 < said["t"] <= 2.1 + 3.0
    decision = next(e for e in events if e["lane"] == "model" and e["decision"] == "interject")
    assert decision["reason"] == "screen_test_failure" and decision["t"] <= said["t"]
    session = " ".join(fake.appends)
    assert 'cue test_failure "test_parser fails with KeyError"' in session
    assert "you said" not in session  # its own remark is recorded as its decision


def test_never_while_the_user_speaks_and_dropped_when_stale() -> None:
    talk: list[Item] = [
        ControlEvent(1.0, ControlKind.USER_STARTED_SPEAKING),
        FAIL,
        ControlEvent(11.0, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, _ = run(talk, 14.0)
    assert remarks(events) == []  # it waited, and the cue went stale (8 s) before the pause


def test_it_waits_for_the_pause_when_the_cue_is_still_fresh() -> None:
    talk: list[Item] = [
        ControlEvent(1.0, ControlKind.USER_STARTED_SPEAKING),
        FAIL,
        ControlEvent(3.0, ControlKind.USER_STOPPED_SPEAKING, voice_t=2.9),
        TranscriptDelta(3.3, "", final=True),  # a cough: no words, no turn to answer
    ]
    events, _ = run(talk, 8.0)
    (said,) = remarks(events)
    assert said["t"] >= 3.0 and said["text"].startswith("test_parser fails")


def test_a_breath_between_words_is_not_a_pause() -> None:
    """The VAD ended the speech but the words are not recognised yet, and the user goes on:
    no remark in the gap (measured on real speech in ``tandem eval screen``)."""
    talk: list[Item] = [
        ControlEvent(1.0, ControlKind.USER_STARTED_SPEAKING),
        FAIL,
        ControlEvent(2.4, ControlKind.USER_STOPPED_SPEAKING),
        ControlEvent(3.2, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(5.0, ControlKind.USER_STOPPED_SPEAKING),
        TranscriptDelta(5.3, "", final=True),
    ]
    events, _ = run(talk, 9.0)
    (said,) = [e for e in remarks(events) if "test_parser" in e["text"]]
    assert said["t"] >= 5.0 + 1.5


def test_the_same_cue_is_never_said_twice() -> None:
    again = ScreenCue(30.0, FAIL.what, FAIL.summary, FAIL.key, (4, 500, 600, 18), "XTerm")
    events, _ = run([FAIL, again], 34.0)
    assert len(remarks(events)) == 1
    assert len([e for e in events if e["lane"] == "screen" and e["kind"] == "cue"]) == 2


def test_off_says_nothing_and_critical_only_warns_about_destruction() -> None:
    rm = ScreenCue(3.0, "destructive_command", "rm -rf build", "destructive:rm -rf build")
    events, _ = run([FAIL, rm], 6.0, level=Proactivity.OFF)
    assert remarks(events) == []
    events, _ = run([FAIL, rm], 6.0, level=Proactivity.CRITICAL)
    (said,) = remarks(events)
    assert said["text"].startswith("Careful: rm -rf build")


def test_not_now_quiets_the_next_failure() -> None:
    later = ScreenCue(6.0, "traceback", "KeyError: 'name'", "traceback:KeyError")
    events, _ = run([TypedText(1.0, "not now"), later], 10.0)
    assert all("KeyError" not in e["text"] for e in remarks(events))


def test_a_question_about_the_screen_brings_the_latest_screen_text() -> None:
    text = "\n".join(
        [
            "$ pytest",
            "FAILED tests/test_parser.py::test_parse - KeyError: 'name'",
            "OPENAI_API_KEY=[redacted]",
        ]
    )
    events, fake = run(
        [TypedText(1.0, "what's wrong on my screen?")], 3.0, screen_text=lambda: text
    )
    session = " ".join(fake.appends)
    assert (
        "screen now \"$ pytest FAILED tests/test_parser.py::test_parse - KeyError: 'name'"
        in session
    )
    assert any(e["lane"] == "model" and e["decision"] == "speak" for e in events)


def test_screen_questions_are_recognised() -> None:
    for q in ("what's wrong on my screen?", "can you look at this?", "What is on the screen?"):
        assert asks_about_screen(q)
    for q in ("how do I reverse a list?", "run the tests"):
        assert not asks_about_screen(q)


def test_with_a_vision_model_the_question_is_also_asked_of_it() -> None:
    asked: list[str] = []
    fake = FakeBackend(reply="Sure.")
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    engine = Engine(worker, PacedTextSpeech(), lambda _e: None, look=asked.append)
    try:
        engine.data.put(TypedText(1.0, "can you look at this?"))
        engine.data.put(TypedText(1.1, "how do I reverse a list?"))
        asyncio.run(engine.tick(1.2))
    finally:
        worker.close()
    assert asked == ["can you look at this?"]
