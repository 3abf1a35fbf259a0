"""Scripted timelines through the engine in virtual time (fake model, real everything else)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from engine.core.engine import HANDOFF_ACK, Engine, ReplyBudget, clause_end
from engine.core.events import TimelineEvent, to_json
from engine.core.frames import (
    TICK_S,
    ControlEvent,
    ControlKind,
    FocusChange,
    TranscriptDelta,
    TypedText,
)
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.voice.handles import PacedTextSpeech
from tests.fakes import FakeBackend
from tests.timelines import drive

Item = TypedText | FocusChange | ControlEvent | TranscriptDelta


@pytest.fixture(autouse=True)
def phases_stay_in_their_table(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every timeline here must move only along ``engine.core.phases.TRANSITIONS``."""
    with caplog.at_level(logging.WARNING, logger="engine.core.engine"):
        yield
    records = caplog.get_records("call")
    unexpected = [r.getMessage() for r in records if "phase: unexpected" in r.getMessage()]
    assert not unexpected


def run(
    items: Sequence[Item],
    duration: float,
    *,
    reply: str = "Use reversed or slicing.",
    rules: dict[str, str] | None = None,
    tokens_per_tick: int = 8,
    end_prob: float | None = None,
) -> tuple[list[dict[str, Any]], FakeBackend]:
    fake = FakeBackend(rules=rules, reply=reply, end_prob=end_prob)
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    events: list[TimelineEvent] = []
    engine = Engine(worker, PacedTextSpeech(), events.append, budget=ReplyBudget(tokens_per_tick))
    try:
        asyncio.run(drive(engine, items, duration))
    finally:
        worker.close()
    return [to_json(e) for e in sorted(events, key=lambda e: e.t)], fake


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


def test_a_short_overlap_with_no_words_resumes_where_it_paused() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(2.4, ControlKind.USER_STOPPED_SPEAKING),  # a cough
        TranscriptDelta(2.9, "", final=True),  # hearing: the utterance had no words
    ]
    events, fake = run(items, 8.0)
    starts = lane(events, "speech", "start")
    assert len(starts) == 2 and starts[1].get("resume") is True
    assert starts[1]["t"] == pytest.approx(3.0, abs=0.01)  # at the tick after the final
    # From the word it was saying at 2.05 s (1.05 s into the words at 2.6 words/s), not
    # from the start: "Let me" was heard, "walk ..." was being said.
    assert starts[1]["text"] == say.split(" ", 2)[2]
    assert not any("you stopped after" in a for a in fake.appends)


def test_while_paused_for_the_user_the_model_waits_and_the_resume_is_prepared() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(2.4, ControlKind.USER_STOPPED_SPEAKING, voice_t=2.4),
        TranscriptDelta(3.1, "yeah", final=True),  # a backchannel: resume
    ]
    prepared: list[tuple[float, str]] = []

    class Spy(PacedTextSpeech):
        def prepare(self, text: str, t: float) -> None:
            prepared.append((t, text))

    fake = FakeBackend()
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    events: list[TimelineEvent] = []
    engine = Engine(worker, Spy(), events.append, budget=ReplyBudget(8))
    appended_at: list[tuple[float, int]] = []

    async def count(tick_t: float) -> None:
        appended_at.append((tick_t, len(fake.appends)))

    try:
        asyncio.run(drive(engine, items, 5.0, before_tick=count))
    finally:
        worker.close()
    timeline = [to_json(e) for e in sorted(events, key=lambda e: e.t)]
    (resumed,) = [e for e in lane(timeline, "speech", "start") if e.get("resume")]
    rest = say.split(" ", 2)[2]
    assert resumed["text"] == rest and prepared == [(2.05, rest)]  # synthesised at the pause
    paused = [n for tick_t, n in appended_at if 2.2 <= tick_t <= resumed["t"]]
    assert len(set(paused)) == 1  # no append while the arbiter decides
    later = [a for a in fake.appends[paused[0] :] if "yeah" in a]
    assert later  # what was heard meanwhile reaches the model once it resumed


def test_a_pause_waits_for_the_final_transcript_however_late_it_is() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(2.4, ControlKind.USER_STOPPED_SPEAKING),
        TranscriptDelta(4.3, "actually wait", final=True),  # recognition was slow
    ]
    events, _ = run(items, 8.0)
    starts = lane(events, "speech", "start")
    assert not any(e.get("resume") for e in starts)  # it never resumed over the user
    assert all(e["t"] > 4.3 for e in starts[1:])  # it answered what the user said, after


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
        ControlEvent(2.35, ControlKind.VOICE_FADED),  # and hearing says it went quiet
    ]
    events, _ = run(items, 6.0)
    stop = lane(events, "speech", "stop")[0]
    assert stop == {"t": 2.05, "lane": "speech", "kind": "stop", "reason": "interrupted"}
    starts = lane(events, "speech", "start")
    assert len(starts) == 2 and starts[1].get("resume") is True
    assert starts[1]["t"] == pytest.approx(2.35)  # at once, from the word it paused on
    assert lane(events, "vad") == []


def test_an_onset_confirmed_late_never_resumes_over_the_user() -> None:
    """Live, the VAD confirmed an interruption 1.8 s after its onset: no timer resumes."""
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.VOICE_ONSET),
        ControlEvent(3.85, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(6.0, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, _ = run(items, 8.0)
    assert len(lane(events, "speech", "start")) == 1  # paused at 2.05, never resumed


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
    reply = " ".join(f"w{i}" for i in range(12))  # two ticks of preparation
    events, _ = run(spoken_turn(1.5, "Run the tests."), 5.0, reply=reply, rules={})
    # a finished sentence: answer after 0.5 s of silence, at the 2.0 tick, with the reply
    # prepared since the transcript's tick (1.8), so it is ready then (from 2.0 on: at 2.2)
    decision = next(e for e in lane(events, "model") if e["decision"] == "speak")
    assert decision["t"] == 2.0 and decision["reason"] == "turn_end"
    assert lane(events, "speech", "start")[0]["t"] == 2.0


def test_words_that_broke_off_wait_longer_than_a_finished_sentence() -> None:
    finished, _ = run(spoken_turn(1.5, "Run the tests."), 5.0, rules={})
    broke_off, _ = run(spoken_turn(1.5, "Run the tests and the..."), 5.0, rules={})
    t_finished = lane(finished, "speech", "start")[0]["t"]
    t_broke_off = lane(broke_off, "speech", "start")[0]["t"]
    assert t_finished == 2.0 and t_broke_off == 3.0  # 0.5 s vs 1.46 s of silence


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


def test_the_timeline_shows_the_leases_the_sense_reports_not_invented_ones() -> None:
    items = [
        ControlEvent(1.23, ControlKind.MUTE),
        ControlEvent(1.24, ControlKind.LEASE_REVOKED, text="microphone"),
        ControlEvent(2.5, ControlKind.UNMUTE),  # no lease yet: the sense has not re-opened
        ControlEvent(2.56, ControlKind.LEASE_OPENED, text="microphone"),
    ]
    events, _ = run(items, 3.0)
    perm = lane(events, "permission")
    assert [(e["t"], e["kind"], e["sense_or_tool"], e["decision"]) for e in perm] == [
        (1.24, "revoke", "microphone", "deny"),
        (2.56, "lease", "microphone", "allow"),
    ]


def test_a_handoff_is_acknowledged_and_its_task_text_is_never_spoken() -> None:
    events, _ = run(
        [TypedText(1.0, "run the tests")],
        4.0,
        rules={"typed": "handoff"},
        reply="running the tests",
    )
    assert [e["decision"] for e in lane(events, "model") if e["decision"] != "silent"] == [
        "handoff"
    ]
    (start,) = lane(events, "speech", "start")
    assert start["text"] == HANDOFF_ACK
    assert "running the tests" not in start["text"].lower()


def test_a_handoff_is_acknowledged_at_once_and_handed_over_when_its_text_is_complete() -> None:
    task = "run the whole test suite and fix the parser test that fails on empty input"
    fake = FakeBackend(rules={"typed": "handoff"}, reply=task)
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    events: list[TimelineEvent] = []
    engine = Engine(worker, PacedTextSpeech(), events.append, budget=ReplyBudget(2))
    handed: list[tuple[float, str]] = []
    engine.handoff = lambda package: handed.append((package.t, dict(package.extra)["task"]))
    try:
        asyncio.run(drive(engine, [TypedText(1.05, "run the tests and fix what fails")], 4.0))
    finally:
        worker.close()
    timeline = [to_json(e) for e in sorted(events, key=lambda e: e.t)]
    (decision,) = [e for e in lane(timeline, "model") if e["decision"] == "handoff"]
    (start,) = lane(timeline, "speech", "start")
    assert start["text"] == HANDOFF_ACK and start["t"] == decision["t"] == 1.2
    # two words a tick: the task text is complete seven ticks later, and only then handed over
    assert handed == [(pytest.approx(1.2 + 7 * TICK_S), task)]


@pytest.mark.parametrize("label", ["silent", "Speak.", '"handoff"', "stop"])
def test_a_reply_that_is_only_a_decision_label_is_not_spoken(label: str) -> None:
    events, _ = run([TypedText(1.0, "hello")], 4.0, reply=label)
    assert lane(events, "speech", "start") == []


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
        engine.control(ControlEvent(1.0, ControlKind.MUTE))
    finally:
        worker.close()
    assert not lease.active and lease.revoked_reason == "muted"
    assert gate.open_sense(Sense.MICROPHONE, AppContext("code")) is None


def test_after_an_interruption_a_new_answer_is_spoken_once_the_user_stops() -> None:
    say = "Let me walk you through the whole parser step by step from the very top"
    items = [
        ControlEvent(1.0, ControlKind.FORCE_SAY, say),
        ControlEvent(2.05, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(3.6, ControlKind.USER_STOPPED_SPEAKING),
        TranscriptDelta(3.9, "no wait, what does the lexer return", final=True),
    ]
    events, _ = run(items, 8.0, reply="A list of tokens.")
    starts = lane(events, "speech", "start")
    assert [e["text"] for e in starts] == [say, "A list of tokens."]
    assert starts[1]["t"] > 3.6  # never while the user was talking


@pytest.mark.parametrize(("prosody", "earliest", "latest"), [(0.99, 1.6, 1.9), (0.05, 2.0, 2.6)])
def test_how_finished_the_turn_sounded_moves_the_answer(
    prosody: float, earliest: float, latest: float
) -> None:
    """The same words: sounding finished answers sooner than sounding cut off."""
    items = [
        ControlEvent(0.3, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(1.2, ControlKind.USER_STOPPED_SPEAKING, voice_t=1.0),
        TranscriptDelta(1.2, "so the parser fails on empty input", True, prosody),
    ]
    events, _ = run(items, 5.0, rules={})
    speak = [e for e in lane(events, "model") if e["decision"] == "speak"]
    assert speak and earliest <= speak[0]["t"] <= latest, speak


@pytest.mark.parametrize(("confidence", "earliest", "latest"), [(0.8, 1.6, 1.9), (0.3, 2.5, 2.7)])
def test_words_the_recogniser_was_unsure_of_wait_for_the_silence(
    confidence: float, earliest: float, latest: float
) -> None:
    """Finished-sounding words and voice: heard clearly they are answered at once; heard
    unclearly (tiny.en writing English for Spanish) only after ``max_wait_s`` of silence."""
    items = [
        ControlEvent(0.3, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(1.2, ControlKind.USER_STOPPED_SPEAKING, voice_t=1.0),
        TranscriptDelta(1.2, "thank you very much.", True, 0.99, confidence),
    ]
    events, _ = run(items, 5.0, rules={})
    speak = [e for e in lane(events, "model") if e["decision"] == "speak"]
    assert speak and earliest <= speak[0]["t"] <= latest, speak


def test_the_model_finding_the_words_unfinished_holds_the_turn() -> None:
    """The same words and no prosody: the model's end-of-words probability can delay the
    answer (it reads them as unfinished: no longer surely finished, they outlast a pause),
    never bring it forward."""
    items = [
        ControlEvent(0.3, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(1.2, ControlKind.USER_STOPPED_SPEAKING, voice_t=1.0),
        TranscriptDelta(1.2, "so the parser fails on empty input.", True),
    ]

    def answered(end_prob: float | None) -> float:
        events, fake = run(items, 5.0, rules={}, end_prob=end_prob)
        assert [p.rsplit("\n", 1)[-1] for p in fake.probes] == [
            '1.2 user quiet | user "so the parser fails on empty input'
        ]  # read right after the words, before the full stop and the quote
        return float(next(e["t"] for e in lane(events, "model") if e["decision"] == "speak"))

    alone = answered(None)
    assert answered(0.95) == alone
    assert answered(0.01) >= alone + 0.6


EXAMPLE_ANSWER = "It returns a new string with the whitespace at both ends removed."


class _Primes(FakeBackend):
    """Remembers how each reply was primed."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply=reply)
        self.primes: list[str] = []

    def spec_begin(self, prime: str) -> None:
        self.primes.append(prime)
        super().spec_begin(prime)


def run_with(backend: FakeBackend, items: Sequence[Item], duration: float) -> list[dict[str, Any]]:
    worker = ModelWorker()
    worker.start(lambda: ModelSession(backend))  # the real pinned prompt
    events: list[TimelineEvent] = []
    engine = Engine(worker, PacedTextSpeech(), events.append, budget=ReplyBudget(8))
    try:
        asyncio.run(drive(engine, items, duration))
    finally:
        worker.close()
    return [to_json(e) for e in sorted(events, key=lambda e: e.t)]


def test_a_reply_that_copies_the_prompt_is_prepared_again_then_dropped() -> None:
    backend = _Primes(EXAMPLE_ANSWER)  # the fake says the prompt's example whatever it is asked
    events = run_with(backend, [TypedText(1.0, "why does my loop never end")], 5.0)
    assert lane(events, "speech", "start") == []  # never spoken
    assert backend.primes == [' speak "', ' speak "In short, ']  # it tried another opening


class _CopiesFirst(_Primes):
    """Reads the user back on its first attempt, answers on the next."""

    def __init__(self, copy: str, answer: str) -> None:
        super().__init__(copy)
        self.answer = answer

    def spec_begin(self, prime: str) -> None:
        super().spec_begin(prime)
        if len(self.primes) > 1:
            self.reply = self.answer


def test_a_reply_that_begins_reading_the_user_back_is_dropped_before_its_first_clause() -> None:
    question = "how do I see which files I changed before committing"
    copy = f"{question.capitalize()}, you ask, and that is a good question to ask."
    backend = _CopiesFirst(copy, "Type git status.")
    events = run_with(backend, [TypedText(1.0, question)], 3.0)
    assert backend.primes == [' speak "', ' speak "In short, ']
    # its first 8 words (the 1.0 tick) already read the question back: the second attempt
    # is ready at 1.2, not after the copy's first clause (1.2) has been judged (1.4)
    assert [(e["t"], e["text"]) for e in lane(events, "speech", "start")] == [
        (1.2, "In short, Type git status.")
    ]


def test_a_reply_that_reads_the_user_back_is_prepared_again_while_the_end_point_waits() -> None:
    said = "so the parser fails on empty input"  # no full stop: it outlasts a pause
    backend = _CopiesFirst(f"{said.capitalize()}.", "Check the length before you index it.")
    items = [
        ControlEvent(0.3, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(1.2, ControlKind.USER_STOPPED_SPEAKING, voice_t=1.0),
        TranscriptDelta(1.2, said, True),
    ]
    events = run_with(backend, items, 5.0)
    assert backend.primes == [' speak "', ' speak "In short, ']
    decision = next(e for e in lane(events, "model") if e["decision"] == "speak")
    first = lane(events, "speech", "start")[0]
    assert first["text"].startswith("In short, Check the length")
    assert first["t"] == decision["t"] == 2.4  # the second attempt was ready at the decision


@pytest.mark.parametrize(
    ("question", "reply", "spoken"),
    [
        (
            "how do I see which files I changed before committing",
            "I can see which files I changed before committing.",
            False,
        ),
        ("what does git stash do", "It shelves your uncommitted changes.", True),
    ],
)
def test_a_reply_that_reads_the_user_back_is_not_spoken(
    question: str, reply: str, spoken: bool
) -> None:
    events = run_with(_Primes(reply), [TypedText(1.0, question)], 5.0)
    assert bool(lane(events, "speech", "start")) is spoken


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("Use git stash", 0, 0),  # no punctuation yet
        ("Use git stash.", 0, 0),  # the next word has not started: "stash.txt"?
        ("Use git stash. It", 0, 14),
        ("Yes, it", 0, 0),  # a one-word comma clause is not worth saying alone
        ("Type git diff, then the", 0, 14),
        ("It is 3.5 times", 0, 0),  # a decimal point ends nothing
        ("Mr. Quilter is", 0, 0),  # nor does a title's
        ("Ask Dr. Smith. Then", 0, 14),
        ("Use e.g. git log, then", 0, 17),
        ("One. Two three, four five six, seven", 0, 30),
        ("One. Two three, four five six, seven", 4, 30),
        ("One. Two three, four", 4, 4),
    ],
)
def test_clause_end_finds_where_complete_clauses_end(text: str, start: int, end: int) -> None:
    assert clause_end(text, start) == end


STREAMED = "Use git stash first. It shelves your uncommitted changes until you pop them."


def test_a_reply_is_spoken_clause_by_clause_while_it_is_decoded() -> None:
    events, fake = run(
        [TypedText(1.0, "how do I park my changes")], 8.0, reply=STREAMED, tokens_per_tick=3
    )
    starts = lane(events, "speech", "start")
    # 3 words a tick from 1.0: "Use git stash" (1.0), "first. It shelves" (1.2): the first
    # sentence is complete and spoken at 1.2; the last word is decoded at 1.8, and the rest
    # follows the first sentence's audio without a gap.
    assert starts[0]["t"] == pytest.approx(1.2) and starts[0]["text"] == "Use git stash first."
    assert starts[1]["t"] == pytest.approx(1.2 + 4 / 2.6, abs=0.01)
    assert all(s.get("continues") for s in starts[1:]) and starts[1:]
    assert " ".join(s["text"] for s in starts) == STREAMED
    assert [s["reason"] for s in lane(events, "speech", "stop")] == ["done"]  # one utterance
    said = [a for a in fake.appends if "speak" in a]
    assert said and STREAMED.split(".")[1].strip() in said[0]  # the session has all of it


def test_an_interruption_while_streaming_keeps_only_what_was_said() -> None:
    items = [
        TypedText(1.0, "how do I park my changes"),
        ControlEvent(1.7, ControlKind.USER_STARTED_SPEAKING),
        ControlEvent(3.5, ControlKind.USER_STOPPED_SPEAKING),
    ]
    events, fake = run(items, 8.0, reply=STREAMED, tokens_per_tick=3)
    starts = lane(events, "speech", "start")
    assert [s["text"] for s in starts] == ["Use git stash first."]  # nothing after the stop
    assert lane(events, "speech", "stop")[0]["reason"] == "interrupted"
    said = [a for a in fake.appends if ' speak "' in a]
    assert said and "Use git stash first." in said[0] and "shelves" not in said[0]
