"""The micro-turn engine: one tick every 200 ms, control events at once.

The engine is driven from outside: ``tick(t)`` at every micro-turn boundary and
``control(event)`` whenever a control event arrives. The live driver (``engine.live``) calls
them on a real clock; the replay driver (``engine.replay``) on a virtual one. Data flows one
way: frames in through ``data``; timeline events out through the ``sink`` callback; the model
is reached only through its owner thread (``ModelWorker``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.bargein import Overlap, Verdict
from engine.channels import Channel, Overflow
from engine.endpoint import completeness
from engine.frames import (
    ControlEvent,
    ControlKind,
    DataFrame,
    Decision,
    DecisionKind,
    Proposal,
    TranscriptDelta,
    TypedText,
)
from engine.microturn import DECISION_CUE, Assembler, Renderer
from engine.model.worker import ModelWorker
from engine.policy import ANSWERS, PolicyConfig, PolicyInput, decide
from engine.speech import SpeechHandle, SpeechOut
from permissions.gate import Gate
from permissions.model import Sense

log = logging.getLogger(__name__)

BACKCHANNEL_TEXT = "mm-hmm"
DATA_CAPACITY = 256


@dataclass(frozen=True, slots=True)
class ReplyBudget:
    """How much of a reply is prepared per tick.

    Live: as many tokens as fit in ``seconds_per_tick`` after the tick's append. Replay: a
    fixed token count, so a replay is deterministic whatever the machine's speed.
    """

    tokens_per_tick: int = 8
    seconds_per_tick: float | None = None
    """Model time a live tick may use in all (its append first, then reply tokens)."""


LIVE_BUDGET = ReplyBudget(tokens_per_tick=64, seconds_per_tick=0.15)
MIN_SLICE_S = 0.03


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One line of the timeline (format: docs/EVAL_FORMATS.md)."""

    t: float
    lane: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to timeline.jsonl."""
        return {"t": round(self.t, 3), "lane": self.lane, "kind": self.kind, **self.fields}


Sink = Callable[[TimelineEvent], None]


@dataclass(slots=True)
class EngineState:
    """What the engine knows between ticks (no content beyond the current utterance)."""

    user_speaking: bool = False
    muted: bool = False
    typed_pending: bool = False
    user_turn_ended_at: float | None = None
    last_interjection_t: float | None = None
    last_backchannel_t: float | None = None
    turn_complete: float = 0.5
    resumable_turn_end: float | None = None
    """The turn end that voice activity cancelled; restored if that activity had no words."""
    speech: SpeechHandle | None = None
    proposal: Proposal = field(default_factory=Proposal)
    reply: DecisionKind | None = None
    reply_committed: bool = False
    """False while the reply is prepared speculatively, before the policy has said to answer."""
    reply_text: str | None = None
    """A finished reply waiting for the policy (speculation that came out ready early)."""
    speech_ended_at: float | None = None
    overlap: Overlap | None = None


class Engine:
    """The micro-turn engine (asyncio, single event loop, no Qt)."""

    def __init__(
        self,
        worker: ModelWorker,
        speech: SpeechOut,
        sink: Sink,
        *,
        policy: PolicyConfig | None = None,
        renderer: Renderer | None = None,
        budget: ReplyBudget | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.worker = worker
        self.speech = speech
        self.sink = sink
        self.policy = policy or PolicyConfig()
        self.renderer = renderer or Renderer()
        self.budget = budget or ReplyBudget()
        self.gate = gate or Gate()
        self.data: Channel[DataFrame] = Channel("data", DATA_CAPACITY, Overflow.DROP_OLDEST)
        self.assembler = Assembler()
        self.state = EngineState()
        self._tick_started = 0.0

    # --- control lane --------------------------------------------------------------------

    async def control(self, ev: ControlEvent) -> None:
        """Handle a control event the moment it arrives (not at the next tick)."""
        st = self.state
        if ev.kind is ControlKind.VOICE_ONSET:
            if not st.muted:
                self._pause_for_user(ev.t, confirmed=False)
        elif ev.kind is ControlKind.USER_STARTED_SPEAKING:
            if not st.muted:  # a muted microphone hears nothing
                st.user_speaking = True
                ended = st.user_turn_ended_at
                ended = st.speech_ended_at if ended is None else ended
                if ended is not None:  # kept in case this is only a cough
                    st.resumable_turn_end = ended
                st.user_turn_ended_at = st.speech_ended_at = None  # a pause, not the end
                self._emit(ev.t, "vad", "speech_start")
                if st.overlap is not None:
                    st.overlap.confirmed = True
                else:
                    self._pause_for_user(ev.t, confirmed=True)
        elif ev.kind is ControlKind.USER_STOPPED_SPEAKING:
            if st.user_speaking:
                st.user_speaking = False
                st.speech_ended_at = ev.t if ev.voice_t is None else min(ev.t, ev.voice_t)
                self._emit(ev.t, "vad", "speech_end")
                if st.overlap is not None:
                    self._settle_overlap(st.overlap.on_user_stopped(ev.t), ev.t)
        elif ev.kind in (ControlKind.MUTE, ControlKind.UNMUTE):
            st.muted = ev.kind is ControlKind.MUTE
            self.gate.mute(Sense.MICROPHONE, st.muted)  # revokes the microphone's lease at once
            st.user_speaking = st.user_speaking and not st.muted
            kind = "revoke" if st.muted else "lease"
            decision = "deny" if st.muted else "allow"
            self._emit(ev.t, "permission", kind, sense_or_tool="microphone", decision=decision)
        elif ev.kind is ControlKind.STOP_SPEAKING:
            self._stop_speech(ev.t, "interrupted")
        elif ev.kind is ControlKind.FORCE_SAY:
            self._stop_speech(ev.t, "interrupted")
            self.assembler.add_said(ev.text)
            self._start_speech(ev.text, ev.t)
        elif ev.kind is ControlKind.SHUTDOWN:
            self.worker.cancel.set()
            self._stop_speech(ev.t, "interrupted")

    # --- data lane and ticks -------------------------------------------------------------

    async def tick(self, t: float) -> Decision:
        """Close the micro-turn ending at ``t``: assemble, append, decide, act."""
        st = self.state
        self._tick_started = time.perf_counter()
        self._finish_speech(t)
        if st.overlap is not None:
            self._settle_overlap(st.overlap.on_tick(t, st.user_speaking), t)
        for frame in self.data.drain():
            if isinstance(frame, TranscriptDelta):
                if st.muted:
                    continue
                if frame.final and not frame.text.strip():
                    self._heard_no_words(t)
                    continue
                self._emit(frame.t, "asr", "final" if frame.final else "partial", text=frame.text)
                if frame.final and st.overlap is not None:
                    verdict = st.overlap.on_transcript(frame.text)
                    self._settle_overlap(verdict, t)
                    if verdict is not Verdict.STOP:
                        self.assembler.add(frame)  # the model sees it; it is not a turn
                        continue
                if frame.final and st.user_speaking:
                    st.turn_complete = completeness(frame.text)  # of the turn a cough held up
                if frame.final and not st.user_speaking:
                    st.resumable_turn_end = None  # the user said more: a new turn end
                    # The turn ended when the voice did; the transcript only arrives later.
                    # (A transcript arriving while the user talks again ends nothing.)
                    ended = st.speech_ended_at
                    st.user_turn_ended_at = ended if ended is not None else frame.t
                    st.turn_complete = completeness(frame.text)
                if not frame.final:
                    continue  # partials are for the panel and barge-in, not the session
            elif isinstance(frame, TypedText):
                st.typed_pending = True
            self.assembler.add(frame)
        speaking = st.speech is not None and not st.speech.done
        turn = self.assembler.cut(t, user_speaking=st.user_speaking, assistant_speaking=speaking)
        self._emit(t, "tick", "microturn", index=turn.index)

        if st.reply is not None:
            if st.user_speaking or turn.typed or any(d.final for d in turn.transcript):
                # The user went on: the reply being prepared answers a finished turn that is
                # no longer finished. Roll it back and take this tick as a normal one.
                await self.worker.call(lambda s: s.reply_abort())
                await self.worker.call(lambda s: s.record(DecisionKind.SILENT))
                st.reply, st.reply_text = None, None
            else:
                held = self.renderer.render(turn, heartbeat=False)
                if held is not None:  # kept for the next append, in order
                    await self.worker.call(lambda s: s.note(held))
                reason = "preparing_reply"
                if not st.reply_committed:
                    # Speculative: the policy (on the last proposal: nothing new was appended)
                    # still has to say that the turn is over.
                    kind, reason = self._decide(t, speaking)
                    if kind in ANSWERS:
                        st.reply_committed, st.user_turn_ended_at = True, None
                        self._emit(t, "model", "decision", decision=kind.value, reason=reason)
                        if kind is not st.reply:  # it prepared an answer; a handoff is due
                            await self.worker.call(lambda s: s.reply_abort())
                            st.reply, st.reply_text = kind, None
                            await self.worker.call(lambda s: s.reply_begin(kind))
                await self._continue_reply(t)
                return Decision(t, turn.index, DecisionKind.SILENT, reason, False)

        line = self.renderer.render(turn)
        consulted = line is not None
        if line is not None:
            st.proposal = await self.worker.call(lambda s: s.step(line))
        else:
            await self.worker.call(lambda s: s.maintain())
        # A quiet tick adds no tokens, so the model's proposal cannot have changed: reuse it.
        kind, reason = self._decide(t, speaking)
        if kind is DecisionKind.SILENT and reason == "endpointing" and consulted:
            # The user's words are in and the silence is running: prepare the answer now, so
            # it is ready when the end-point confirms (rolled back if the user goes on).
            await self.worker.call(lambda s: s.reply_begin(DecisionKind.SPEAK))
            st.reply, st.reply_committed, st.reply_text = DecisionKind.SPEAK, False, None
            self._emit(t, "model", "decision", decision=kind.value, reason=reason)
            await self._continue_reply(t)
            return Decision(t, turn.index, kind, reason, consulted)
        if kind in ANSWERS:
            st.typed_pending = False  # a typed request waits until it is answered
        if kind is not DecisionKind.SILENT and not consulted:
            # Acting on a quiet tick: put the moment on the timeline first, so the decision
            # the session records sits at the right time.
            marker = f"{t:.1f}{DECISION_CUE}"
            st.proposal = await self.worker.call(lambda s: s.step(marker))
            consulted = True
        decision = Decision(t=t, index=turn.index, kind=kind, reason=reason, consulted=consulted)
        if consulted:
            self._emit(t, "model", "decision", decision=kind.value, reason=reason)
        await self._act(decision)
        return decision

    def _decide(self, t: float, speaking: bool) -> tuple[DecisionKind, str]:
        st = self.state
        return decide(
            PolicyInput(
                t=t,
                proposal=st.proposal,
                user_speaking=st.user_speaking,
                assistant_speaking=speaking,
                typed_pending=st.typed_pending,
                user_turn_ended_at=st.user_turn_ended_at,
                turn_complete=st.turn_complete,
                last_interjection_t=st.last_interjection_t,
                last_backchannel_t=st.last_backchannel_t,
            ),
            self.policy,
        )

    async def _act(self, d: Decision) -> None:
        st = self.state
        if d.kind in (DecisionKind.SPEAK, DecisionKind.INTERJECT, DecisionKind.HANDOFF):
            st.user_turn_ended_at = None
            if d.kind is DecisionKind.INTERJECT:
                st.last_interjection_t = d.t
            kind = d.kind
            await self.worker.call(lambda s: s.reply_begin(kind))
            st.reply, st.reply_committed, st.reply_text = kind, True, None
            await self._continue_reply(d.t)
            return
        if d.kind is DecisionKind.BACKCHANNEL:
            st.last_backchannel_t = d.t
            self._start_speech(BACKCHANNEL_TEXT, d.t)
        elif d.kind is DecisionKind.STOP:
            self._stop_speech(d.t, "interrupted")
        if d.consulted:
            done = d.kind
            await self.worker.call(lambda s: s.record(done))

    async def _continue_reply(self, t: float) -> None:
        """Prepare the next slice of the reply within this tick's budget; speak when it is
        done and the policy has committed to answering."""
        st = self.state
        kind = st.reply
        if kind is None:
            return
        if st.reply_text is None:
            tokens, seconds = self.budget.tokens_per_tick, self.budget.seconds_per_tick
            if seconds is not None:  # what the tick's append left of the budget (wall time)
                seconds = max(MIN_SLICE_S, seconds - (time.perf_counter() - self._tick_started))
            self.worker.cancel.clear()
            cancel = self.worker.cancel
            text, done = await self.worker.call(lambda s: s.reply_step(tokens, seconds, cancel))
            if not done:
                return
            st.reply_text = text
            if not st.reply_committed and text:
                self.speech.prepare(text, t)  # ready early: synthesise while the end-point waits
        if not st.reply_committed:
            return
        text, st.reply, st.reply_text = st.reply_text, None, None
        if text:
            self._start_speech(text, t)
            await self.worker.call(lambda s: s.record(kind, text))
        else:
            log.info("empty reply (%s)", kind.value)
            await self.worker.call(lambda s: s.record(DecisionKind.SILENT))

    # --- speech --------------------------------------------------------------------------

    def _heard_no_words(self, t: float) -> None:
        """The voice activity had no words in it (a cough, a knock): it changes nothing."""
        st = self.state
        if st.overlap is not None:
            self._settle_overlap(st.overlap.on_transcript(""), t)
        elif not st.user_speaking and st.resumable_turn_end is not None:
            st.user_turn_ended_at, st.resumable_turn_end = st.resumable_turn_end, None

    def _pause_for_user(self, t: float, *, confirmed: bool) -> None:
        """Barge-in: pause at once (flushing queued audio); decide later whether it was an
        interruption, a backchannel or a click."""
        st = self.state
        if st.speech is not None and st.speech.playing_at(t) and st.overlap is None:
            st.speech.interrupt(t, "interrupted")
            st.overlap = Overlap(t, confirmed=confirmed)
            self._emit(t, "speech", "stop", reason="interrupted")

    def _settle_overlap(self, verdict: Verdict, t: float) -> None:
        """Act on a barge-in verdict: keep waiting, resume the utterance, or make it final."""
        st = self.state
        overlap, handle = st.overlap, st.speech
        if verdict is Verdict.WAIT or overlap is None:
            return
        st.overlap = None
        if handle is None:
            return
        heard = handle.said_until(overlap.paused_t)
        if verdict is Verdict.STOP:
            self.assembler.add_cut_off(heard)
            log.info("barge-in: interruption (paused %.2f s)", t - overlap.paused_t)
            return
        rest = handle.text[len(heard) :].strip() if handle.text.startswith(heard) else ""
        log.info("barge-in: backchannel, resuming (paused %.2f s)", t - overlap.paused_t)
        if rest:
            self._start_speech(rest, t, resume=True)

    def _start_speech(self, text: str, t: float, resume: bool = False) -> None:
        handle = self.speech.say(text, t)
        handle.resume = resume
        self.state.speech = handle
        fields: dict[str, Any] = {"text": text}
        if handle.resume:
            fields["resume"] = True
        self._emit(handle.start_t, "speech", "start", **fields)

    def _stop_speech(self, t: float, reason: str) -> None:
        handle = self.state.speech
        if handle is None or handle.done:
            return
        handle.interrupt(t, reason)
        assert handle.stopped_t is not None
        if handle.stop_reason != "done":
            self.assembler.add_cut_off(handle.said_until(handle.stopped_t))
        self._emit(handle.stopped_t, "speech", "stop", reason=handle.stop_reason)

    def _finish_speech(self, t: float) -> None:
        handle = self.state.speech
        if handle is not None and not handle.done and handle.end_t <= t:
            handle.finish()
            self._emit(handle.end_t, "speech", "stop", reason="done")

    def flush(self, t: float) -> None:
        """End of input: let the current utterance play out (replay calls this last)."""
        handle = self.state.speech
        if handle is not None and not handle.done:
            self._finish_speech(max(t, handle.end_t))

    def _emit(self, t: float, lane: str, kind: str, **fields: Any) -> None:
        self.sink(TimelineEvent(t=t, lane=lane, kind=kind, fields=fields))
