"""Speech out as interruptible handles.

Every utterance is a ``SpeechHandle``: it knows when its first sample reaches the speaker,
when its last one will, and it can be interrupted at any moment (barge-in flushes what is
queued). ``SpeechOut`` is the boundary: ``engine.voice.playback`` implements it with the
piper voice on the speaker (live) and on replay's clock; ``PacedTextSpeech`` produces no
audio and paces the words at a speaking rate (the terminal without a speaker, engine tests),
so the timeline, barge-in and the model's record of what it said behave as with a voice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

WORDS_PER_S = 2.6
"""About 156 words a minute, a calm speaking rate."""


@dataclass(slots=True)
class SpeechHandle:
    """One utterance on the timeline.

    Owned by the engine's thread: a voice that plays on another thread posts its corrections
    (``played``) to that thread instead of writing the fields itself.
    """

    text: str
    start_t: float
    end_t: float
    stopped_t: float | None = None
    stop_reason: str | None = None
    resume: bool = False
    backchannel: bool = False
    """The assistant's own "mm-hmm" while the user talks: never paused as a barge-in."""
    on_interrupt: Callable[[], None] | None = None
    """Flushes queued audio (set by a speech out that plays it)."""
    _words: list[str] = field(default_factory=list)
    _pieces: list[tuple[int, int, float, float]] = field(default_factory=list)
    """(words before it, its words, start, end) of each piece as it reached the speaker."""

    def __post_init__(self) -> None:
        self._words = self.text.split()

    @property
    def done(self) -> bool:
        """True once stopped (interrupted, muted) or finished."""
        return self.stopped_t is not None

    def playing_at(self, t: float) -> bool:
        """True while audio is reaching the speaker at time ``t``."""
        return not self.done and self.start_t <= t < self.end_t

    def played(self, words_before: int, words: int, start: float, seconds: float) -> None:
        """The voice started playing a piece (``words`` words after ``words_before``) at
        ``start``, lasting ``seconds``. The first piece fixes the utterance's real start; each
        one extends its end."""
        if not self._pieces:
            self.start_t = self.end_t = start
        self._pieces.append((words_before, words, start, start + seconds))
        self.end_t = max(self.end_t, start + seconds)

    def extend(self, text: str) -> int:
        """Append the next clauses of a reply that is streamed as it is decoded; returns the
        number of words before them (the voice reports their pieces from there). The end
        moves by an estimate until the voice reports when they really play."""
        before = len(self._words)
        words = text.split()
        self.text = f"{self.text} {text}".strip()
        self._words.extend(words)
        self.end_t += len(words) / WORDS_PER_S
        return before

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

    def _heard_words(self, t: float) -> int:
        if self._pieces:  # where the audio really was: whole pieces, then part of one
            heard = 0
            for before, words, start, end in self._pieces:
                if t >= end:
                    heard = before + words
                elif t > start:
                    heard = before + int(words * (t - start) / (end - start))
            return min(heard, len(self._words))
        span = self.end_t - self.start_t
        frac = (t - self.start_t) / span if span > 0 else 1.0
        return min(len(self._words), int(len(self._words) * max(0.0, frac)))

    def said_until(self, t: float) -> str:
        """The words that reached the speaker by ``t`` (what the user heard)."""
        return " ".join(self._words[: self._heard_words(t)])

    def rest_after(self, t: float) -> str:
        """What was not heard by ``t``, from the word that was being spoken (to resume)."""
        return " ".join(self._words[self._heard_words(t) :])


class SpeechOut(Protocol):
    """Turns text into an utterance that starts now (or as soon as audio is ready)."""

    def say(self, text: str, t: float) -> SpeechHandle:
        """Start saying ``text`` at time ``t``."""
        ...

    def prepare(self, text: str, t: float) -> None:
        """``text`` will probably be said soon: synthesise its start ahead (speculation)."""
        ...

    def extend(self, handle: SpeechHandle, text: str, t: float) -> None:
        """Go on saying ``text`` after what ``handle`` has queued (a reply streamed clause by
        clause); nothing happens if the handle was interrupted."""
        ...

    def close(self) -> None:
        """Stop speaking and release the voice (threads, child programs)."""
        ...


class PacedTextSpeech:
    """Speech without audio: words paced at ``WORDS_PER_S`` (no speaker, engine tests)."""

    def __init__(self, words_per_s: float = WORDS_PER_S, lead_s: float = 0.0) -> None:
        self.words_per_s = words_per_s
        self.lead_s = lead_s

    def prepare(self, text: str, t: float) -> None:
        """Nothing to synthesise."""

    def close(self) -> None:
        """Nothing to release."""

    def say(self, text: str, t: float) -> SpeechHandle:
        """An utterance whose duration follows its word count."""
        start = t + self.lead_s
        handle = SpeechHandle(text=text, start_t=start, end_t=start)
        handle.played(0, len(text.split()), start, self._span(text))
        return handle

    def extend(self, handle: SpeechHandle, text: str, t: float) -> None:
        """The words follow the handle's last ones (after a gap if they came late)."""
        if handle.done:
            return
        end = handle.end_t
        before = handle.extend(text)
        handle.played(before, len(text.split()), max(end, t + self.lead_s), self._span(text))

    def _span(self, text: str) -> float:
        return max(0.4, len(text.split()) / self.words_per_s)
