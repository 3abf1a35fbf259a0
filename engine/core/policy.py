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
   the words sound (``endpoint.completeness``, nudged up when the model agrees): from
   ``endpoint_s`` for a finished sentence to ``max_wait_s`` for one that broke off;
5. nobody is talking -> interject only when the model is confident and the cooldown passed;
6. otherwise silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.frames import DecisionKind, Proposal

ANSWERS = (DecisionKind.SPEAK, DecisionKind.HANDOFF)
"""The decisions that answer the user (a reply is prepared for them)."""
MODEL_NUDGE = 0.2
"""How much the model's agreement adds to the words' completeness (a 135M model's logits are
a weak signal: they shorten the wait, never decide it alone)."""


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

    def required_silence_s(self, complete: float, model_agrees: bool) -> float:
        """Silence to wait before answering words that are ``complete`` (0..1) finished."""
        evidence = min(1.0, max(0.0, complete) + (MODEL_NUDGE if model_agrees else 0.0))
        return self.endpoint_s() + (self.max_wait_s - self.endpoint_s()) * (1.0 - evidence)

    def answer_threshold(self) -> float:
        """Model probability of speak+handoff needed to answer before ``max_wait_s``."""
        e = min(max(self.eagerness, 0.0), 1.0)
        return 0.5 - 0.4 * e


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
    """How finished the user's last words sound (``endpoint.completeness``)."""
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
        agrees = p.p(DecisionKind.SPEAK) + p.p(DecisionKind.HANDOFF) >= cfg.answer_threshold()
        if waited >= cfg.required_silence_s(inp.turn_complete, agrees):
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
