"""Speech synthesis: text to 16 kHz audio, sentence by sentence.

The natural voice is piper's en_US-joe-medium model (embedded, SHA-256 checked), run with
onnxruntime in Tandem's process (``engine.voice.piper``). Its phonemes come from espeak-ng,
which is GPL-3.0: espeak-ng is only ever loaded in a separate child program
(``engine/voice/espeak_child.py``, one per process, started once and kept), which keeps the
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
import re
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.core import audio
from engine.core.processes import Child
from engine.errors import EngineError
from engine.model.registry import package_path

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

    def close(self) -> None:
        """Release the voice (its child program)."""
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
        from engine.voice.piper import PiperVoice

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


def default_synthesizer(*, deterministic: bool = False, threads: int = 1) -> Synthesizer:
    """The embedded piper voice when it verifies and loads, else the espeak fallback."""
    try:
        synth: Synthesizer = PiperSynthesizer(deterministic=deterministic, threads=threads)
    except EngineError as e:  # the first line says what is wrong; the rest is detail
        log.warning("voice: espeak-ng fallback, piper unavailable: %s", str(e).splitlines()[0])
        return EspeakSynthesizer()
    log.info("voice: piper en_US-joe-medium, %d thread(s)", threads)
    return synth
