"""Scripted timelines through the engine in virtual time (fake model, real everything else)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from engine.clock import VirtualClock
from engine.engine import Engine, ReplyBudget, TimelineEvent
from engine.frames import TICK_S, ControlEvent, ControlKind, FocusChange, TranscriptDelta, TypedText
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.speech import PacedTextSpeech
from tests.fakes import FakeBackend

Item = TypedText | FocusChange | ControlEvent | TranscriptDelta


def run(
    items: Sequence[Item],
    duration: float,
    *,
    reply: str = "Use reversed or slicing.",
    rules: dict[str, str] | None = None,
    tokens_per_tick: int = 8,
) -> tuple[list[dict[str, Any]], FakeBackend]:
    fake = FakeBackend(rules=rules, reply=reply)
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    events: list[TimelineEvent] = []
    engine = Engine(worker, PacedTextSpeech(), events.append, budget=ReplyBudget(tokens_per_tick))
    clock = VirtualClock()

    async def drive() -> None:
        pending = sorted(items, key=lambda i: i.t)
        for k in range(1, round(duration / TICK_S) + 1):
            tick_t = round(k * TICK_S, 6)
            while pending and pending[0].t <= tick_t:
                item = pending.pop(0)
                await clock.sleep_until(item.t)
                if isinstance(item, ControlEvent):
                    await engine.control(item)
                else:
                    engine.data.put(item)
            await clock.sleep_until(tick_t)
            await engine.tick(tick_t)
        engine.flush(clock.now())

    try:
        asyncio.run(drive())
    finally:
        worker.close()
    return [e.to_json() for e in sorted(events, key=lambda e: e.t)], fake


def lane(events: list[dict[str, Any]], name: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["lane"] == name and (kind is None or e["kind"] == kind)]


def test_a_typed_question_is_answered_within_a_tick() -> None:
    events, _ = run([TypedText(1.05, "how do I reverse a list?")], 5.0)
    decisions = [e for e in lane(events, "model") if e["decision"] != "silent"]
    assert decisions[0] == {
        "t": 1.2,
        "lane": "model",
        "kind": "decision",
        "decision": "speak",
        "reason": "typed_request",
    }
    start = lane(events, "speech", "start")[0]
    assert start["t"] == 1.2 and start["text"] == "Use reversed or slicing."
    stop = lane(events, "speech", "stop")[0]
    assert stop["reason"] == "done" and stop["t"] > start["t"]


def test_a_long_reply_is_prepared_over_several_ticks() -> None:
    reply = " ".join(f"w{i}" for i in range(20))
    events, _ = run([TypedText(1.0, "explain")], 4.0, reply=reply, tokens_per_tick=8)
    start = lane(events, "speech", "start")[0]
    assert start["t"] == pytest.approx(1.4)  # 8 + 8 + 4 words: three ticks
    assert start["text"] == reply


def test_quiet_ticks_do_not_call_the_model() -> None:
    events, fake = run([], 10.0)
    assert len(lane(events, "tick")) == 50
    assert fake.label_calls == 5  # one heartbeat every 2 s, nothing else
    assert all(e["decision"] == "silent" for e in lane(events, "model"))


def test_barge_in_stops_the_assistant_at_once_and_is_remembered() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(3.6, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, fake = run(items, 5.0)
    stop = lane(events, "speech", "stop")[0]
    assert stop == {"t": 2.05, "lane": "speech", "kind": "stop", "reason": "interrupted"}
    assert len(lane(events, "speech", "start")) == 1  # a long overlap: no resume
    cut = [a for a in fake.appends if "you stopped after" in a]
    assert cut and '"Let me' in cut[0]
    assert any("you said" in a and "walk you through" in a for a in fake.appends)


def test_a_short_overlap_with_no_words_resumes_the_utterance() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(2.4, ControlKind.USER_STOPPED_SPEAKING),  # a cough
    ]
    events, fake = run(items, 8.0)
    starts = lane(events, "speech", "start")
    assert len(starts) == 2 and starts[1].get("resume") is True
    assert starts[1]["t"] == pytest.approx(2.4 + 0.6, abs=0.2)
    assert say.endswith(starts[1]["text"]) and len(starts[1]["text"]) < len(say)
    assert not any("you stopped after" in a for a in fake.appends)


def test_a_stop_command_acts_at_once_not_at_the_next_tick() -> None:
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, "one two three four five six seven eight"),
        ControlEvent(1.33, ControlKind.STOP_SPEAKING),
    ]
    events, _ = run(items, 3.0)
    assert lane(events, "speech", "stop")[0]["t"] == pytest.approx(1.33)


def test_a_typed_request_during_speech_is_answered_after_it() -> None:
    items = [
        ControlEvent(0.5, ControlKind.FORCE_SAY, "one two three four five six"),
        TypedText(1.0, "and the tests?"),
    ]
    events, _ = run(items, 6.0)
    starts = lane(events, "speech", "start")
    first_stop = lane(events, "speech", "stop")[0]
    assert len(starts) == 2
    assert starts[1]["t"] >= first_stop["t"]


def test_a_bare_voice_onset_pauses_at_once_and_resumes_when_not_confirmed() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.VOICE_ONSET),  # a click: the VAD never confirms it
    ]
    events, _ = run(items, 6.0)
    stop = lane(events, "speech", "stop")[0]
    assert stop == {"t": 2.05, "lane": "speech", "kind": "stop", "reason": "interrupted"}
    starts = lane(events, "speech", "start")
    assert len(starts) == 2 and starts[1].get("resume") is True
    assert starts[1]["t"] == pytest.approx(2.4)  # the first tick after ONSET_CONFIRM_S
    assert lane(events, "vad") == []


def test_a_confirmed_onset_stops_from_the_onset_not_from_the_start() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.VOICE_ONSET),
        ControlEvent(2.15, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(3.6, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, _ = run(items, 5.0)
    assert [e["t"] for e in lane(events, "speech", "stop")] == [2.05]
    assert len(lane(events, "speech", "start")) == 1  # an interruption: no resume


def spoken_turn(end: float, text: str) -> list[Item]:
    """The user spoke from 0.5 s to ``end``; the final transcript came 0.2 s later."""
    return [
        ControlEvent(0.5, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(end, ControlKind.USER_STOPPED_SPEAKING),
        TranscriptDelta(end + 0.2, text, final=True),
    ]


def test_the_answer_is_prepared_while_the_end_point_waits() -> None:
    reply = " ".join(f"w{i}" for i in range(20))  # three ticks of preparation
    events, _ = run(spoken_turn(1.5, "Run the tests."), 5.0, reply=reply, rules={})
    # a finished sentence: answer after 0.6 s of silence, at the 2.2 tick, with the reply
    # prepared since the transcript's tick (1.8) instead of from 2.2 on
    decision = next(e for e in lane(events, "model") if e["decision"] == "speak")
    assert decision["t"] == 2.2 and decision["reason"] == "turn_end"
    assert lane(events, "speech", "start")[0]["t"] == 2.2


def test_words_that_broke_off_wait_longer_than_a_finished_sentence() -> None:
    finished, _ = run(spoken_turn(1.5, "Run the tests."), 5.0, rules={})
    broke_off, _ = run(spoken_turn(1.5, "Run the tests and the..."), 5.0, rules={})
    t_finished = lane(finished, "speech", "start")[0]["t"]
    t_broke_off = lane(broke_off, "speech", "start")[0]["t"]
    assert t_finished == 2.2 and t_broke_off == 3.0  # 0.6 s vs 1.4 s of silence


def test_a_cough_after_a_question_does_not_cancel_the_answer() -> None:
    items = [
        *spoken_turn(1.5, "Why does this test fail?"),
        ControlEvent(1.8, ControlKind.USER_STARTED_SPEAKING),  # a cough
        ControlEvent(2.0, ControlKind.USER_STOPPED_SPEAKING),
        TranscriptDelta(2.3, "", final=True),  # no words in it
    ]
    events, _ = run(items, 4.0, rules={})
    starts = lane(events, "speech", "start")
    assert starts and starts[0]["t"] == 2.4  # answered once the cough had no words
    assert all(e["text"] for e in lane(events, "asr"))  # the empty final is not shown


def test_a_speculative_answer_is_dropped_when_the_user_goes_on() -> None:
    items = [
        *spoken_turn(1.5, "So I was thinking that the"),
        ControlEvent(2.3, ControlKind.USER_STARTED_SPEAKING),
    ]
    events, fake = run(items, 4.0, rules={})
    assert lane(events, "speech", "start") == []
    assert any(a.startswith(" silent\n") for a in fake.appends)


def test_a_reply_being_prepared_is_dropped_when_the_user_goes_on() -> None:
    reply = " ".join(f"w{i}" for i in range(40))
    items = [
        TypedText(1.0, "so the thing is"),
        ControlEvent(1.3, ControlKind.USER_STARTED_SPEAKING),
    ]
    events, fake = run(items, 3.0, reply=reply)
    assert lane(events, "speech", "start") == []
    assert any(a.startswith(" silent\n") for a in fake.appends)


def test_lines_arriving_while_a_reply_is_prepared_are_kept_in_order() -> None:
    reply = " ".join(f"w{i}" for i in range(20))
    items = [TypedText(1.0, "explain"), FocusChange(1.1, "firefox", "docs")]
    _, fake = run(items, 5.0, reply=reply)
    joined = "".join(fake.appends)
    assert joined.index(' speak "w0') < joined.index('app firefox "docs"')


def test_mute_revokes_the_microphone_on_the_spot() -> None:
    items = [ControlEvent(1.23, ControlKind.MUTE), ControlEvent(2.5, ControlKind.UNMUTE)]
    events, _ = run(items, 3.0)
    perm = lane(events, "permission")
    assert [(e["t"], e["kind"], e["decision"]) for e in perm] == [
        (1.23, "revoke", "deny"),
        (2.5, "lease", "allow"),
    ]


def test_a_handoff_is_acknowledged() -> None:
    events, _ = run(
        [TypedText(1.0, "run the tests")],
        4.0,
        rules={"typed": "handoff"},
        reply="Running the tests",
    )
    assert [e["decision"] for e in lane(events, "model") if e["decision"] != "silent"] == [
        "handoff"
    ]
    assert lane(events, "speech", "start")[0]["text"] == "Running the tests"


def test_replay_is_deterministic() -> None:
    items = [
        TypedText(1.0, "a"),
        ControlEvent(2.0, ControlKind.FORCE_SAY, "b c d e"),
        TypedText(4.0, "f"),
    ]
    assert run(items, 6.0)[0] == run(items, 6.0)[0]


def test_logs_never_carry_what_the_user_typed(caplog: pytest.LogCaptureFixture) -> None:
    secret = "my password is hunter2"
    with caplog.at_level(logging.DEBUG):
        run([TypedText(1.0, secret)], 3.0, reply="")
    assert caplog.records  # something was logged (the empty reply)
    assert all("hunter2" not in r.getMessage() for r in caplog.records)


def test_mute_goes_through_the_gate_and_revokes_the_microphone_lease() -> None:
    from permissions.gate import Gate
    from permissions.model import AppContext, Decision, Rule, Sense

    gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
    lease = gate.open_sense(Sense.MICROPHONE, AppContext("code"))
    assert lease is not None
    worker = ModelWorker()
    worker.start(lambda: ModelSession(FakeBackend(), "system"))
    try:
        engine = Engine(worker, PacedTextSpeech(), lambda _: None, gate=gate)
        asyncio.run(engine.control(ControlEvent(1.0, ControlKind.MUTE)))
    finally:
        worker.close()
    assert not lease.active and lease.revoked_reason == "muted"
    assert gate.open_sense(Sense.MICROPHONE, AppContext("code")) is None
