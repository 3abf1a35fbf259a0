"""Speech synthesis: text to 16 kHz audio, sentence by sentence.

The natural voice is piper's en_US-joe-medium model (embedded, SHA-256 checked), run with
onnxruntime in Tandem's process (``engine.features.piper``). Its phonemes come from espeak-ng,
which is GPL-3.0: espeak-ng is only ever loaded in a separate child program
(``engine/espeak_child.py``, one per process, started once and kept), which keeps the
licences apart. The same child is the fallback voice (robotic, a few ms to first audio) when
the piper voice is missing or corrupt; ``default_synthesizer()`` picks one and logs which and
why.

``VoicedSpeech`` is the ``SpeechOut`` that replay and the live app use: the utterance lasts as
long as its audio, and the audio is kept so ``tandem replay --speech-out`` can write the
assistant's track on the scenario's timeline.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import queue
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine import audio
from engine.errors import EngineError
from engine.model.registry import package_path
from engine.processes import Child
from engine.senses.sound import Speaker
from engine.speech import WORDS_PER_S, SpeechHandle

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")
ESPEAK_PACKAGE, ESPEAK_REQUIREMENT = "espeakng_loader", "espeakng-loader==0.2.4"
ESPEAK_LIBRARY = {"darwin": "libespeak-ng.dylib", "win32": "espeak-ng.dll"}.get(
    sys.platform, "libespeak-ng.so"
)


_CLAUSE = re.compile(r"(?<=,)\s+")
CLAUSE_CHARS = 60
"""A sentence longer than this is synthesised clause by clause (at its commas): the first
audio waits for one clause, not for a whole long sentence."""


def sentences(text: str) -> list[str]:
    """Split a reply into sentences, long ones into clauses (the units of synthesis, so
    speech can start early)."""
    out: list[str] = []
    for sentence in (p.strip() for p in _SENTENCE.split(text)):
        parts = _CLAUSE.split(sentence) if len(sentence) > CLAUSE_CHARS else [sentence]
        out.extend(p for p in parts if p)
    return out


class Synthesizer(Protocol):
    """Text in, 16 kHz mono float32 audio out."""

    def synthesize(self, text: str) -> np.ndarray:
        """The audio for ``text``."""
        ...

    def synthesis_s(self, seconds_of_audio: float) -> float:
        """Modelled time to synthesise ``seconds_of_audio`` on this CPU (replay's clock)."""
        ...


PIPER_BASE_S, PIPER_RTF = 0.03, 0.07
"""Piper joe-medium with 1 thread here: 165-200 ms to first audio for a 2.3 s sentence, RTF
0.071-0.080 (``tandem bench tts``)."""
ESPEAK_S = 0.01
"""espeak-ng: ~7 ms to first audio whatever the sentence."""


class Espeak:
    """The espeak-ng child program: IPA phonemes, and speech for the fallback voice."""

    def __init__(self) -> None:
        library = package_path(ESPEAK_PACKAGE, ESPEAK_LIBRARY, ESPEAK_REQUIREMENT)
        data = library.with_name("espeak-ng-data")
        child = Path(__file__).with_name("espeak_child.py")
        env = {k: os.environ[k] for k in ("PATH", "SYSTEMROOT") if k in os.environ}
        self.child = Child(
            [sys.executable, "-I", str(child), str(library), str(data)], name="espeak-ng", env=env
        )

    def start(self) -> None:
        """Start the child now (if it is not running), so a broken install shows at once."""
        self.child.start()

    def phonemes(self, text: str, voice: str = "en-us") -> list[str]:
        """IPA per sentence, clause marks kept (what piper was trained on)."""
        answer = self.child.request({"op": "phonemes", "text": text, "voice": voice})
        return [str(s) for s in answer["sentences"]]

    def synth(self, text: str, voice: str = "en-us", wpm: int = 170) -> np.ndarray:
        """espeak's own speech for ``text``, 16 kHz mono float32."""
        request = {"op": "synth", "text": text, "voice": voice, "wpm": wpm}
        answer = self.child.request(request, timeout_s=10.0 + len(text) / 100)
        pcm = np.frombuffer(base64.b64decode(answer["pcm"]), dtype="<i2")
        return audio.mono16k(pcm.astype(np.float32) / 32768.0, int(answer["sample_rate"]))

    def close(self) -> None:
        """Stop the child program (the next request starts it again)."""
        self.child.close()


@functools.cache
def shared_espeak() -> Espeak:
    """This process's one espeak-ng child: it serves piper's phonemes and every espeak voice."""
    return Espeak()


class EspeakSynthesizer:
    """The fallback voice: espeak-ng's own synthesis, in the child program."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 170) -> None:
        self.voice, self.wpm = voice, words_per_minute
        self.espeak = shared_espeak()
        self.espeak.start()

    def synthesize(self, text: str) -> np.ndarray:
        """Synthesise one piece of text (it is data for espeak, never options)."""
        if not text.strip():
            return np.zeros(0, np.float32)
        return self.espeak.synth(text, self.voice, self.wpm)

    def synthesis_s(self, seconds_of_audio: float) -> float:
        """A few ms whatever the length."""
        return ESPEAK_S

    def close(self) -> None:
        """Stop the shared child (it also ends on its own when Tandem exits)."""
        self.espeak.close()


class PiperSynthesizer:
    """The natural voice: espeak-ng phonemes (child program), piper model (onnxruntime)."""

    def __init__(
        self,
        model: Path | None = None,
        *,
        sha256: str | None = None,
        threads: int = 1,
        deterministic: bool = False,
    ) -> None:
        from engine.features.piper import PiperVoice

        self.voice = PiperVoice(model, sha256=sha256, threads=threads, deterministic=deterministic)
        self.espeak = shared_espeak()
        self.espeak.start()

    def synthesize(self, text: str) -> np.ndarray:
        """Synthesise ``text``, one model run per sentence, as piper does."""
        pieces = [self.voice.speak(p) for p in self.espeak.phonemes(text)]
        if not pieces:
            return np.zeros(0, np.float32)
        return audio.mono16k(np.concatenate(pieces), self.voice.sample_rate)

    def synthesis_s(self, seconds_of_audio: float) -> float:
        """Grows with the sentence: one model run per sentence."""
        return PIPER_BASE_S + PIPER_RTF * seconds_of_audio

    def close(self) -> None:
        """Stop the shared child (it also ends on its own when Tandem exits)."""
        self.espeak.close()


def default_synthesizer(*, deterministic: bool = False) -> Synthesizer:
    """The embedded piper voice when it verifies and loads, else the espeak fallback."""
    try:
        synth: Synthesizer = PiperSynthesizer(deterministic=deterministic)
    except EngineError as e:  # the first line says what is wrong; the rest is detail
        log.warning("voice: espeak-ng fallback, piper unavailable: %s", str(e).splitlines()[0])
        return EspeakSynthesizer()
    log.info("voice: piper en_US-joe-medium")
    return synth


BENCH_FIRST = "Sure, let me look at that failing test."
BENCH_REPLY = (
    "The loop stops one item too early. The range ends at the length minus one, so the last "
    "element is never read. Change it to the full length, and the test should pass. "
    "Do you want me to run it again?"
)


def bench_tts(runs: int = 3) -> dict[str, Any]:
    """``tandem bench tts``: both voices on the embedded files, medians of ``runs``.

    For each voice: load time (model and child program), time to first audio (the whole
    first sentence, which is what ``PlayedSpeech`` waits for), and the real-time factor
    (synthesis time / audio time) over a reply of a few sentences. Piper runs with 1 and with
    2 onnxruntime threads: the figures behind ``PiperSynthesizer``'s default of 1.
    """
    voices: dict[str, Callable[[], PiperSynthesizer | EspeakSynthesizer]] = {
        "piper_1_thread": lambda: PiperSynthesizer(threads=1),
        "piper_2_threads": lambda: PiperSynthesizer(threads=2),
        "espeak": EspeakSynthesizer,
    }
    return {
        "runs": runs,
        "voices": {name: _bench_voice(make, runs) for name, make in voices.items()},
    }


def _bench_voice(
    make: Callable[[], PiperSynthesizer | EspeakSynthesizer], runs: int
) -> dict[str, float]:
    loads, firsts, rtfs = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        synth = make()
        t1 = time.perf_counter()
        synth.synthesize(BENCH_FIRST)
        t2 = time.perf_counter()
        samples = sum(len(synth.synthesize(s)) for s in sentences(BENCH_REPLY))
        rtfs.append((time.perf_counter() - t2) / (samples / audio.RATE))
        loads.append(t1 - t0)
        firsts.append(t2 - t1)
        synth.close()
    return {
        "load_ms": round(statistics.median(loads) * 1000, 1),
        "first_audio_ms": round(statistics.median(firsts) * 1000, 1),
        "rtf": round(statistics.median(rtfs), 4),
    }


class PlayedSpeech:
    """Utterances played on the speaker, streamed sentence by sentence on the voice thread.

    ``say`` returns at once (synthesis never stalls the engine's tick) with a handle whose
    times are estimates; the voice thread synthesises the first sentence (or takes the one
    ``prepare`` made while the end-point waited), plays it, sets the handle's real start, and
    lengthens the handle with each further sentence. Barge-in flushes what is queued and
    cancels what is not synthesised yet.
    """

    def __init__(self, synth: Synthesizer, speaker: Speaker) -> None:
        self.synth, self.speaker = synth, speaker
        self._generation = 0  # bumped by every new utterance and every interruption
        self._prepared: tuple[str, threading.Thread, list[np.ndarray]] | None = None
        self._jobs: queue.Queue[_Utterance | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tandem-voice", daemon=True)
        self._thread.start()

    def prepare(self, text: str, t: float) -> None:
        """Synthesise the first sentence of a reply that is ready before it may be spoken."""
        first = (sentences(text) or [""])[0]
        out: list[np.ndarray] = []
        worker = threading.Thread(
            target=lambda: out.append(self.synth.synthesize(first)), daemon=True
        )
        worker.start()
        self._prepared = (first, worker, out)

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

    def close(self) -> None:
        """Stop the voice thread."""
        self._cancel()
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _first_audio(self, first: str) -> np.ndarray:
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] == first:
            prepared[1].join()  # usually done already
            if prepared[2]:
                return prepared[2][0]
        return self.synth.synthesize(first) if first else np.zeros(0, np.float32)

    def _cancel(self) -> None:
        self._generation += 1
        self.speaker.flush()

    def _run(self) -> None:
        while (u := self._jobs.get()) is not None:
            handle = u.handle
            for i, sentence in enumerate(u.parts):
                samples = self._first_audio(sentence) if i == 0 else self.synth.synthesize(sentence)
                if u.generation != self._generation or handle.done:
                    break  # interrupted, or a newer utterance took over
                seconds = self.speaker.play(audio.resample(samples, audio.RATE, self.speaker.rate))
                if i == 0:  # its first sample reaches the speaker now (on the engine's clock)
                    handle.start_t = u.t + time.perf_counter() - u.queued
                    handle.end_t = handle.start_t + seconds
                else:
                    handle.end_t += seconds


@dataclass(frozen=True, slots=True)
class _Utterance:
    """What the voice thread plays: the sentences, the handle, and when ``say`` was called."""

    generation: int
    parts: list[str]
    handle: SpeechHandle
    t: float
    queued: float


class VoicedSpeech:
    """Utterances with real audio on replay's clock: each starts once its first sentence
    would be synthesised on this CPU (``Synthesizer.synthesis_s``) and lasts as long as its
    audio (later sentences are synthesised while the first plays, as ``PlayedSpeech`` does)."""

    def __init__(self, synth: Synthesizer) -> None:
        self.synth = synth
        self.track: list[tuple[SpeechHandle, np.ndarray]] = []  # every utterance and its audio
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
        handle = SpeechHandle(text=text, start_t=start, end_t=start + len(samples) / audio.RATE)
        self.track.append((handle, samples))
        return handle

    def render(self, duration_s: float) -> np.ndarray:
        """The assistant's audio on the timeline, each utterance cut where it stopped."""
        out = np.zeros(int(duration_s * audio.RATE), dtype=np.float32)
        for handle, samples in self.track:
            end = handle.stopped_t if handle.stopped_t is not None else handle.end_t
            i = int(handle.start_t * audio.RATE)
            n = max(0, min(int((end - handle.start_t) * audio.RATE), len(out) - i))
            out[i : i + n] += samples[:n]
        return out
