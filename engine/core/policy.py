"""The decision policy: the model proposes, the policy disposes.

Pure functions of a ``PolicyInput``; no I/O, no clock, no model. Each rule is one line of a
table in ``tests/test_policy.py``. The order of the rules is the priority:

1. the user has the floor -> silent, or a backchannel when the model asks for one and the
   last one is long enough ago (barge-in is not decided here: the engine pauses on the voice
   onset and ``hearing.bargein.Overlap`` alone arbitrates interruption against backchannel,
   so the assistant's own "mm-hmm" is never taken for an interruption);
2. the assistant is speaking -> go on, unless the model is sure it should stop;
3. the user typed to Tandem -> answer (speak), or hand off when the model prefers it;
4. the user's spoken turn ended -> answer once the silence is long enough for how finished
   the turn is (``endpoint.fuse``: words, prosody, the model's end-of-words probability):
   ``endpoint_s`` for a turn that is surely finished, and for any other longer than a
   thinking pause (``HOLD_S``), up to ``max_wait_s`` for words that broke off;
5. nobody is talking -> interject only when the model is confident and the cooldown passed;
6. otherwise silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.frames import DecisionKind, Proposal

ANSWERS = (DecisionKind.SPEAK, DecisionKind.HANDOFF)
"""The decisions that answer the user (a reply is prepared for them)."""
HOLD_S = 1.2
"""The shortest silence after a turn that is not surely finished: longer than a speaker's
thinking pause (the 1 s hesitations of ``tandem eval build-duplex``) plus the time the VAD
takes to hear the voice again (0.1-0.2 s live). A wait that grows smoothly with doubt (the
previous rule: 0.5 s at 0.8 finished, 1.0 s at 0.3) answered inside such pauses as soon as
recognition was quick enough to let it (live, 4 of 21 with Whisper's 10 s window)."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """User-tunable knobs. ``eagerness`` in [0, 1]: higher answers sooner and more often."""

    eagerness: float = 0.5
    interject_threshold: float = 0.6
    interject_cooldown_s: float = 30.0
    backchannel_threshold: float = 0.5
    backchannel_gap_s: float = 4.0
    model_stop_threshold: float = 0.8
    max_wait_s: float = 1.5

    def endpoint_s(self) -> float:
        """Silence after a final transcript before answering: 0.8 s (shy) to 0.2 s (eager)."""
        e = min(max(self.eagerness, 0.0), 1.0)
        return 0.8 - 0.6 * e

    def sure_turn(self) -> float:
        """How finished a turn must be (``endpoint.fuse``) to be answered after ``endpoint_s``:
        0.9 (shy) to 0.7 (eager). At the middle, 0.8: words that sound finished with Smart
        Turn at 0.96 or more; the pauses of build-duplex scored 0.0-0.75, the turn ends 0.3
        or 0.83-0.97 (replay, 2026-12-04). Live, one pause, at a comma after a whole sentence,
        scored 0.94 and was taken."""
        e = min(max(self.eagerness, 0.0), 1.0)
        return 0.9 - 0.2 * e

    def required_silence_s(self, complete: float) -> float:
        """Silence to wait before answering a turn that is ``complete`` (0..1) finished:
        ``endpoint_s`` when it is surely finished (``sure_turn``), else from ``HOLD_S`` (just
        under sure) to ``max_wait_s`` (not at all)."""
        c, sure = min(1.0, max(0.0, complete)), self.sure_turn()
        if c >= sure:
            return self.endpoint_s()
        hold = min(HOLD_S, self.max_wait_s)
        return max(self.endpoint_s(), hold + (self.max_wait_s - hold) * (1.0 - c / sure))


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything the policy may look at for one tick."""

    t: float
    proposal: Proposal
    user_speaking: bool = False
    assistant_speaking: bool = False
    typed_pending: bool = False
    user_turn_ended_at: float | None = None
    turn_complete: float = 0.5
    """How finished the user's turn is (``endpoint.fuse``)."""
    last_interjection_t: float | None = None
    last_backchannel_t: float | None = None


def decide(inp: PolicyInput, cfg: PolicyConfig) -> tuple[DecisionKind, str]:
    """Dispose the model's proposal for one tick; returns the decision and a short reason."""
    p = inp.proposal
    if inp.user_speaking:
        if (
            p.best() is DecisionKind.BACKCHANNEL
            and p.p(DecisionKind.BACKCHANNEL) >= (cfg.backchannel_threshold)
            and _since(inp.t, inp.last_backchannel_t) >= cfg.backchannel_gap_s
        ):
            return DecisionKind.BACKCHANNEL, "model_backchannel"
        return DecisionKind.SILENT, "user_has_floor"
    if inp.assistant_speaking:
        if p.p(DecisionKind.STOP) >= cfg.model_stop_threshold:
            return DecisionKind.STOP, "model_stop"
        return DecisionKind.SILENT, "assistant_has_floor"
    if inp.typed_pending:
        return _answer(p, "typed_request")
    if inp.user_turn_ended_at is not None:
        waited = inp.t - inp.user_turn_ended_at
        if waited >= cfg.max_wait_s:
            return _answer(p, "turn_end_timeout")
        if waited >= cfg.required_silence_s(inp.turn_complete):
            return _answer(p, "turn_end")
        return DecisionKind.SILENT, "endpointing"
    if (
        p.best() is DecisionKind.INTERJECT
        and p.p(DecisionKind.INTERJECT) >= cfg.interject_threshold
    ):
        if _since(inp.t, inp.last_interjection_t) >= cfg.interject_cooldown_s:
            return DecisionKind.INTERJECT, "model_interject"
        return DecisionKind.SILENT, "interject_cooldown"
    return DecisionKind.SILENT, "nothing_to_do"


def _answer(p: Proposal, reason: str) -> tuple[DecisionKind, str]:
    """Answer a request: hand off when the model prefers it, else speak."""
    if p.p(DecisionKind.HANDOFF) > p.p(DecisionKind.SPEAK):
        return DecisionKind.HANDOFF, reason
    return DecisionKind.SPEAK, reason


def _since(t: float, then: float | None) -> float:
    return float("inf") if then is None else t - then
