"""The engine's phases as a table: which flags mean which phase, and which changes may happen."""

from __future__ import annotations

import pytest

from engine.core.phases import TRANSITIONS, Phase, phase_of

P = Phase
BASE = {
    "muted": False,
    "paused": False,
    "user_speaking": False,
    "assistant_speaking": False,
    "reply_committed": False,
    "turn_pending": False,
}

TABLE = [
    ({}, P.LISTENING),
    ({"user_speaking": True}, P.USER_SPEAKING),
    ({"user_speaking": True, "assistant_speaking": True}, P.USER_SPEAKING),  # its backchannel
    ({"turn_pending": True}, P.ENDPOINTING),
    ({"turn_pending": True, "reply_committed": True}, P.PREPARING),
    ({"reply_committed": True}, P.PREPARING),
    ({"assistant_speaking": True}, P.SPEAKING),
    ({"assistant_speaking": True, "turn_pending": True}, P.SPEAKING),
    ({"paused": True, "user_speaking": True}, P.PAUSED),  # the arbiter has not decided
    ({"paused": True}, P.PAUSED),
    ({"muted": True}, P.MUTED),
    ({"muted": True, "assistant_speaking": True}, P.SPEAKING),  # typed to while muted
    ({"muted": True, "turn_pending": True}, P.ENDPOINTING),
]


@pytest.mark.parametrize(("flags", "phase"), TABLE)
def test_phase_of_each_combination(flags: dict[str, bool], phase: Phase) -> None:
    assert phase_of(**{**BASE, **flags}) is phase


def test_every_phase_has_its_transitions() -> None:
    assert set(TRANSITIONS) == set(Phase)


@pytest.mark.parametrize(
    ("before", "after", "allowed"),
    [
        (P.USER_SPEAKING, P.SPEAKING, False),  # never starts talking over the user
        (P.USER_SPEAKING, P.PREPARING, False),  # nor commits to answer while they talk
        (P.USER_SPEAKING, P.ENDPOINTING, True),
        (P.SPEAKING, P.PAUSED, True),
        (P.PAUSED, P.SPEAKING, True),  # a backchannel resumes
        (P.ENDPOINTING, P.PREPARING, True),
        (P.PREPARING, P.SPEAKING, True),
        (P.LISTENING, P.SPEAKING, True),  # an interjection, a forced say
    ],
)
def test_transitions(before: Phase, after: Phase, allowed: bool) -> None:
    assert (after in TRANSITIONS[before]) is allowed
