"""When Tandem speaks up unasked: a pure policy over screen cues, table-tested.

``decide(cue, now, situation, config)`` says for one pending cue: interject now, wait (it stays
pending), or drop it, with a short reason. The rules, in order:

0. a reminder the user asked for (``timers``: severity ``ASKED``) is said at the first moment
   nobody has the floor, at any level, within ``asked_stale_s``;
1. a cue seen before (same ``key``) is dropped: never the same cue twice;
2. a cue older than ``stale_s`` is dropped (what it was about has scrolled on);
3. the level admits the cue's severity (off: nothing; critical: destructive commands; normal:
   also test failures, tracebacks, build and type errors; chatty: the same, with a shorter
   gap), or it is dropped;
4. the user snoozed ("not now"): only critical cues pass until the snooze ends;
5. never while the user speaks, a turn of theirs is pending, the assistant speaks, or the
   user stopped less than ``pause_s`` ago (a breath between words, their words not yet
   recognised): wait;
6. the rate limit (``max_per_10_min`` in any 600 s; critical cues are exempt) and the gap
   since the last interjection: wait;
7. interject.

``feedback(text)`` reads the user's "not now" (snooze) and "stop telling me" (one level lower)
from what they said or typed. ``offer(cue)`` is the brief remark with a handoff offer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.core.frames import ScreenCue

RATE_WINDOW_S = 600.0
"""The rate limit counts interjections in any 10 minutes."""


class Proactivity(enum.Enum):
    """How readily Tandem speaks up unasked (``proactivity.level`` in the configuration)."""

    OFF = "off"
    CRITICAL = "critical"
    NORMAL = "normal"
    CHATTY = "chatty"


class Severity(enum.IntEnum):
    """How much a cue matters."""

    NORMAL = 1
    CRITICAL = 2
    ASKED = 3
    """The user asked for it (a timer, a watch): said at any level, kept longer."""


SEVERITY: dict[str, Severity] = {
    "destructive_command": Severity.CRITICAL,
    "test_failure": Severity.NORMAL,
    "traceback": Severity.NORMAL,
    "build_error": Severity.NORMAL,
    "type_error": Severity.NORMAL,
    "reminder": Severity.ASKED,
}
"""Severity per cue kind (an unknown kind is NORMAL)."""

_LOWEST: dict[Proactivity, Severity | None] = {
    Proactivity.OFF: None,
    Proactivity.CRITICAL: Severity.CRITICAL,
    Proactivity.NORMAL: Severity.NORMAL,
    Proactivity.CHATTY: Severity.NORMAL,
}
LOWER: dict[Proactivity, Proactivity] = {
    Proactivity.CHATTY: Proactivity.NORMAL,
    Proactivity.NORMAL: Proactivity.CRITICAL,
    Proactivity.CRITICAL: Proactivity.OFF,
    Proactivity.OFF: Proactivity.OFF,
}
"""What "stop telling me" lowers a level to."""


class Verdict(enum.Enum):
    """What to do with a pending cue."""

    INTERJECT = "interject"
    WAIT = "wait"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class ProactivityConfig:
    """The user's knobs (the configuration's ``proactivity`` section builds it)."""

    level: Proactivity = Proactivity.NORMAL
    max_per_10_min: int = 3
    min_gap_s: float = 20.0
    """Seconds between two interjections (chatty: half)."""
    stale_s: float = 8.0
    """A cue not spoken within this long is dropped."""
    snooze_s: float = 600.0
    """How long "not now" keeps all but critical cues quiet."""
    asked_stale_s: float = 60.0
    """A reminder the user asked for waits this long for a pause."""
    pause_s: float = 1.5
    """Quiet the user must have kept before a remark: a pause, not a breath between words
    (the end-of-turn wait is at most ``PolicyConfig.max_wait_s`` = 1.5 s; the final
    transcript of what they said arrives within it)."""


@dataclass(frozen=True, slots=True)
class Situation:
    """What the policy may look at besides the cue."""

    user_speaking: bool = False
    user_turn_pending: bool = False
    assistant_speaking: bool = False
    interjections: Sequence[float] = ()
    """When the earlier interjections started (any order)."""
    seen_keys: frozenset[str] = frozenset()
    snoozed_until: float | None = None
    user_quiet_s: float = float("inf")
    """Seconds since the user's voice last stopped."""


def decide(
    cue: ScreenCue, now: float, sit: Situation, cfg: ProactivityConfig
) -> tuple[Verdict, str]:
    """Interject, wait or drop one pending cue; returns the verdict and a short reason."""
    if cue.key in sit.seen_keys:
        return Verdict.DROP, "repeat"
    severity = SEVERITY.get(cue.what, Severity.NORMAL)
    if severity is Severity.ASKED:
        if now - cue.t > cfg.asked_stale_s:
            return Verdict.DROP, "stale"
        if sit.user_speaking or sit.user_turn_pending or sit.assistant_speaking:
            return Verdict.WAIT, "floor_taken"
        if sit.user_quiet_s < cfg.pause_s:
            return Verdict.WAIT, "user_pausing"
        return Verdict.INTERJECT, "asked_reminder"
    if now - cue.t > cfg.stale_s:
        return Verdict.DROP, "stale"
    lowest = _LOWEST[cfg.level]
    if lowest is None or severity < lowest:
        return Verdict.DROP, "below_level"
    critical = severity is Severity.CRITICAL
    if not critical and sit.snoozed_until is not None and now < sit.snoozed_until:
        return Verdict.DROP, "snoozed"
    if sit.user_speaking or sit.user_turn_pending:
        return Verdict.WAIT, "user_has_floor"
    if sit.assistant_speaking:
        return Verdict.WAIT, "assistant_has_floor"
    if sit.user_quiet_s < cfg.pause_s:
        return Verdict.WAIT, "user_pausing"
    if not critical:
        recent = [t for t in sit.interjections if now - t < RATE_WINDOW_S]
        if len(recent) >= cfg.max_per_10_min:
            return Verdict.WAIT, "rate_limit"
        gap = cfg.min_gap_s / 2 if cfg.level is Proactivity.CHATTY else cfg.min_gap_s
        if recent and now - max(recent) < gap:
            return Verdict.WAIT, "gap"
    return Verdict.INTERJECT, f"screen_{cue.what}"


class Feedback(enum.Enum):
    """What the user told Tandem about its remarks."""

    SNOOZE = "snooze"
    LOWER = "lower"


_LOWER = re.compile(
    r"\b(?:stop|quit|don'?t\s+keep|no\s+more)\s+(?:telling|interrupting|bugging|pinging|nagging)"
    r"|\b(?:stop|quit)\s+(?:it|that)\s+with\s+the|\bbe\s+quiet(?:er)?\b|\bshut\s+up\b"
    r"|\bfewer\s+(?:remarks|interruptions)\b|\bleave\s+me\s+alone\b",
    re.I,
)
_SNOOZE = re.compile(r"\bnot\s+now\b|\bnot\s+right\s+now\b|\blater\b|\bi'?m\s+busy\b", re.I)


def feedback(text: str) -> Feedback | None:
    """The user's word on interjections in what they said or typed, if any."""
    if _LOWER.search(text):
        return Feedback.LOWER
    if _SNOOZE.search(text):
        return Feedback.SNOOZE
    return None


def offer(cue: ScreenCue) -> str:
    """What Tandem says: the cue in a few words, and an offer to look (or a warning)."""
    if cue.what == "reminder":
        return cue.summary
    s = cue.summary.rstrip(" .")
    if cue.what == "destructive_command":
        return f"Careful: {s} can't be undone. Sure about that?"
    if cue.what == "test_failure":
        return f"{s}: want me to look?"
    if cue.what == "traceback":
        return f"There's a {s}. Want me to look?"
    if cue.what == "type_error":
        return f"Type error in {s}. Want me to look?"
    return f"The build failed: {s}. Want me to look?"
