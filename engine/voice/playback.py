"""Playback: utterances as interruptible speech handles.

``PlayedSpeech`` streams an utterance to the speaker clause by clause from the voice thread;
``VoicedSpeech`` is its twin on replay's virtual clock (real audio, modelled synthesis time).
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.core import audio
from engine.senses.sound import Speaker
from engine.voice.handles import WORDS_PER_S, SpeechHandle
from engine.voice.synthesis import Synthesizer, sentences


class PlayedSpeech:
    """Utterances played on the speaker, streamed clause by clause on the voice thread.

    ``say`` returns at once (synthesis never stalls the engine's tick) with a handle whose
    times are estimates; the voice thread synthesises the first clause (or takes the one
    ``prepare`` made while the end-point waited), queues it on the speaker, and *posts* the
    handle's real times to the engine's thread (``post``: the event loop's
    ``call_soon_threadsafe`` live) as each clause reaches the speaker, counting the output
    stream's own latency. Barge-in flushes what is queued and cancels what is not synthesised.
    """

    def __init__(
        self,
        synth: Synthesizer,
        speaker: Speaker,
        *,
        post: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.synth, self.speaker = synth, speaker
        self.post = post or (lambda fn: fn())
        self._generation = 0  # bumped by every new utterance and every interruption
        self._lock = threading.Lock()
        self._prepared: tuple[str, threading.Thread, list[np.ndarray]] | None = None
        self._superseded: list[threading.Thread] = []
        self._jobs: queue.Queue[_Utterance | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tandem-voice")
        self._thread.start()

    def prepare(self, text: str, t: float) -> None:
        """Synthesise the first clause of a reply that is ready before it may be spoken."""
        first = (sentences(text) or [""])[0]
        out: list[np.ndarray] = []
        worker = threading.Thread(
            target=lambda: out.append(self.synth.synthesize(first)), name="tandem-voice-ahead"
        )
        worker.start()
        with self._lock:
            old, self._prepared = self._prepared, (first, worker, out)
            if old is not None:  # superseded: never waited for here (this is the loop's
                self._superseded.append(old[1])  # thread); joined by ``close``
            self._superseded = [w for w in self._superseded if w.is_alive()]

    def say(self, text: str, t: float) -> SpeechHandle:
        """Queue ``text``; the handle's times are corrected once its audio plays."""
        self._cancel()
        parts = sentences(text) or [""]
        start = t + self.synth.synthesis_s(len(parts[0].split()) / WORDS_PER_S)
        spoken = len(text.split()) / WORDS_PER_S
        handle = SpeechHandle(
            text=text, start_t=start, end_t=start + spoken, on_interrupt=self._cancel
        )
        self._jobs.put(_Utterance(self._generation, parts, handle, t, time.perf_counter()))
        return handle

    def extend(self, handle: SpeechHandle, text: str, t: float) -> None:
        """Queue more clauses of the utterance in hand; they play right after it (the voice
        thread takes jobs in order, and an interruption drops them with the rest)."""
        if handle.done or not (parts := sentences(text)):
            return
        before = handle.extend(text)
        job = _Utterance(self._generation, parts, handle, t, time.perf_counter(), before)
        self._jobs.put(job)

    def close(self) -> None:
        """Stop speaking and join the voice threads (the speaker is its owner's to stop)."""
        self._cancel()
        self._jobs.put(None)
        self._thread.join()
        with self._lock:
            prepared, self._prepared = self._prepared, None
            ahead = [*self._superseded, *([prepared[1]] if prepared is not None else [])]
            self._superseded = []
        for worker in ahead:
            worker.join()

    def _first_audio(self, first: str) -> np.ndarray:
        with self._lock:
            prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared[1].join()  # usually done already
            if prepared[0] == first and prepared[2]:
                return prepared[2][0]
        return self.synth.synthesize(first) if first else np.zeros(0, np.float32)

    def _cancel(self) -> None:
        self._generation += 1
        self.speaker.flush()

    def _run(self) -> None:
        while (u := self._jobs.get()) is not None:
            words_before = u.words_before
            for i, part in enumerate(u.parts):
                first = i == 0 and not u.words_before
                samples = self._first_audio(part) if first else self.synth.synthesize(part)
                if u.generation != self._generation:
                    break  # interrupted, or a newer utterance took over
                # Its first sample reaches the speaker after what is queued ahead of it and
                # the output stream's own latency (on the engine's clock).
                ahead = self.speaker.queued_s + self.speaker.latency_s
                seconds = self.speaker.play(audio.resample(samples, audio.RATE, self.speaker.rate))
                start = u.t + time.perf_counter() - u.queued + ahead
                n = len(part.split())
                self.post(functools.partial(u.handle.played, words_before, n, start, seconds))
                words_before += n


@dataclass(frozen=True, slots=True)
class _Utterance:
    """What the voice thread plays: the clauses, the handle, and when ``say`` was called."""

    generation: int
    parts: list[str]
    handle: SpeechHandle
    t: float
    queued: float
    words_before: int = 0
    """Words of the handle before these clauses (a continuation of a streamed reply)."""


class VoicedSpeech:
    """Utterances with real audio on replay's clock: each starts once its first sentence
    would be synthesised on this CPU (``Synthesizer.synthesis_s``) and lasts as long as its
    audio (later sentences are synthesised while the first plays, as ``PlayedSpeech`` does)."""

    def __init__(self, synth: Synthesizer) -> None:
        self.synth = synth
        self.track: list[tuple[SpeechHandle, float, np.ndarray]] = []
        """Every utterance's audio: its handle, when the audio starts, the samples."""
        # the first sentence synthesised ahead, its audio, and when it is ready
        self._prepared: tuple[str, np.ndarray, float] | None = None

    def prepare(self, text: str, t: float) -> None:
        """Start synthesising the first sentence at ``t`` (it is ready a modelled time later)."""
        first = (sentences(text) or [""])[0]
        samples = self.synth.synthesize(first)
        ready = t + self.synth.synthesis_s(len(samples) / audio.RATE)
        self._prepared = (first, samples, ready)

    def say(self, text: str, t: float) -> SpeechHandle:
        """Synthesise ``text`` sentence by sentence; it starts after the first sentence."""
        parts = sentences(text) or [""]
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] == parts[0]:
            first, ready = prepared[1], max(t, prepared[2])  # synthesised while it waited
        else:
            first = self.synth.synthesize(parts[0])
            ready = t + self.synth.synthesis_s(len(first) / audio.RATE)
        samples = np.concatenate([first, *(self.synth.synthesize(s) for s in parts[1:])])
        start = round(ready, 3)
        handle = SpeechHandle(text=text, start_t=start, end_t=start)
        handle.played(0, len(text.split()), start, len(samples) / audio.RATE)
        self.track.append((handle, start, samples))
        return handle

    def extend(self, handle: SpeechHandle, text: str, t: float) -> None:
        """Synthesise the next clauses; they start when the handle's audio ends, or once
        synthesised if that is later (a gap: the model was slower than the voice)."""
        parts = sentences(text)
        if handle.done or not parts:
            return
        pieces = [self.synth.synthesize(s) for s in parts]
        samples = np.concatenate(pieces)
        ready = t + self.synth.synthesis_s(len(pieces[0]) / audio.RATE)
        start = round(max(handle.end_t, ready), 3)
        before = handle.extend(text)
        handle.played(before, len(text.split()), start, len(samples) / audio.RATE)
        self.track.append((handle, start, samples))

    def close(self) -> None:
        """Nothing runs in the background in replay."""

    def render(self, duration_s: float) -> np.ndarray:
        """The assistant's audio on the timeline, each utterance cut where it stopped."""
        out = np.zeros(int(duration_s * audio.RATE), dtype=np.float32)
        for handle, start, samples in self.track:
            end = handle.stopped_t if handle.stopped_t is not None else handle.end_t
            i = int(start * audio.RATE)
            n = max(0, min(int((end - start) * audio.RATE), len(out) - i, len(samples)))
            out[i : i + n] += samples[:n]
        return out
