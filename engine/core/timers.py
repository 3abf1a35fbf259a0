"""Timers and watches asked for in words, on the engine's clock (pure: no clock, no I/O).

``request(text, now)`` reads what the user said or typed:

- a timer: "remind me in two minutes (to check the oven)", "remind me to push in 5 min",
  "set a timer for 30 seconds", "in half an hour remind me ..." -> ``Timer(due, what)``;
- a watch on the screen: "tell me when the tests finish" (or pass, are done), "let me know
  when the build is done" -> ``Watch(kind)``. (A background task needs no watch: its result
  is always told at the next pause, ``Engine._tell_task_news``.)

``Watch.fired_by(...)`` says whether a screen change or a cue ends the watch, and what to
say. The engine keeps both (a mute does not touch them) and says them as remarks the user
asked for: never while the user speaks, whatever the proactivity level
(``engine.core.proactivity``: severity ``ASKED``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from engine.core.frames import ScreenCue, ScreenText

WatchKind = Literal["tests", "build"]

_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60,
    "a couple of": 2, "a few": 3, "half an": 0.5, "half a": 0.5,
}  # fmt: skip
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_AMOUNT = (
    r"(\d+(?:\.\d+)?|" + "|".join(sorted(map(re.escape, _NUMBERS), key=len, reverse=True)) + ")"
)
_DURATION = re.compile(
    rf"\b(?:in|for|after)\s+{_AMOUNT}\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b", re.I
)
_TIMER = re.compile(r"\b(?:remind|ping|tell|alert|nudge)\s+me\b|\b(?:set\s+)?a\s+timer\b", re.I)
_TO_DO = re.compile(r"\bremind\s+me\s+(?:to|about)\s+(.+?)(?:\s+(?:in|after)\s+|$)", re.I)
_TO_DO_AFTER = re.compile(r"\b(?:to|about)\s+(.+)$", re.I)
_WATCH = re.compile(
    r"\b(?:tell|let|ping|alert|notify)\s+me(?:\s+know)?\s+(?:when|once|if)\s+(?:the\s+)?"
    r"(tests?|test\s+run|build|compil\w*)\b",
    re.I,
)
_TESTS_DONE = re.compile(
    r"\b\d+\s+(?:passed|failed)\b|\bRan\s+\d+\s+tests?\b|test result: \w+|^OK\b|\bok\s+\S+\s+\d",
    re.I,
)
_BUILD_DONE = re.compile(
    r"\bFinished\b|\bcompiled successfully\b|\bBUILD SUCCESSFUL\b|\bexited with code=?\d+"
    r"|\bbuild (?:succeeded|finished|complete)",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Timer:
    """Say ``what`` at engine time ``due``."""

    due: float
    what: str


@dataclass(frozen=True, slots=True)
class Watch:
    """Say something when the tests or a build finish on screen."""

    kind: WatchKind
    asked_at: float

    def fired_by(self, frame: ScreenText | ScreenCue) -> str | None:
        """What to say if this frame ends the watch, else None."""
        if isinstance(frame, ScreenCue):
            if self.kind == "tests" and frame.what == "test_failure":
                return f"The tests finished: {frame.summary}. Want me to look?"
            if self.kind == "build" and frame.what in ("build_error", "type_error"):
                return f"The build failed: {frame.summary}. Want me to look?"
            return None
        if isinstance(frame, ScreenText) and not frame.looked:
            last = frame.summary.split("last: ", 1)[-1].strip("=-_ ")
            if self.kind == "tests" and _TESTS_DONE.search(last):
                return f"The tests finished: {last}"
            if self.kind == "build" and _BUILD_DONE.search(last):
                return f"The build finished: {last}"
        return None


def request(text: str, now: float) -> Timer | Watch | None:
    """The timer or watch ``text`` asks for, if any (see the module docstring)."""
    watch = _WATCH.search(text)
    if watch:
        kind: WatchKind = "tests" if watch.group(1).lower().startswith("test") else "build"
        return Watch(kind, now)
    if not _TIMER.search(text):
        return None
    m = _DURATION.search(text)
    if m is None:
        return None
    amount = _amount(m.group(1))
    unit = m.group(2).lower().rstrip("s") or "s"
    seconds = amount * _UNITS.get(unit, _UNITS.get(unit[:3], 60))
    todo = _TO_DO.search(text) or _TO_DO_AFTER.search(text[m.end() :])
    what = todo.group(1).strip(" .!?") if todo else ""
    said = f"Reminder: {what}." if what else f"Your {_spoken(amount, unit)} timer is up."
    return Timer(now + seconds, said)


def _amount(word: str) -> float:
    w = word.lower()
    return float(w) if w[0].isdigit() else float(_NUMBERS[w])


def _spoken(amount: float, unit: str) -> str:
    name = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour"}.get(
        unit, unit
    )
    n = f"{amount:g}" if amount != 0.5 else "half"
    return f"{n} {name}" if amount != 0.5 else f"half-{name}"
