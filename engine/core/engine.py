"""The micro-turn engine: one tick every 200 ms, control events at once.

The engine is driven from outside: ``tick(t)`` at every micro-turn boundary and
``control(event)`` whenever a control event arrives. The live driver (``engine.live``) calls
them on a real clock; the replay driver (``engine.eval.replay``) on a virtual one. Data flows
one way: frames in through ``data``; typed timeline events (``engine.core.events``) out
through the ``sink``; the model is reached only through its owner thread (``ModelWorker``).

``control`` is synchronous and may run while ``tick`` is suspended at an ``await`` on the
model (live): state read after an await is re-read, and a reply that became stale while the
model worked (``epoch``) is not spoken.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.core import proactivity, timers
from engine.core.channels import Channel, Overflow
from engine.core.copying import PromptText, copies, opens_with
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    FocusEvent,
    PermissionEvent,
    ScreenChange,
    ScreenCueEvent,
    Sink,
    SpeechStart,
    SpeechStop,
    TaskEvent,
    TaskKind,
    TickEvent,
    TimelineEvent,
    VadEvent,
)
from engine.core.frames import (
    ControlEvent,
    ControlKind,
    DataFrame,
    Decision,
    DecisionKind,
    FocusChange,
    MicroTurn,
    Proposal,
    ScreenCue,
    ScreenText,
    TaskUpdate,
    TranscriptDelta,
    TypedText,
)
from engine.core.handoff import MAX_TRANSCRIPT_LINES, HandoffPackage
from engine.core.microturn import DECISION_CUE, Assembler, Renderer
from engine.core.phases import TRANSITIONS, Phase, phase_of
from engine.core.policy import ANSWERS, PolicyConfig, PolicyInput, decide
from engine.core.timers import Timer, Watch
from engine.hearing.bargein import Overlap, Verdict
from engine.hearing.endpoint import completeness, fuse
from engine.model.worker import ModelWorker
from engine.voice.handles import SpeechHandle, SpeechOut
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


LIVE_BUDGET = ReplyBudget(tokens_per_tick=64, seconds_per_tick=0.18)
MIN_SLICE_S = 0.03


def live_budget(decode_tok_s: float, append_ms: float) -> ReplyBudget:
    """The live budget for this machine (``ModelSession.warm_up`` measured it): a tick's model
    time stays within ``LIVE_BUDGET.seconds_per_tick``, and the reply tokens a tick asks for
    are what the decoder makes in the time a content tick's append leaves."""
    assert LIVE_BUDGET.seconds_per_tick is not None
    left = max(MIN_SLICE_S, LIVE_BUDGET.seconds_per_tick - append_ms / 1000)
    tokens = max(4, min(LIVE_BUDGET.tokens_per_tick, int(decode_tok_s * left)))
    return ReplyBudget(tokens_per_tick=tokens, seconds_per_tick=LIVE_BUDGET.seconds_per_tick)


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
    last_user_words: str = ""
    """What the user last said or typed: a reply that only reads it back is not spoken."""
    reply_retried: bool = False
    """The reply being prepared is the second attempt after one that copied."""
    reply_spoken: str = ""
    """The start of the reply in hand that was given to the voice (it is spoken clause by
    clause while the rest is decoded)."""
    reply_prepared: bool = False
    """Its first clause was handed to the voice to synthesise ahead."""
    turn_signals: tuple[float, float | None, float | None] | None = None
    """The words' completeness, Smart Turn's score and the recogniser's confidence of a final
    transcript that ends a turn, until the model has read the words too (its end-of-words
    probability joins the fusion)."""


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
        proactive: proactivity.ProactivityConfig | None = None,
        screen_text: Callable[[], str] | None = None,
        look: Callable[[str], None] | None = None,
        handoff: Callable[[HandoffPackage], None] | None = None,
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
        self._tick_epoch = 0
        self.epoch = 0
        """Bumped by every control event that makes work in flight stale."""
        self._prompt_text: PromptText | None = None
        self.phase = Phase.LISTENING
        """Who has the floor (``engine.core.phases``), updated after every event and tick."""
        self.seeing = SeeingState(proactive or proactivity.ProactivityConfig())
        self.screen_text = screen_text
        """The latest redacted screen text (``engine.seeing.ScreenState.latest_text``)."""
        self.look = look
        """Asks a vision model about the screen (``engine.seeing.vision.Looker.ask``); its
        answer comes back on the data lane."""
        self.handoff = handoff
        """Where a HANDOFF decision's package goes (the background agent's TaskManager)."""
        self._recent: deque[str] = deque(maxlen=MAX_TRANSCRIPT_LINES)
        self._focused_app = ""
        self._task_news: list[TaskUpdate] = []

    # --- control lane --------------------------------------------------------------------

    def control(self, ev: ControlEvent) -> None:
        """Handle a control event the moment it arrives (see ``_control``)."""
        self._control(ev)
        self._update_phase(ev.t)

    def _control(self, ev: ControlEvent) -> None:
        """Synchronous on purpose: the live driver calls it between the awaits of a tick that is
        waiting for the model, so nothing here may wait. Work in flight that the event makes
        stale is cancelled (the model's cancel flag) and fenced off (``epoch``): a reply that
        finishes after the user started talking is never spoken.
        """
        st = self.state
        if ev.kind is ControlKind.VOICE_ONSET:
            if not st.muted:  # a pause costs nothing; a cough must not cost the reply
                self._pause_for_user(ev.t, confirmed=False)
        elif ev.kind is ControlKind.VOICE_FADED:
            if st.overlap is not None:
                self._settle_overlap(st.overlap.on_voice_faded(), ev.t)
        elif ev.kind is ControlKind.USER_STARTED_SPEAKING:
            if not st.muted:  # a muted microphone hears nothing
                self.epoch += 1
                self.worker.cancel.set()
                st.user_speaking = True
                ended = st.user_turn_ended_at
                ended = st.speech_ended_at if ended is None else ended
                if ended is not None:  # kept in case this is only a cough
                    st.resumable_turn_end = ended
                st.user_turn_ended_at = st.speech_ended_at = None  # a pause, not the end
                self._emit(VadEvent(ev.t, "speech_start"))
                if st.overlap is not None:
                    st.overlap.on_user_started()
                else:
                    self._pause_for_user(ev.t, confirmed=True)
        elif ev.kind is ControlKind.USER_STOPPED_SPEAKING:
            if st.user_speaking:
                st.user_speaking = False
                st.speech_ended_at = ev.t if ev.voice_t is None else min(ev.t, ev.voice_t)
                self._emit(VadEvent(ev.t, "speech_end"))
                if st.overlap is not None:
                    self._settle_overlap(st.overlap.on_user_stopped(st.speech_ended_at), ev.t)
        elif ev.kind in (ControlKind.MUTE, ControlKind.UNMUTE):
            self.epoch += 1
            st.muted = ev.kind is ControlKind.MUTE
            # The gate revokes the microphone's lease at once; the sense that held it reports
            # the revocation (and, after unmute, its new lease) as LEASE_* control events.
            self.gate.mute(Sense.MICROPHONE, st.muted)
            st.user_speaking = st.user_speaking and not st.muted
        elif ev.kind in (ControlKind.LEASE_OPENED, ControlKind.LEASE_REVOKED):
            opened = ev.kind is ControlKind.LEASE_OPENED
            kind: Literal["lease", "revoke"] = "lease" if opened else "revoke"
            self._emit(PermissionEvent(ev.t, kind, ev.text, "allow" if opened else "deny"))
        elif ev.kind is ControlKind.STOP_SPEAKING:
            self.epoch += 1
            self._stop_speech(ev.t, "interrupted")
        elif ev.kind is ControlKind.FORCE_SAY:
            self.epoch += 1
            self._stop_speech(ev.t, "interrupted")
            self.assembler.add_said(ev.text)
            self._start_speech(ev.text, ev.t)
        elif ev.kind is ControlKind.SHUTDOWN:
            self.epoch += 1
            self.worker.cancel.set()
            self._stop_speech(ev.t, "interrupted")

    # --- data lane and ticks -------------------------------------------------------------

    async def tick(self, t: float) -> Decision:
        """Close the micro-turn ending at ``t``: assemble, append, decide, act."""
        decision = await self._tick(t)
        if decision.kind is DecisionKind.SILENT:
            decision = await self._speak_up(t, decision)
        if decision.kind is DecisionKind.SILENT:
            self._tell_task_news(t)
        self._update_phase(t)
        return decision

    async def _tick(self, t: float) -> Decision:
        st = self.state
        self._begin_tick(t)
        self._take_inputs(t)
        turn = self.assembler.cut(
            t, user_speaking=st.user_speaking, assistant_speaking=self._assistant_speaking()
        )
        self._emit(TickEvent(t, turn.index))
        if st.reply is not None:
            if not (st.user_speaking or turn.typed or any(d.final for d in turn.transcript)):
                return await self._go_on_preparing(turn, t)
            # The user went on: the reply being prepared answers a finished turn that is no
            # longer finished. Roll it back (the session keeps what was already said) and
            # take this tick as a normal one.
            await self._finish_reply(st.reply, rolled_back=st.reply_text is not None)
        return await self._consult_and_act(turn, t)

    def _begin_tick(self, t: float) -> None:
        """Fence this tick's model work, close what played out, run the overlap's timers."""
        st = self.state
        self._tick_started = time.perf_counter()
        self._tick_epoch = self.epoch
        self._finish_speech(t)
        if st.overlap is not None:
            self._settle_overlap(st.overlap.on_tick(t, st.user_speaking), t)

    def _take_inputs(self, t: float) -> None:
        """Everything that arrived on the data lane goes into the micro-turn being cut."""
        for frame in self.data.drain():
            self._see(frame)
            self._remember(frame)
            if isinstance(frame, TranscriptDelta):
                if self._take_transcript(frame, t):
                    self.assembler.add(frame)
                continue
            if isinstance(frame, TypedText):
                self.state.typed_pending = True
                self.state.last_user_words = frame.text
            self.assembler.add(frame)

    def _take_transcript(self, frame: TranscriptDelta, t: float) -> bool:
        """Update the turn from a transcript; True when the session should see it."""
        st = self.state
        if st.muted:
            return False
        if frame.final and not frame.text.strip():
            self._heard_no_words(t)
            return False
        self._emit(AsrEvent(frame.t, "final" if frame.final else "partial", frame.text))
        if not frame.final:
            return False  # partials are for the panel and barge-in, not the session
        if st.overlap is not None:
            verdict = st.overlap.on_transcript(frame.text)
            self._settle_overlap(verdict, t)
            if verdict is not Verdict.STOP:
                return True  # the model sees it; it is not a turn
        st.last_user_words = frame.text
        self._recent.append(f"user: {frame.text}")
        # How finished the turn is: the words, and how they sounded when it was scored; the
        # model's own reading of the words is added once they are appended (``_consult_and_act``).
        st.turn_signals = (completeness(frame.text), frame.prosody_complete, frame.confidence)
        words, prosody, confidence = st.turn_signals
        st.turn_complete = fuse(words, prosody, None, confidence)
        if not st.user_speaking:
            # The turn ended when the voice did; the transcript only arrives later. (One
            # arriving while the user talks again ends nothing: it is the turn a cough held.)
            st.resumable_turn_end = None  # the user said more: a new turn end
            ended = st.speech_ended_at
            st.user_turn_ended_at = ended if ended is not None else frame.t
        return True

    async def _go_on_preparing(self, turn: MicroTurn, t: float) -> Decision:
        """A reply is being prepared: keep what arrived for later, confirm, prepare a slice."""
        st = self.state
        held = self.renderer.render(turn, heartbeat=False)
        if held is not None:  # kept for the next append, in order
            await self.worker.call(lambda s: s.note(held))
        reason = "preparing_reply"
        if not st.reply_committed:
            # Speculative: the policy (on the last proposal: nothing new was appended) still
            # has to say that the turn is over.
            kind, reason = self._decide(t, self._assistant_speaking())
            if kind in ANSWERS:
                st.reply_committed, st.user_turn_ended_at = True, None
                self._emit(DecisionEvent(t, kind.value, reason))
                if kind is not st.reply:  # it prepared an answer; a handoff is due
                    if st.reply_text is None:
                        await self.worker.call(lambda s: s.reply_abort())
                    self._begin_reply(kind, committed=True)
                    await self.worker.call(lambda s: s.reply_begin(kind))
        await self._continue_reply(t)
        return Decision(t, turn.index, DecisionKind.SILENT, reason, False)

    async def _consult_and_act(self, turn: MicroTurn, t: float) -> Decision:
        """Append the micro-turn (if it says anything), decide, act."""
        st = self.state
        if st.overlap is not None:
            # Paused for the user: the barge-in arbiter alone decides what comes next, so the
            # model keeps the moment for later and leaves the cores to hearing (live, appends
            # here delayed the recogniser's verdict on a backchannel by up to 0.6 s).
            held = self.renderer.render(turn, heartbeat=False)
            if held is not None:
                await self.worker.call(lambda s: s.note(held))
            return Decision(t, turn.index, DecisionKind.SILENT, "paused_for_user", False)
        line = self.renderer.render(turn)
        consulted = line is not None
        probe_at, signals = self.renderer.words_end, st.turn_signals
        st.turn_signals = None
        if line is not None and probe_at is not None and signals is not None:
            st.proposal, lm_end = await self.worker.call(lambda s: s.step_probing(line, probe_at))
            words, prosody, confidence = signals
            st.turn_complete = fuse(words, prosody, lm_end, confidence)
            log.info(
                "end of turn: words %.2f prosody %s model %s heard %s -> %.2f",
                words,
                "-" if prosody is None else f"{prosody:.3f}",
                "-" if lm_end is None else f"{lm_end:.3f}",
                "-" if confidence is None else f"{confidence:.2f}",
                st.turn_complete,
            )
        elif line is not None:
            st.proposal = await self.worker.call(lambda s: s.step(line))
        else:  # a quiet tick adds no tokens, so the last proposal still stands
            await self.worker.call(lambda s: s.maintain())
        # Control events may have changed the world while the model worked: decide on now.
        kind, reason = self._decide(t, self._assistant_speaking())
        if kind is DecisionKind.SILENT and reason == "endpointing" and consulted:
            # The user's words are in and the silence is running: prepare the answer now, so
            # it is ready when the end-point confirms (rolled back if the user goes on).
            self._begin_reply(DecisionKind.SPEAK, committed=False)
            await self.worker.call(lambda s: s.reply_begin(DecisionKind.SPEAK))
            self._emit(DecisionEvent(t, kind.value, reason))
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
            self._emit(DecisionEvent(t, kind.value, reason))
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
            self._begin_reply(kind, committed=True)
            await self.worker.call(lambda s: s.reply_begin(kind))
            await self._continue_reply(d.t)
            return
        if d.kind is DecisionKind.BACKCHANNEL:
            st.last_backchannel_t = d.t
            self._start_speech(BACKCHANNEL_TEXT, d.t, backchannel=True)
        elif d.kind is DecisionKind.STOP:
            self._stop_speech(d.t, "interrupted")
        if d.consulted:
            done = d.kind
            await self.worker.call(lambda s: s.record(done))

    def _begin_reply(self, kind: DecisionKind, *, committed: bool) -> None:
        st = self.state
        st.reply, st.reply_committed, st.reply_text = kind, committed, None
        st.reply_retried, st.reply_spoken, st.reply_prepared = False, "", False

    async def _continue_reply(self, t: float) -> None:
        """Prepare the next slice of the reply within this tick's budget, and say what is ready
        once the policy has committed to answering: a spoken reply clause by clause while it
        is decoded (the user hears its first clause while the rest is still being prepared);
        a handoff is acknowledged at once and handed to the agent when its task text is
        complete (live, the task text took 1.6 s to decode before the acknowledgement)."""
        st = self.state
        kind = st.reply
        if kind is None:
            return
        handing_off = kind is DecisionKind.HANDOFF and st.reply_committed
        if handing_off and not st.reply_spoken and self._may_say_now():
            self._say_more(HANDOFF_ACK, t)
            st.reply_spoken = HANDOFF_ACK
        text, done = st.reply_text or "", st.reply_text is not None
        if not done:
            tokens, seconds = self.budget.tokens_per_tick, self.budget.seconds_per_tick
            if seconds is not None:  # what the tick's append left of the budget (wall time)
                seconds = max(MIN_SLICE_S, seconds - (time.perf_counter() - self._tick_started))
            self.worker.cancel.clear()
            cancel = self.worker.cancel
            text, done = await self.worker.call(lambda s: s.reply_step(tokens, seconds, cancel))
            if done:
                st.reply_text = text
            elif not st.reply_spoken and not st.reply_retried and kind is not DecisionKind.HANDOFF:
                copied = await self._copied(text, opening=True)
                if copied is not None:  # reading something back already: no need to hear more
                    await self._prepare_another(kind, copied, done)
                    return
            if not st.reply_committed:
                ahead = text if done else text[: clause_end(text, 0)]
                if ahead and not st.reply_prepared and kind is not DecisionKind.HANDOFF:
                    # Judged while the end-point waits, so a second attempt costs no time
                    # after the decision (live, one after it delayed the answer 0.5-1.2 s).
                    copied = await self._copied(ahead)
                    if copied is not None and not st.reply_retried:
                        await self._prepare_another(kind, copied, done)
                        return
                    st.reply_prepared = True  # synthesise its start while the end-point waits
                    if copied is None:
                        self.speech.prepare(ahead, t)
                return
        if not st.reply_committed:
            return
        if kind is DecisionKind.HANDOFF:
            if done and st.reply_spoken:  # acknowledged: the agent gets it whatever comes next
                self._hand_off(text, t)
                await self._finish_reply(kind, rolled_back=True)
            return
        if not self._may_say_now():
            # The user took the floor while the model worked: nothing more is said now. The
            # next tick rolls the reply back (the user went on) or goes on (a click resumed).
            return
        upto = len(text) if done else clause_end(text, len(st.reply_spoken))
        said = text[:upto]
        new = said[len(st.reply_spoken) :].strip()
        if new and done and not speakable(kind, said):
            new = ""  # a bare decision label is not speech
        if new:
            copied = await self._copied(said)
            if copied is not None and not st.reply_spoken and not st.reply_retried:
                await self._prepare_another(kind, copied, done)
                return
            if copied is not None:
                log.info("reply copies %s: not spoken from there", copied)
                await self._finish_reply(kind, rolled_back=done)
                return
            self._say_more(new, t)
            st.reply_spoken = said
        if done:
            await self._finish_reply(kind, rolled_back=True)

    async def _prepare_another(self, kind: DecisionKind, copied: str, done: bool) -> None:
        """The reply's first words copy ``copied``: start once more, with another opening
        (``RETRY_LEAD``); only once per reply."""
        log.info("reply copies %s: preparing another", copied)
        if not done:  # a finished reply was rolled back already
            await self.worker.call(lambda s: s.reply_abort())
        self._begin_reply(kind, committed=self.state.reply_committed)
        self.state.reply_retried = True
        await self.worker.call(lambda s: s.reply_begin(kind, RETRY_LEAD))

    def _may_say_now(self) -> bool:
        """Nothing (a voice onset, the user's speech, an overlap) took the floor this tick."""
        st = self.state
        return self.epoch == self._tick_epoch and not st.user_speaking and st.overlap is None

    def _say_more(self, text: str, t: float) -> None:
        """Say the next words of the reply in hand: a new utterance for its first clause (or
        when the last one played out before the next was ready), else more of the same."""
        st = self.state
        handle = st.speech
        if not st.reply_spoken or handle is None or handle.done or handle.backchannel:
            self._start_speech(text, t, continues=bool(st.reply_spoken))
            return
        at = max(t, handle.end_t)
        self.speech.extend(handle, text, t)
        self._emit(SpeechStart(at, text, continues=True))

    async def _finish_reply(self, kind: DecisionKind, *, rolled_back: bool) -> None:
        """The reply is over: the session records what was said (or that nothing was)."""
        st = self.state
        spoken = st.reply_spoken
        st.reply, st.reply_text, st.reply_spoken = None, None, ""
        if not rolled_back:
            await self.worker.call(lambda s: s.reply_abort())
        if spoken:
            self._recent.append(f"assistant: {spoken}")
            await self.worker.call(lambda s: s.record(kind, spoken))
        else:
            log.info("empty reply (%s)", kind.value)
            await self.worker.call(lambda s: s.record(DecisionKind.SILENT))

    # --- seeing: screen events, cues and speaking up unasked ------------------------------

    def _see(self, frame: DataFrame) -> None:
        """Screen and focus frames go on the timeline; cues wait for the proactivity policy; a
        watch the user asked for ("tell me when the tests finish") fires on what ends it; the
        user's words may set a timer or a watch, tune the policy ("not now", "stop telling
        me"), or ask about the screen (the latest screen text comes into the micro-turn)."""
        sg = self.seeing
        fired = False
        if isinstance(frame, ScreenText | ScreenCue):
            for watch in list(sg.watches):
                remark = watch.fired_by(frame)
                if remark is not None:
                    sg.watches.remove(watch)
                    self._remind(frame.t, remark)
                    fired = True
        if isinstance(frame, ScreenText):
            self._emit(ScreenChange(frame.t, frame.app))
        elif isinstance(frame, ScreenCue):
            self._emit(ScreenCueEvent(frame.t, frame.what, frame.summary, frame.box))
            if fired:  # the watch's remark says it: not twice
                sg.seen.add(frame.key)
            elif frame.key not in sg.seen and all(c.key != frame.key for c in sg.pending):
                sg.pending.append(frame)
        elif isinstance(frame, FocusChange):
            self._emit(FocusEvent(frame.t, frame.app))
        elif isinstance(frame, TypedText) or (
            isinstance(frame, TranscriptDelta) and frame.final and not self.state.muted
        ):
            asked = timers.request(frame.text, frame.t)
            if isinstance(asked, timers.Timer):
                sg.timers.append(asked)
            elif isinstance(asked, timers.Watch):
                sg.watches.append(asked)
            said = proactivity.feedback(frame.text)
            if said is proactivity.Feedback.SNOOZE:
                sg.snoozed_until = frame.t + sg.config.snooze_s
            elif said is proactivity.Feedback.LOWER:
                sg.config = replace(sg.config, level=proactivity.LOWER[sg.config.level])
            if asks_about_screen(frame.text):
                text = self.screen_text() if self.screen_text is not None else ""
                if text:
                    tail = " ".join(text.split())[-LOOK_CHARS:]
                    self.assembler.add(ScreenText(frame.t, "", tail, looked=True))
                if self.look is not None:
                    self.look(frame.text)

    def _remind(self, t: float, text: str) -> None:
        """A timer ran out or a watch fired: a remark the user asked for, said at a pause."""
        self.seeing.pending.append(ScreenCue(t, "reminder", text, f"reminder:{t:.3f}:{text}"))

    async def _speak_up(self, t: float, decision: Decision) -> Decision:
        """After a silent tick: let the proactivity policy take the oldest cue that may be
        spoken now; the remark is brief and offers a handoff."""
        st, sg = self.state, self.seeing
        for timer in [x for x in sg.timers if x.due <= t]:  # on the engine's clock
            sg.timers.remove(timer)
            self._remind(timer.due, timer.what)
        if not sg.pending:
            return decision
        sit = proactivity.Situation(
            user_speaking=st.user_speaking or st.overlap is not None,
            user_turn_pending=(
                st.user_turn_ended_at is not None or st.typed_pending or st.reply is not None
            ),
            assistant_speaking=self._assistant_speaking(),
            interjections=tuple(sg.interjections),
            seen_keys=frozenset(sg.seen),
            snoozed_until=sg.snoozed_until,
            user_quiet_s=float("inf") if st.speech_ended_at is None else t - st.speech_ended_at,
        )
        chosen: ScreenCue | None = None
        reason = ""
        for cue in list(sg.pending):
            verdict, why = proactivity.decide(cue, t, sit, sg.config)
            if verdict is proactivity.Verdict.WAIT:
                continue
            sg.pending.remove(cue)
            sg.seen.add(cue.key)
            if verdict is proactivity.Verdict.INTERJECT and chosen is None:
                chosen, reason = cue, why
        if chosen is None:
            return decision
        text = proactivity.offer(chosen)
        sg.interjections.append(t)
        st.last_interjection_t = t
        marker = f"{t:.1f}{DECISION_CUE}"  # the moment on the session's timeline, then the act
        await self.worker.call(lambda s: s.step(marker))
        self._emit(DecisionEvent(t, DecisionKind.INTERJECT.value, reason))
        self._start_speech(text, t)
        await self.worker.call(lambda s: s.record(DecisionKind.INTERJECT, text))
        return Decision(t, decision.index, DecisionKind.INTERJECT, reason, True)

    # --- the background agent: handoffs out, task news in -----------------------------

    def _remember(self, frame: DataFrame) -> None:
        """What a handoff package needs (typed requests, the focused app); task updates go
        on the timeline, and a task's end waits to be told at the next pause."""
        if isinstance(frame, TypedText):
            self._recent.append(f"user: {frame.text}")
        elif isinstance(frame, FocusChange):
            self._focused_app = frame.app
        elif isinstance(frame, TaskUpdate):
            kind: TaskKind = "task_done" if frame.done else "task_update"
            kind = "task_started" if frame.kind == "started" else kind
            self._emit(TaskEvent(frame.t, kind, frame.task, frame.kind, frame.summary))
            if frame.done or frame.kind == "needs_permission":
                self._task_news.append(frame)

    def _hand_off(self, task_text: str, t: float) -> None:
        """Give the agent the request: the user's words (the model's task text beside them)."""
        if self.handoff is None:
            return
        request = self.state.last_user_words or task_text
        extra = (("task", task_text.strip()),) if task_text.strip() else ()
        screen = self.screen_text() if self.screen_text is not None else ""
        self.handoff(
            HandoffPackage(
                request=request,
                t=t,
                transcript=tuple(self._recent),
                screen_text=screen[-HANDOFF_SCREEN_CHARS:],
                focused_app=self._focused_app,
                extra=extra,
            )
        )

    def _tell_task_news(self, t: float) -> None:
        """At a pause (nobody speaking, no turn waiting, the user quiet a while), say what
        the background tasks came to; never over the user."""
        st = self.state
        if not self._task_news or st.user_speaking or st.overlap is not None:
            return
        if st.reply is not None or st.typed_pending or st.user_turn_ended_at is not None:
            return
        if self._assistant_speaking():
            return
        if st.speech_ended_at is not None and t - st.speech_ended_at < TASK_NEWS_QUIET_S:
            return
        news = self._task_news.pop(0)
        text = task_line(news)
        if text:
            self.assembler.add_said(text)
            self._start_speech(text, t)

    # --- speech --------------------------------------------------------------------------

    def _heard_no_words(self, t: float) -> None:
        """The voice activity had no words in it (a cough, a knock): it changes nothing."""
        st = self.state
        if st.overlap is not None:
            self._settle_overlap(st.overlap.on_transcript(""), t)
        elif not st.user_speaking and st.resumable_turn_end is not None:
            st.user_turn_ended_at, st.resumable_turn_end = st.resumable_turn_end, None

    def _pause_for_user(self, t: float, *, confirmed: bool) -> None:
        """Barge-in, the one arbiter: pause at once (flushing queued audio) and decide later,
        in ``bargein.Overlap``, whether it was an interruption, a backchannel or a click.

        The assistant's own backchannel is never paused (the user is talking by definition).
        An utterance queued but not audible yet is dropped: the user has the floor first.
        """
        st = self.state
        handle = st.speech
        if handle is None or handle.done or handle.backchannel or st.overlap is not None:
            return
        if handle.playing_at(t):
            handle.interrupt(t, "interrupted")
            st.overlap = Overlap(t, confirmed=confirmed)
            self._emit(SpeechStop(t, "interrupted"))
            rest = handle.rest_after(t)
            if rest:  # synthesised while the user talks: a resume after "mm-hmm" plays at once
                self.speech.prepare(rest, t)
        elif t < handle.start_t:
            self._stop_speech(t, "interrupted")

    async def _copied(self, text: str, *, opening: bool = False) -> str | None:
        """What a reply copies ("the prompt", "the user"), or None; with ``opening``, what a
        reply still being decoded begins to read back (``copying.opens_with``)."""
        text = text.removeprefix(RETRY_LEAD)  # judged on the model's own words
        if self._prompt_text is None:
            prompt = await self.worker.call(lambda s: s.prompt)
            self._prompt_text = PromptText.parse(prompt)
        user = self.state.last_user_words
        if opening:
            if self._prompt_text.opened_by(text) is not None:
                return "the prompt"
            return "the user" if opens_with(text, user) else None
        if self._prompt_text.copied_by(text) is not None:
            return "the prompt"
        if copies(text, user, share=USER_COPY_SHARE):
            return "the user"
        return None

    def _update_phase(self, t: float) -> None:
        st = self.state
        now = phase_of(
            muted=st.muted,
            paused=st.overlap is not None,
            user_speaking=st.user_speaking,
            assistant_speaking=self._assistant_speaking(),
            reply_committed=st.reply is not None and st.reply_committed,
            turn_pending=st.user_turn_ended_at is not None or st.typed_pending,
        )
        if now is not self.phase:
            if now not in TRANSITIONS[self.phase]:
                log.warning("phase: unexpected %s -> %s at %.2f", self.phase.value, now.value, t)
            self.phase = now

    def _assistant_speaking(self) -> bool:
        """True while an utterance of the assistant's own is queued or playing (not a pause)."""
        handle = self.state.speech
        return handle is not None and not handle.done

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
        rest = handle.rest_after(overlap.paused_t)
        log.info("barge-in: backchannel, resuming (paused %.2f s)", t - overlap.paused_t)
        if rest:
            self._start_speech(rest, t, resume=True)

    def _start_speech(
        self,
        text: str,
        t: float,
        *,
        resume: bool = False,
        backchannel: bool = False,
        continues: bool = False,
    ) -> None:
        handle = self.speech.say(text, t)
        handle.resume, handle.backchannel = resume, backchannel
        self.state.speech = handle
        self._emit(SpeechStart(handle.start_t, text, resume, continues))

    def _stop_speech(self, t: float, reason: str) -> None:
        handle = self.state.speech
        if handle is None or handle.done:
            return
        handle.interrupt(t, reason)
        assert handle.stopped_t is not None
        if handle.stop_reason != "done":
            self.assembler.add_cut_off(handle.said_until(handle.stopped_t))
        self._emit(SpeechStop(handle.stopped_t, handle.stop_reason or "interrupted"))

    def _finish_speech(self, t: float) -> None:
        handle = self.state.speech
        if handle is not None and not handle.done and handle.end_t <= t:
            handle.finish()
            self._emit(SpeechStop(handle.end_t, "done"))

    def flush(self, t: float) -> None:
        """End of input: let the current utterance play out (replay calls this last)."""
        handle = self.state.speech
        if handle is not None and not handle.done:
            self._finish_speech(max(t, handle.end_t))

    def _emit(self, ev: TimelineEvent) -> None:
        self.sink(ev)


@dataclass(slots=True)
class SeeingState:
    """Cues waiting for the proactivity policy, and what it remembers."""

    config: proactivity.ProactivityConfig
    pending: list[ScreenCue] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    interjections: list[float] = field(default_factory=list)
    snoozed_until: float | None = None
    timers: list[Timer] = field(default_factory=list)
    """Reminders asked for ("remind me in two minutes"), due on the engine's clock."""
    watches: list[Watch] = field(default_factory=list)
    """"Tell me when the tests finish": ended by a screen change or a cue."""


_SCREEN_QUESTION = re.compile(
    r"\b(?:on|at|in)\s+(?:my|the)\s+screen\b|\bscreen\b.*\?|\b(?:look|see)\s+at\s+(?:this|that)\b"
    r"|\bwhat(?:'s|\s+is)\s+(?:wrong|that|this)\s+(?:here|there|on)\b",
    re.I,
)


def asks_about_screen(text: str) -> bool:
    """The user asks about what is on their screen ("what's wrong on my screen?")."""
    return bool(_SCREEN_QUESTION.search(text))


LOOK_CHARS = 300
"""How much of the latest screen text (its end: the newest output) a question brings in."""


HANDOFF_ACK = "On it. I'll work on that in the background."
"""What the assistant says when it hands work off: the model's handoff text describes the task
for the agent; it is never read out as if it were speech."""
TASK_NEWS_QUIET_S = 1.0
"""A task's result is told only once the user has been quiet this long."""
HANDOFF_SCREEN_CHARS = 4000
"""How much of the latest redacted screen text travels with a handoff (its end)."""


def task_line(update: TaskUpdate) -> str:
    """What to say about a task update ("" for nothing: a cancel the user asked for)."""
    if update.kind == "failed":
        return f"The background task failed: {update.summary}"
    if update.kind == "needs_permission":
        return "The background task needs your permission to go on."
    if update.kind == "cancelled":
        return ""
    return update.summary


def speakable(kind: DecisionKind, text: str | None) -> str:
    """The words to say for a finished reply: never a decision label, never a task spec."""
    if kind is DecisionKind.HANDOFF:
        return HANDOFF_ACK
    words = (text or "").strip()
    if words.strip(" .!\"'").lower() in LABEL_WORDS:
        return ""
    return words


LABEL_WORDS = frozenset(k.value for k in DecisionKind)
_CLAUSE_END = re.compile(r"[.!?;:,](?=\s)")
MIN_CLAUSE_WORDS = 3
"""A comma ends a clause worth saying on its own only after this many words (a sentence end
always does): "Yes, ..." is not a clause, "Type git diff, then ..." is."""


ABBREVIATIONS = frozenset(("mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "e.g", "i.e"))
"""Words whose full stop ends no sentence (live, "Mr." was once spoken alone as a clause)."""


def clause_end(text: str, start: int) -> int:
    """Where the complete clauses after ``start`` end in a reply still being decoded (a
    punctuation mark the next word has already followed); ``start`` when none is complete."""
    end = start
    for m in _CLAUSE_END.finditer(text, start):
        before = text[end : m.start()].split()
        if m.group() == "." and before and before[-1].lower() in ABBREVIATIONS:
            continue
        if m.group() in ".!?" or len(text[end : m.end()].split()) >= MIN_CLAUSE_WORDS:
            end = m.end()
    return end


RETRY_LEAD = "In short, "
"""How a second attempt starts after a reply that only copied the prompt or the user."""
USER_COPY_SHARE = 0.75
"""A reply with this share of the user's own words, in order, reads them back (``tandem eval
replies`` found a 78 % echo that 0.8 let through)."""
