"""Timers and watches asked for in words, living on the engine's clock."""

from __future__ import annotations

import pytest

from engine.core.frames import ControlEvent, ControlKind, ScreenCue, ScreenText, TypedText
from engine.core.proactivity import Proactivity
from engine.core.timers import Timer, Watch, request
from tests.test_screen_engine import Item, remarks, run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("remind me in two minutes", Timer(130.0, "Your 2 minute timer is up.")),
        ("Remind me in 2 min to check the oven", Timer(130.0, "Reminder: check the oven.")),
        ("remind me to push the branch in 5 minutes", Timer(310.0, "Reminder: push the branch.")),
        ("set a timer for 30 seconds", Timer(40.0, "Your 30 second timer is up.")),
        ("in half an hour remind me to stretch", Timer(1810.0, "Reminder: stretch.")),
        ("ping me in an hour", Timer(3610.0, "Your 1 hour timer is up.")),
        ("tell me when the tests finish", Watch("tests", 10.0)),
        ("let me know when the build is done", Watch("build", 10.0)),
        ("in two minutes we start the demo", None),
        ("why does this fail?", None),
    ],
)
def test_requests(text: str, expected: Timer | Watch | None) -> None:
    assert request(text, 10.0) == expected


def test_a_timer_fires_on_the_engine_clock_through_a_mute_and_waits_for_a_pause() -> None:
    items: list[Item] = [
        TypedText(1.0, "remind me in two minutes"),
        ControlEvent(30.0, ControlKind.MUTE),
        ControlEvent(60.0, ControlKind.UNMUTE),
        ControlEvent(120.0, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(124.0, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, _ = run(items, 130.0, level=Proactivity.OFF)  # asked for: said at any level
    said = [e for e in remarks(events) if "timer" in e["text"]]
    assert len(said) == 1
    assert said[0]["text"] == "Your 2 minute timer is up." and 124.0 <= said[0]["t"] <= 126.0


def test_a_watch_on_the_tests_says_when_they_finish_once() -> None:
    done = ScreenText(9.0, "XTerm", "+2 lines, last: ===== 12 passed in 0.31s =====", 2)
    events, _ = run([TypedText(1.0, "tell me when the tests finish"), done], 12.0)
    said = [e["text"] for e in remarks(events) if "tests finished" in e["text"]]
    assert said == ["The tests finished: 12 passed in 0.31s"]


def test_a_failing_run_ends_the_watch_with_one_remark_not_two() -> None:
    fail = ScreenCue(9.0, "test_failure", "test_parser fails with KeyError", "test_failure:tp")
    events, _ = run([TypedText(1.0, "tell me when the tests finish"), fail], 14.0)
    said = [e["text"] for e in remarks(events) if "test_parser" in e["text"]]
    assert said == ["The tests finished: test_parser fails with KeyError. Want me to look?"]
