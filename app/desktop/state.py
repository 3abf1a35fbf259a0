"""What the tray shows: one state, derived from the timeline and the user's switches (no Qt).

Precedence, highest first: a sense blocked (the kill switch, or a lease the gate revoked for
another reason than mute), muted, speaking, thinking (the model decided to answer and the
reply is being prepared), working in the background (a task has started and not ended),
listening. ``starting`` until the engine is up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engine.core.events import DecisionEvent, PermissionEvent, SpeechStart, SpeechStop

ANSWERS = frozenset({"speak", "interject", "handoff", "backchannel"})
TASK_END = frozenset({"done", "failed", "cancelled"})
_TASK_KINDS = {"task_started": "started", "task_update": "progress", "task_done": "done"}


@dataclass(frozen=True, slots=True)
class TaskNews:
    """One task event, whichever shape it came in: the timeline's
    (``engine.core.events.TaskEvent``: ``task``, ``status``) or the agent's own
    (``background_agent.tasks.TaskEvent``: ``task_id``, ``kind``, ``diff``)."""

    task_id: str
    status: str
    """started, progress, needs_permission, done, failed or cancelled."""
    summary: str
    diff: str | None = None

    @property
    def ended(self) -> bool:
        """True for the task's last event."""
        return self.status in TASK_END


def task_news(ev: object) -> TaskNews | None:
    """The task event in ``ev``, or None when it is not one."""
    if hasattr(ev, "task_id"):
        status = str(getattr(ev, "kind", ""))
        task_id = str(getattr(ev, "task_id", ""))
    elif getattr(ev, "lane", None) in ("agent", "task") and hasattr(ev, "task"):
        kind = str(getattr(ev, "kind", ""))
        status = str(getattr(ev, "status", "")) or _TASK_KINDS.get(kind, kind)
        task_id = str(getattr(ev, "task", ""))
    else:
        return None
    diff = getattr(ev, "diff", None)
    return TaskNews(task_id, status, str(getattr(ev, "summary", "")), diff if diff else None)


class TrayState(enum.Enum):
    """The tray icon's states (one SVG each in ``assets/icons``)."""

    STARTING = "starting"
    LISTENING = "listening"
    MUTED = "muted"
    SPEAKING = "speaking"
    THINKING = "thinking"
    WORKING = "working"
    BLOCKED = "blocked"


TOOLTIPS = {
    TrayState.STARTING: "Tandem is starting",
    TrayState.LISTENING: "Tandem is listening - click to mute",
    TrayState.MUTED: "Tandem: microphone muted - click to unmute",
    TrayState.SPEAKING: "Tandem is speaking",
    TrayState.THINKING: "Tandem is thinking",
    TrayState.WORKING: "Tandem is working in the background",
    TrayState.BLOCKED: "Tandem: a sense is blocked",
}


@dataclass(slots=True)
class StateTracker:
    """Folds timeline events and switches into the one ``TrayState``."""

    ready: bool = False
    muted: bool = False
    killed: bool = False
    speaking: bool = False
    thinking: bool = False
    blocked: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)

    def add(self, ev: object) -> None:
        """Update from one timeline event."""
        match ev:
            case SpeechStart():
                self.speaking, self.thinking = True, False
            case SpeechStop():
                self.speaking = False
            case DecisionEvent():
                if ev.decision in ANSWERS:
                    self.thinking = not self.speaking
            case PermissionEvent(kind="lease"):
                self.blocked.discard(ev.sense_or_tool)
            case PermissionEvent(kind="revoke"):
                if not (self.muted and ev.sense_or_tool == "microphone"):
                    self.blocked.add(ev.sense_or_tool)
        news = task_news(ev)
        if news is not None:
            if news.ended:
                self.tasks.discard(news.task_id)
            else:
                self.tasks.add(news.task_id)

    def set_muted(self, on: bool) -> None:
        """The user muted or unmuted the microphone (a mute is not a block)."""
        self.muted = on
        self.blocked.discard("microphone")

    @property
    def state(self) -> TrayState:
        """The state to show now."""
        if not self.ready:
            return TrayState.STARTING
        if self.killed or self.blocked:
            return TrayState.BLOCKED
        if self.muted:
            return TrayState.MUTED
        if self.speaking:
            return TrayState.SPEAKING
        if self.thinking:
            return TrayState.THINKING
        if self.tasks:
            return TrayState.WORKING
        return TrayState.LISTENING
