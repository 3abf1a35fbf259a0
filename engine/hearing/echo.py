"""Reference-aware echo gating: do not take the assistant's own voice for the user's.

On open speakers the microphone hears what Tandem plays. The gate keeps the last
``max_delay_s`` of played audio (the reference) and, for each 32 ms microphone window, finds
the best normalised cross-correlation with it over every delay up to ``max_delay_s``. A window
that the reference explains (``>= threshold``) is echo, and the VAD is told it is silence.
During double talk the user's voice is not in the reference, the correlation drops, and the
window passes: barge-in still works while the assistant speaks. Only delays where the reference
itself sounds count: a quiet stretch of it (the pause after a barge-in flushed the speaker,
the gap between two sentences) explains nothing. (PulseAudio's
``module-echo-cancel`` or the OS's own AEC, where the user has one, only make this easier.)
"""

from __future__ import annotations

import numpy as np

from engine.hearing.vad import WINDOW

REFERENCE_FLOOR = 1e-3
"""RMS (-60 dBFS) under which a stretch of the reference is silence, at any delay. Without it
a silent stretch gave a correlation of 22-139 (the running energy's rounding error over an
all-but-zero segment): live, every word the user said in the 0.8 s after a barge-in paused the
assistant was taken for echo, the VAD never confirmed it, and the assistant resumed over the
user (the interrupt scenarios, 2026-12-03)."""


class EchoGate:
    """Decides, window by window, whether the microphone hears only the assistant."""

    def __init__(
        self, max_delay_s: float = 0.8, threshold: float = 0.75, rate: int = 16_000
    ) -> None:
        self.threshold = threshold
        self._keep = int(max_delay_s * rate) + WINDOW
        self._ref = np.zeros(self._keep, dtype=np.float32)
        self._n = 1 << int(np.ceil(np.log2(self._keep + WINDOW)))
        self.echo_windows = 0

    def feed_reference(self, played: np.ndarray) -> None:
        """Append audio that was just played (16 kHz mono)."""
        self._ref = np.concatenate([self._ref, played.astype(np.float32, copy=False)])[
            -self._keep :
        ]

    def correlation(self, window: np.ndarray) -> float:
        """The best normalised cross-correlation of ``window`` with the reference."""
        w = window.astype(np.float64)
        w_norm = float(np.sqrt(np.dot(w, w)))
        r = self._ref.astype(np.float64)
        if w_norm < 1e-4 or float(np.abs(r).max()) < 1e-4:
            return 0.0
        spec = np.fft.rfft(r, self._n) * np.conj(np.fft.rfft(w, self._n))
        num = np.fft.irfft(spec, self._n)[: len(r) - len(w) + 1]
        energy = np.concatenate([[0.0], np.cumsum(r * r)])
        seg = energy[len(w) :] - energy[: len(r) - len(w) + 1]
        sounding = seg >= len(w) * REFERENCE_FLOOR**2
        if not sounding.any():
            return 0.0
        c = num[sounding] / (np.sqrt(seg[sounding]) * w_norm)
        return float(min(1.0, c.max()))  # at most 1 (Cauchy-Schwarz), whatever the rounding

    @property
    def active(self) -> bool:
        """Something was played within ``max_delay_s``: the microphone may hear it."""
        return float(np.abs(self._ref).max()) >= 1e-4

    def is_echo(self, window: np.ndarray) -> bool:
        """True when the reference explains the window."""
        echo = self.correlation(window) >= self.threshold
        self.echo_windows += int(echo)
        return echo
