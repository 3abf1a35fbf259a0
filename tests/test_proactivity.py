"""The proactivity policy as a table: when Tandem may speak up about the screen."""

from __future__ import annotations

import pytest

from engine.core.frames import ScreenCue
from engine.core.proactivity import (
    LOWER,
    Feedback,
    Proactivity,
    ProactivityConfig,
    Situation,
    Verdict,
    decide,
    feedback,
    offer,
)

FAIL = ScreenCue(
    10.0, "test_failure", "test_parser fails with KeyError", "test_failure:test_parser"
)
RM = ScreenCue(10.0, "destructive_command", "rm -rf build", "destructive:rm -rf build")
NORMAL = ProactivityConfig()
CHATTY = ProactivityConfig(level=Proactivity.CHATTY)
CRITICAL = ProactivityConfig(level=Proactivity.CRITICAL)
OFF = ProactivityConfig(level=Proactivity.OFF)

# (case, cue, now, situation, config, verdict, reason)
TABLE = [
    (
        "a fresh failure with nobody talking",
        FAIL,
        10.2,
        Situation(),
        NORMAL,
        Verdict.INTERJECT,
        "screen_test_failure",
    ),
    (
        "never the same cue twice",
        FAIL,
        10.2,
        Situation(seen_keys=frozenset({FAIL.key})),
        NORMAL,
        Verdict.DROP,
        "repeat",
    ),
    ("stale: the moment passed", FAIL, 18.5, Situation(), NORMAL, Verdict.DROP, "stale"),
    ("off: nothing, not even critical", RM, 10.2, Situation(), OFF, Verdict.DROP, "below_level"),
    (
        "critical only: a failure is not enough",
        FAIL,
        10.2,
        Situation(),
        CRITICAL,
        Verdict.DROP,
        "below_level",
    ),
    (
        "critical only: a destructive command is",
        RM,
        10.2,
        Situation(),
        CRITICAL,
        Verdict.INTERJECT,
        "screen_destructive_command",
    ),
    (
        "never while the user speaks",
        FAIL,
        10.2,
        Situation(user_speaking=True),
        NORMAL,
        Verdict.WAIT,
        "user_has_floor",
    ),
    (
        "not even critical while the user speaks",
        RM,
        10.2,
        Situation(user_speaking=True),
        NORMAL,
        Verdict.WAIT,
        "user_has_floor",
    ),
    (
        "the user's turn is answered first",
        FAIL,
        10.2,
        Situation(user_turn_pending=True),
        NORMAL,
        Verdict.WAIT,
        "user_has_floor",
    ),
    (
        "not over its own voice",
        FAIL,
        10.2,
        Situation(assistant_speaking=True),
        NORMAL,
        Verdict.WAIT,
        "assistant_has_floor",
    ),
    (
        "rate limit: three in ten minutes",
        FAIL,
        10.2,
        Situation(interjections=(-400.0, -300.0, -100.0)),
        NORMAL,
        Verdict.WAIT,
        "rate_limit",
    ),
    (
        "the window slides",
        FAIL,
        10.2,
        Situation(interjections=(-700.0, -300.0, -100.0)),
        NORMAL,
        Verdict.INTERJECT,
        "screen_test_failure",
    ),
    (
        "critical cues are exempt from the rate limit",
        RM,
        10.2,
        Situation(interjections=(-400.0, -300.0, 5.0)),
        NORMAL,
        Verdict.INTERJECT,
        "screen_destructive_command",
    ),
    (
        "a gap after the last remark",
        FAIL,
        10.2,
        Situation(interjections=(0.0,)),
        NORMAL,
        Verdict.WAIT,
        "gap",
    ),
    (
        "chatty: half the gap",
        FAIL,
        10.2,
        Situation(interjections=(0.0,)),
        CHATTY,
        Verdict.INTERJECT,
        "screen_test_failure",
    ),
    (
        "a breath between words is not a pause",
        FAIL,
        10.2,
        Situation(user_quiet_s=0.3),
        NORMAL,
        Verdict.WAIT,
        "user_pausing",
    ),
    (
        "a reminder the user asked for is said even when off",
        ScreenCue(10.0, "reminder", "Reminder: stretch.", "reminder:1"),
        40.0,
        Situation(),
        OFF,
        Verdict.INTERJECT,
        "asked_reminder",
    ),
    (
        "but never over the user",
        ScreenCue(10.0, "reminder", "Reminder: stretch.", "reminder:1"),
        40.0,
        Situation(user_speaking=True),
        OFF,
        Verdict.WAIT,
        "floor_taken",
    ),
    (
        "snoozed: failures are dropped",
        FAIL,
        10.2,
        Situation(snoozed_until=100.0),
        NORMAL,
        Verdict.DROP,
        "snoozed",
    ),
    (
        "snoozed: critical still passes",
        RM,
        10.2,
        Situation(snoozed_until=100.0),
        NORMAL,
        Verdict.INTERJECT,
        "screen_destructive_command",
    ),
    (
        "the snooze ends",
        FAIL,
        10.2,
        Situation(snoozed_until=10.0),
        NORMAL,
        Verdict.INTERJECT,
        "screen_test_failure",
    ),
]


Row = tuple[str, ScreenCue, float, Situation, ProactivityConfig, Verdict, str]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_policy_table(row: Row) -> None:
    _, cue, now, sit, cfg, verdict, reason = row
    assert decide(cue, now, sit, cfg) == (verdict, reason)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not now", Feedback.SNOOZE),
        ("Not right now, I'm busy.", Feedback.SNOOZE),
        ("stop telling me about that", Feedback.LOWER),
        ("please stop interrupting me", Feedback.LOWER),
        ("shut up", Feedback.LOWER),
        ("be quieter please", Feedback.LOWER),
        ("why does this test fail?", None),
        ("tell me when the tests finish", None),
    ],
)
def test_feedback(text: str, expected: Feedback | None) -> None:
    assert feedback(text) is expected


def test_stop_telling_me_lowers_one_level_at_a_time_down_to_off() -> None:
    level = Proactivity.CHATTY
    seen = [level]
    for _ in range(4):
        level = LOWER[level]
        seen.append(level)
    assert seen == [
        Proactivity.CHATTY,
        Proactivity.NORMAL,
        Proactivity.CRITICAL,
        Proactivity.OFF,
        Proactivity.OFF,
    ]


def test_the_remark_is_brief_and_offers_to_look() -> None:
    said = offer(FAIL)
    assert said == "test_parser fails with KeyError: want me to look?"
    assert "can't be undone" in offer(RM)
    for what in ("traceback", "build_error", "type_error"):
        text = offer(ScreenCue(0, what, "x.py line 3: boom", what))
        assert "Want me to look?" in text and len(text.split()) < 15
