"""Voice activity with Silero VAD's ONNX model (onnxruntime; the piper voice is its other user).

The embedded model comes from the ``silero-vad`` package (installed ``--no-deps``; the package
itself is never imported, it would pull in torch) and is SHA-256 checked before loading. It
scores 32 ms windows (512 samples at 16 kHz, with the 64 samples before them as context) in
about 0.1 ms each. ``VadStream`` turns the scores into speech start/end events with hysteresis:
speech starts when a window scores above ``threshold`` and ends after ``min_silence_s`` below
``threshold - 0.15``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import MissingDependencyError, ModelFileError
from engine.model.registry import package_path, verified_file

try:
    import onnxruntime
except ImportError as e:  # pragma: no cover - installed by make
    raise MissingDependencyError("onnxruntime is not installed: run `make install`") from e

WINDOW = 512
CONTEXT = 64
RATE = 16_000
WINDOW_S = WINDOW / RATE
SILERO_PACKAGE = "silero_vad"
SILERO_FILE = "data/silero_vad.onnx"
SILERO_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"


def embedded_model() -> Path:
    """The Silero ONNX file inside the installed package, checksum verified."""
    path = package_path(SILERO_PACKAGE, SILERO_FILE, "silero-vad==6.2.3")
    return verified_file(path, SILERO_SHA256, "VAD model")


class SileroVad:
    """Scores 32 ms windows of 16 kHz audio; keeps the model's recurrent state."""

    def __init__(self, path: Path | None = None) -> None:
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        model = path or embedded_model()
        try:
            self._session = onnxruntime.InferenceSession(
                str(model), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise ModelFileError(f"cannot load the VAD model {model}: {e}") from e
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state (a new stream)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)

    def score(self, window: np.ndarray) -> float:
        """Speech probability of one 512-sample window."""
        x = np.concatenate([self._context, window.reshape(1, WINDOW).astype(np.float32)], axis=1)
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": np.array(RATE, dtype=np.int64)}
        )
        self._context = x[:, -CONTEXT:]
        return float(out.reshape(-1)[0])

    def scores(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities for every whole window of ``audio`` (a fresh stream)."""
        self.reset()
        n = len(audio) // WINDOW
        return np.array([self.score(audio[i * WINDOW : (i + 1) * WINDOW]) for i in range(n)])


@dataclass(frozen=True, slots=True)
class VadEvent:
    """Speech started or ended at ``t`` (seconds in the stream)."""

    t: float
    speech: bool


class VadStream:
    """Hysteresis over window scores: start above ``threshold``, end after sustained quiet."""

    def __init__(
        self, threshold: float = 0.5, min_silence_s: float = 0.25, min_speech_s: float = 0.1
    ) -> None:
        self.threshold = threshold
        self.off_threshold = max(0.01, threshold - 0.15)
        self.min_silence_s = min_silence_s
        self.min_speech_s = min_speech_s
        self.speaking = False
        self._quiet_since: float | None = None
        self._loud_since: float | None = None

    @property
    def rising(self) -> bool:
        """Not speaking yet, but the last windows sounded like speech (a candidate start)."""
        return not self.speaking and self._loud_since is not None

    @property
    def quiet_since(self) -> float | None:
        """While speaking: when the current quiet stretch began (None when not quiet)."""
        return self._quiet_since if self.speaking else None

    def push(self, t_end: float, prob: float) -> VadEvent | None:
        """Feed the score of the window ending at ``t_end``; returns a change, if any."""
        t_start = t_end - WINDOW_S
        if not self.speaking:
            if prob >= self.threshold:
                self._loud_since = t_start if self._loud_since is None else self._loud_since
                if t_end - self._loud_since >= self.min_speech_s:
                    self.speaking, self._quiet_since = True, None
                    return VadEvent(self._loud_since, True)
            else:
                self._loud_since = None
            return None
        if prob < self.off_threshold:
            self._quiet_since = t_start if self._quiet_since is None else self._quiet_since
            if t_end - self._quiet_since >= self.min_silence_s:
                self.speaking, self._loud_since = False, None
                return VadEvent(self._quiet_since, False)
        elif prob >= self.threshold:
            self._quiet_since = None
        return None


def segments(probs: np.ndarray, stream: VadStream) -> list[tuple[float, float]]:
    """Speech segments ``[(start, end), ...]`` from a sequence of window scores."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for i, p in enumerate(probs):
        ev = stream.push((i + 1) * WINDOW_S, float(p))
        if ev is not None and ev.speech:
            start = ev.t
        elif ev is not None and start is not None:
            out.append((start, ev.t))
            start = None
    if start is not None:
        out.append((start, len(probs) * WINDOW_S))
    return out
