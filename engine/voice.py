"""Speech synthesis: text to 16 kHz audio, sentence by sentence.

The voice today is espeak-ng run as a separate program (robotic, but < 30 ms to first audio
and deterministic). It runs as a child process on purpose: espeak-ng is GPL-3.0, and keeping
it out of Tandem's process keeps the licences apart. The natural voice (piper with the
embedded en_US-joe-medium model) plugs in behind the same ``Synthesizer`` protocol once its
licence question is settled (piper-tts >= 1.3 is GPL-3.0 too, and imported in-process).

``VoicedSpeech`` is the ``SpeechOut`` that replay and the live app use: the utterance lasts as
long as its audio, and the audio is kept so ``tandem replay --speech-out`` can write the
assistant's track on the scenario's timeline.
"""

from __future__ import annotations

import io
import re
import shutil
from typing import Protocol

import numpy as np

from engine import audio
from engine.processes import ProcessError, run
from engine.senses.sound import Speaker
from engine.speech import SpeechHandle

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


def sentences(text: str) -> list[str]:
    """Split a reply into sentences (the unit of synthesis, so speech can start early)."""
    return [s for s in (p.strip() for p in _SENTENCE.split(text)) if s]


class Synthesizer(Protocol):
    """Text in, 16 kHz mono float32 audio out."""

    def synthesize(self, text: str) -> np.ndarray:
        """The audio for ``text``."""
        ...


class EspeakSynthesizer:
    """espeak-ng in a child process."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 170) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise ProcessError("espeak-ng is not installed (installers/debian-packages.txt)")
        self._argv = [exe, "--stdout", "-v", voice, "-s", str(words_per_minute)]

    def synthesize(self, text: str) -> np.ndarray:
        """Synthesise one piece of text (``--`` keeps text from being read as options)."""
        wav = run([*self._argv, "--", text], timeout_s=10.0)
        data, rate = audio.read_bytes(io.BytesIO(wav))
        return audio.mono16k(data, rate)


class PlayedSpeech:
    """Utterances played on the speaker: barge-in flushes what is still queued."""

    def __init__(self, synth: Synthesizer, speaker: Speaker) -> None:
        self.synth, self.speaker = synth, speaker

    def say(self, text: str, t: float) -> SpeechHandle:
        """Synthesise and queue ``text``; the handle lasts as long as the audio."""
        self.speaker.flush()
        pieces = [self.synth.synthesize(s) for s in sentences(text)] or [np.zeros(0, np.float32)]
        samples = audio.resample(np.concatenate(pieces), audio.RATE, self.speaker.rate)
        seconds = self.speaker.play(samples)
        return SpeechHandle(
            text=text, start_t=t, end_t=t + seconds, on_interrupt=self.speaker.flush
        )


class VoicedSpeech:
    """Utterances with real audio: their length is the audio's length."""

    def __init__(self, synth: Synthesizer) -> None:
        self.synth = synth
        self.track: list[tuple[SpeechHandle, np.ndarray]] = []  # every utterance and its audio

    def say(self, text: str, t: float) -> SpeechHandle:
        """Synthesise ``text`` sentence by sentence and start it at ``t``."""
        pieces = [self.synth.synthesize(s) for s in sentences(text)] or [np.zeros(0, np.float32)]
        samples = np.concatenate(pieces)
        handle = SpeechHandle(text=text, start_t=t, end_t=t + len(samples) / audio.RATE)
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
