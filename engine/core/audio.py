"""Audio files and sample rates: everything inside the engine is 16 kHz mono float32.

The only soundfile and soxr importer. Files of any rate, width and channel count (WAV, FLAC,
OGG) are read and converted once, at the edge.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

from engine.errors import ScenarioError

RATE = 16_000


def read(path: Path) -> tuple[np.ndarray, int]:
    """Samples (frames x channels, float32 in [-1, 1]) and the file's sample rate."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise ScenarioError(f"{path}: cannot read audio ({e})") from e
    return data, int(rate)


def read_bytes(data: io.BytesIO) -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file (frames x channels float32) and its rate."""
    try:
        samples, rate = soundfile.read(data, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise ScenarioError(f"cannot decode audio ({e})") from e
    return samples, int(rate)


def resample(samples: np.ndarray, rate: int, to: int = RATE) -> np.ndarray:
    """Resample mono or multichannel audio (high-quality soxr)."""
    if rate == to:
        return samples.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(samples, rate, to, quality="HQ"), dtype=np.float32)


def mono16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Down-mix to mono and resample to 16 kHz."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return resample(mono.astype(np.float32, copy=False), rate)


def load_mono16k(path: Path) -> np.ndarray:
    """A file as 16 kHz mono float32."""
    data, rate = read(path)
    return mono16k(data, rate)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    """Write mono float32 samples as 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
