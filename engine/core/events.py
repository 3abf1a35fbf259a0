"""Typed timeline events: what the engine tells the world, one frozen class per kind.

Consumers (the terminal, the duplex scorer, the future Qt bridge) match on these types; one
serializer, ``to_json``, writes exactly the timeline format of ``docs/EVAL_FORMATS.md`` (a
contract: new fields are optional and omitted when unset), and ``from_json`` reads it back.
Events carry no user content beyond the transcript and the assistant's own words, which the
timeline is for; logs never print them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

VadKind = Literal["speech_start", "speech_end"]
AsrKind = Literal["partial", "final"]
PermissionKind = Literal["lease", "revoke", "decision"]
TaskKind = Literal["task_started", "task_update", "task_done"]


@dataclass(frozen=True, slots=True)
class TickEvent:
    """A micro-turn closed."""

    t: float
    index: int
    lane: ClassVar[str] = "tick"
    kind: ClassVar[str] = "microturn"


@dataclass(frozen=True, slots=True)
class VadEvent:
    """The user's voice started or ended (as the VAD confirmed it)."""

    t: float
    kind: VadKind  # per instance: a lane of two kinds
    lane: ClassVar[str] = "vad"


@dataclass(frozen=True, slots=True)
class AsrEvent:
    """A transcript: a partial while the user talks, the final when the utterance ends."""

    t: float
    kind: AsrKind
    text: str
    lane: ClassVar[str] = "asr"


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """What the policy decided on a consulted tick, and a short content-free reason."""

    t: float
    decision: str
    reason: str = ""
    lane: ClassVar[str] = "model"
    kind: ClassVar[str] = "decision"


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """The first sample of an utterance reaches the speaker."""

    t: float
    text: str
    resume: bool = False
    """It continues an utterance that paused for the user (a backchannel, a click)."""
    continues: bool = False
    """More clauses of the utterance in hand (a reply spoken while it is still decoded):
    ``t`` is when they start to play, ``text`` only the new words."""
    lane: ClassVar[str] = "speech"
    kind: ClassVar[str] = "start"


@dataclass(frozen=True, slots=True)
class SpeechStop:
    """The last sample reaches the speaker: ``done``, ``interrupted`` or ``muted``."""

    t: float
    reason: str
    lane: ClassVar[str] = "speech"
    kind: ClassVar[str] = "stop"


@dataclass(frozen=True, slots=True)
class PermissionEvent:
    """A lease opened or revoked, or a tool decision."""

    t: float
    kind: PermissionKind
    sense_or_tool: str
    decision: str
    lane: ClassVar[str] = "permission"


@dataclass(frozen=True, slots=True)
class ScreenChange:
    """New text appeared on screen (the engine took a ``ScreenText``); no screen text here."""

    t: float
    app: str
    lane: ClassVar[str] = "screen"
    kind: ClassVar[str] = "change"


@dataclass(frozen=True, slots=True)
class ScreenCueEvent:
    """A failure or risk was seen on screen: ``what`` it is, its redacted few-word summary and
    where it is (x, y, w, h)."""

    t: float
    what: str
    summary: str = ""
    box: tuple[int, int, int, int] | None = None
    lane: ClassVar[str] = "screen"
    kind: ClassVar[str] = "cue"


@dataclass(frozen=True, slots=True)
class FocusEvent:
    """The focused application changed (its id only: window titles stay off the timeline)."""

    t: float
    app: str
    lane: ClassVar[str] = "focus"
    kind: ClassVar[str] = "change"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """A background task started, reported progress, or ended (``status`` says how: started,
    progress, needs_permission, done, failed, cancelled; ``summary`` is one short line)."""

    t: float
    kind: TaskKind  # per instance: task_started, task_update, task_done
    task: str
    status: str = ""
    summary: str = ""
    lane: ClassVar[str] = "agent"


TimelineEvent = (
    TaskEvent
    | TickEvent
    | VadEvent
    | AsrEvent
    | DecisionEvent
    | SpeechStart
    | SpeechStop
    | PermissionEvent
    | ScreenChange
    | ScreenCueEvent
    | FocusEvent
)
Sink = Callable[[TimelineEvent], None]


def to_json(ev: TimelineEvent) -> dict[str, Any]:
    """The JSON object of one timeline line (``t`` rounded to the millisecond)."""
    out: dict[str, Any] = {"t": round(ev.t, 3), "lane": ev.lane, "kind": ev.kind}
    match ev:
        case TickEvent():
            out["index"] = ev.index
        case AsrEvent():
            out["text"] = ev.text
        case DecisionEvent():
            out["decision"], out["reason"] = ev.decision, ev.reason
        case SpeechStart():
            out["text"] = ev.text
            if ev.resume:
                out["resume"] = True
            if ev.continues:
                out["continues"] = True
        case SpeechStop():
            out["reason"] = ev.reason
        case TaskEvent():
            out["task"] = ev.task
            if ev.status:
                out["status"] = ev.status
            if ev.summary:
                out["summary"] = ev.summary
        case PermissionEvent():
            out["sense_or_tool"], out["decision"] = ev.sense_or_tool, ev.decision
        case ScreenChange() | FocusEvent():
            out["app"] = ev.app
        case ScreenCueEvent():
            out["what"] = ev.what
            if ev.summary:
                out["summary"] = ev.summary
            if ev.box is not None:
                out["box"] = list(ev.box)
    return out


class TimelineFormatError(ValueError):
    """A timeline line that is not one of the known events."""


def _permission(t: float, kind: PermissionKind, d: Mapping[str, Any]) -> PermissionEvent:
    return PermissionEvent(t, kind, str(d.get("sense_or_tool", "")), str(d.get("decision", "")))


_READERS: dict[tuple[str, str], Callable[[float, Mapping[str, Any]], TimelineEvent]] = {
    ("tick", "microturn"): lambda t, d: TickEvent(t, int(d.get("index", 0))),
    ("vad", "speech_start"): lambda t, d: VadEvent(t, "speech_start"),
    ("vad", "speech_end"): lambda t, d: VadEvent(t, "speech_end"),
    ("asr", "partial"): lambda t, d: AsrEvent(t, "partial", str(d.get("text", ""))),
    ("asr", "final"): lambda t, d: AsrEvent(t, "final", str(d.get("text", ""))),
    ("model", "decision"): lambda t, d: DecisionEvent(
        t, str(d.get("decision", "")), str(d.get("reason", ""))
    ),
    ("speech", "start"): lambda t, d: SpeechStart(
        t, str(d.get("text", "")), d.get("resume") is True, d.get("continues") is True
    ),
    ("speech", "stop"): lambda t, d: SpeechStop(t, str(d.get("reason", ""))),
    ("permission", "lease"): lambda t, d: _permission(t, "lease", d),
    ("permission", "revoke"): lambda t, d: _permission(t, "revoke", d),
    ("permission", "decision"): lambda t, d: _permission(t, "decision", d),
}


def _cue(t: float, d: Mapping[str, Any]) -> ScreenCueEvent:
    box = d.get("box")
    ok = isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)
    where = (box[0], box[1], box[2], box[3]) if ok and isinstance(box, list) else None
    return ScreenCueEvent(t, str(d.get("what", "")), str(d.get("summary", "")), where)


def _task(t: float, kind: TaskKind, d: Mapping[str, Any]) -> TaskEvent:
    return TaskEvent(
        t, kind, str(d.get("task", "")), str(d.get("status", "")), str(d.get("summary", ""))
    )


_READERS[("agent", "task_started")] = lambda t, d: _task(t, "task_started", d)
_READERS[("agent", "task_update")] = lambda t, d: _task(t, "task_update", d)
_READERS[("agent", "task_done")] = lambda t, d: _task(t, "task_done", d)
_READERS[("screen", "change")] = lambda t, d: ScreenChange(t, str(d.get("app", "")))
_READERS[("screen", "cue")] = _cue
_READERS[("focus", "change")] = lambda t, d: FocusEvent(t, str(d.get("app", "")))


def from_json(d: Mapping[str, Any]) -> TimelineEvent:
    """Read one timeline line back (the inverse of ``to_json``).

    Raises:
        TimelineFormatError: unknown lane/kind, or a time that is not a finite number.
    """
    t = d.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise TimelineFormatError(f"timeline event without a finite time: {t!r}")
    reader = _READERS.get((str(d.get("lane")), str(d.get("kind"))))
    if reader is None:
        raise TimelineFormatError(f"unknown timeline event {d.get('lane')!r}/{d.get('kind')!r}")
    return reader(float(t), d)
