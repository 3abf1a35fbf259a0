"""Speech out as interruptible handles.

Every utterance is a ``SpeechHandle``: it knows when its first sample reaches the speaker,
when its last one will, and it can be interrupted at any moment (barge-in flushes what is
queued). ``SpeechOut`` is the boundary the voice issue fills with piper/espeak synthesis and
sounddevice playback; until then ``PacedTextSpeech`` produces no audio and paces the words at
a speaking rate, so the timeline, barge-in and the model's record of what it said behave as
they will with a voice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

WORDS_PER_S = 2.6
"""About 156 words a minute, a calm speaking rate."""


@dataclass(slots=True)
class SpeechHandle:
    """One utterance on the timeline."""

    text: str
    start_t: float
    end_t: float
    stopped_t: float | None = None
    stop_reason: str | None = None
    resume: bool = False
    on_interrupt: Callable[[], None] | None = None
    """Flushes queued audio (set by a speech out that plays it)."""
    _words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._words = self.text.split()

    @property
    def done(self) -> bool:
        """True once stopped (interrupted, muted) or finished."""
        return self.stopped_t is not None

    def playing_at(self, t: float) -> bool:
        """True while audio is reaching the speaker at time ``t``."""
        return not self.done and self.start_t <= t < self.end_t

    def interrupt(self, t: float, reason: str = "interrupted") -> None:
        """Stop at ``t`` and flush everything still queued."""
        if self.done:
            return
        self.stopped_t = max(self.start_t, min(t, self.end_t))
        self.stop_reason = reason if t < self.end_t else "done"
        if self.on_interrupt is not None:
            self.on_interrupt()

    def finish(self) -> None:
        """Mark the utterance as played out."""
        if not self.done:
            self.stopped_t = self.end_t
            self.stop_reason = "done"

    def said_until(self, t: float) -> str:
        """The words that reached the speaker by ``t`` (what the user heard)."""
        span = self.end_t - self.start_t
        if span <= 0 or t >= self.end_t:
            return self.text
        frac = max(0.0, (t - self.start_t) / span)
        return " ".join(self._words[: int(len(self._words) * frac)])


class SpeechOut(Protocol):
    """Turns text into an utterance that starts now (or as soon as audio is ready)."""

    def say(self, text: str, t: float) -> SpeechHandle:
        """Start saying ``text`` at time ``t``."""
        ...

    def prepare(self, text: str, t: float) -> None:
        """``text`` will probably be said soon: synthesise its start ahead (speculation)."""
        ...


class PacedTextSpeech:
    """Speech without audio: words paced at ``WORDS_PER_S`` (until the voice lands)."""

    def __init__(self, words_per_s: float = WORDS_PER_S, lead_s: float = 0.0) -> None:
        self.words_per_s = words_per_s
        self.lead_s = lead_s

    def prepare(self, text: str, t: float) -> None:
        """Nothing to synthesise."""

    def say(self, text: str, t: float) -> SpeechHandle:
        """An utterance whose duration follows its word count."""
        start = t + self.lead_s
        duration = max(0.4, len(text.split()) / self.words_per_s)
        return SpeechHandle(text=text, start_t=start, end_t=start + duration)
