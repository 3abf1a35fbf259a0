"""The decision policy as a table: the model proposes, the policy disposes."""

from __future__ import annotations

import pytest

from engine.core.frames import DecisionKind as K
from engine.core.frames import Proposal
from engine.core.policy import HOLD_S, PolicyConfig, PolicyInput, decide

CFG = PolicyConfig()  # eagerness 0.5: endpoint 0.5 s, answer threshold 0.3


def prop(**probs: float) -> Proposal:
    return Proposal({K(k): v for k, v in probs.items()})


SILENT = prop(silent=0.97, speak=0.03)
SPEAKY = prop(silent=0.4, speak=0.6)
HANDY = prop(silent=0.1, speak=0.2, handoff=0.7)
BACKCH = prop(backchannel=0.7, silent=0.3)
INTERJ = prop(interject=0.8, silent=0.2)
STOPPY = prop(stop=0.9, silent=0.1)

# (case, input, expected decision, expected reason)
TABLE = [
    (
        "overlap is the barge-in arbiter's, not the policy's: no second stop rule",
        PolicyInput(10, SPEAKY, user_speaking=True, assistant_speaking=True),
        K.SILENT,
        "user_has_floor",
    ),
    (
        "its own backchannel playing while the user talks is not stopped",
        PolicyInput(
            10, BACKCH, user_speaking=True, assistant_speaking=True, last_backchannel_t=9.8
        ),
        K.SILENT,
        "user_has_floor",
    ),
    (
        "the user talking wins over a typed request",
        PolicyInput(10, HANDY, user_speaking=True, assistant_speaking=True, typed_pending=True),
        K.SILENT,
        "user_has_floor",
    ),
    ("user has the floor", PolicyInput(10, SPEAKY, user_speaking=True), K.SILENT, "user_has_floor"),
    (
        "never speak over the user even if typed",
        PolicyInput(10, SPEAKY, user_speaking=True, typed_pending=True),
        K.SILENT,
        "user_has_floor",
    ),
    (
        "backchannel when the model asks",
        PolicyInput(10, BACKCH, user_speaking=True),
        K.BACKCHANNEL,
        "model_backchannel",
    ),
    (
        "backchannels are rate limited",
        PolicyInput(10, BACKCH, user_speaking=True, last_backchannel_t=8),
        K.SILENT,
        "user_has_floor",
    ),
    (
        "assistant keeps the floor",
        PolicyInput(10, SPEAKY, assistant_speaking=True),
        K.SILENT,
        "assistant_has_floor",
    ),
    (
        "typed request waits while speaking",
        PolicyInput(10, SPEAKY, assistant_speaking=True, typed_pending=True),
        K.SILENT,
        "assistant_has_floor",
    ),
    (
        "model may stop itself when sure",
        PolicyInput(10, STOPPY, assistant_speaking=True),
        K.STOP,
        "model_stop",
    ),
    (
        "a typed request is answered",
        PolicyInput(10, SILENT, typed_pending=True),
        K.SPEAK,
        "typed_request",
    ),
    (
        "a typed task is handed off",
        PolicyInput(10, HANDY, typed_pending=True),
        K.HANDOFF,
        "typed_request",
    ),
    (
        "wait for the end-point",
        PolicyInput(10.3, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.9),
        K.SILENT,
        "endpointing",
    ),
    (
        "answer a finished sentence after the end-point",
        PolicyInput(10.6, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.9),
        K.SPEAK,
        "turn_end",
    ),
    (
        "a finished question needs no model agreement",
        PolicyInput(10.55, SILENT, user_turn_ended_at=10.0, turn_complete=1.0),
        K.SPEAK,
        "turn_end",
    ),
    (
        "hand off after the end-point",
        PolicyInput(10.6, HANDY, user_turn_ended_at=10.0, turn_complete=0.9),
        K.HANDOFF,
        "turn_end",
    ),
    (
        "words that broke off wait although the model would speak",
        PolicyInput(11.4, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.1),
        K.SILENT,
        "endpointing",
    ),
    (
        "a turn just short of sure outlasts a thinking pause",
        PolicyInput(11.1, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.79),
        K.SILENT,
        "endpointing",
    ),
    (
        "... and is answered after it",
        PolicyInput(11.21, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.79),
        K.SPEAK,
        "turn_end",
    ),
    (
        "a turn that is surely finished is answered at the end-point",
        PolicyInput(10.51, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.8),
        K.SPEAK,
        "turn_end",
    ),
    (
        "less finished words wait longer",
        PolicyInput(11.25, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.6),
        K.SILENT,
        "endpointing",
    ),
    (
        "... up to their wait",
        PolicyInput(11.28, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.6),
        K.SPEAK,
        "turn_end",
    ),
    (
        "answer at the latest after max wait",
        PolicyInput(11.6, SILENT, user_turn_ended_at=10.0),
        K.SPEAK,
        "turn_end_timeout",
    ),
    ("interject when confident", PolicyInput(100, INTERJ), K.INTERJECT, "model_interject"),
    (
        "interjection cooldown",
        PolicyInput(100, INTERJ, last_interjection_t=90),
        K.SILENT,
        "interject_cooldown",
    ),
    (
        "weak interjection is ignored",
        PolicyInput(100, prop(interject=0.5, silent=0.5)),
        K.SILENT,
        "nothing_to_do",
    ),
    ("nothing proposed", PolicyInput(100, Proposal()), K.SILENT, "nothing_to_do"),
    ("silence by default", PolicyInput(100, SILENT), K.SILENT, "nothing_to_do"),
]


@pytest.mark.parametrize(("case", "inp", "kind", "reason"), TABLE, ids=[row[0] for row in TABLE])
def test_policy_table(case: str, inp: PolicyInput, kind: K, reason: str) -> None:
    assert decide(inp, CFG) == (kind, reason)


@pytest.mark.parametrize(("eagerness", "answers_at"), [(0.0, 0.8), (0.5, 0.5), (1.0, 0.2)])
def test_eagerness_moves_the_end_point(eagerness: float, answers_at: float) -> None:
    cfg = PolicyConfig(eagerness=eagerness)
    speaky = prop(speak=0.6, silent=0.4)
    before = PolicyInput(10 + answers_at - 0.1, speaky, user_turn_ended_at=10, turn_complete=1.0)
    after = PolicyInput(10 + answers_at + 0.01, speaky, user_turn_ended_at=10, turn_complete=1.0)
    assert decide(before, cfg)[0] is K.SILENT
    assert decide(after, cfg)[0] is K.SPEAK


def test_eager_users_take_a_less_certain_turn_as_finished() -> None:
    shy, eager = PolicyConfig(eagerness=0.0), PolicyConfig(eagerness=1.0)
    inp = PolicyInput(10.9, SPEAKY, user_turn_ended_at=10.0, turn_complete=0.75)
    assert decide(inp, shy)[0] is K.SILENT  # not sure at 0.9: it outlasts a pause
    assert decide(inp, eager)[0] is K.SPEAK  # sure at 0.7
    assert shy.required_silence_s(0.75) >= HOLD_S > eager.required_silence_s(0.75)


@pytest.mark.parametrize("eagerness", [0.0, 0.5, 1.0])
def test_any_turn_not_surely_finished_outlasts_a_thinking_pause(eagerness: float) -> None:
    cfg = PolicyConfig(eagerness=eagerness)
    waits = [cfg.required_silence_s(c / 100) for c in range(101)]
    unsure = [w for c, w in enumerate(waits) if c / 100 < cfg.sure_turn()]
    assert min(unsure) >= HOLD_S
    assert max(waits) <= cfg.max_wait_s
    assert waits == sorted(waits, reverse=True)  # more finished never waits longer
    assert cfg.required_silence_s(1.0) == cfg.endpoint_s()


def test_a_short_max_wait_caps_the_hold() -> None:
    cfg = PolicyConfig(max_wait_s=1.0)
    assert cfg.required_silence_s(0.0) == cfg.required_silence_s(0.5) == 1.0
