"""``tandem eval asr`` and ``tandem eval vad``: the field's measures on real recordings.

Formats are in docs/EVAL_FORMATS.md. WER is word-level edit distance over the reference
length after normalising both sides (lower case, no punctuation). VAD is scored frame by frame
at 10 ms against the TEN VAD test set's ``.scv`` labels.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import audio
from engine.errors import ScenarioError

AUDIO_SUFFIXES = (".wav", ".flac")
FRAME_S = 0.01


def normalise(text: str) -> list[str]:
    """Lower case, punctuation removed (apostrophes inside words kept), split on spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s']|(?<!\w)'|'(?!\w)", " ", text)
    return text.split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between word lists."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass(frozen=True, slots=True)
class AsrItem:
    """One audio file and its reference transcript."""

    audio: Path
    reference: str
    language: str | None


def asr_items(root: Path, language: str | None = "en") -> list[AsrItem]:
    """Files with references: ``asr_reference.jsonl`` lines or sibling ``NAME.txt`` files."""
    if not root.is_dir():
        raise ScenarioError(f"not a folder: {root}")
    items: list[AsrItem] = []
    index = root / "asr_reference.jsonl"
    if index.exists():
        for n, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                rel, ref = obj["audio"], obj["reference"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ScenarioError(f"{index}:{n}: needs 'audio' and 'reference' ({e})") from e
            path = _inside(root, rel, f"{index}:{n}")
            items.append(AsrItem(path, str(ref), obj.get("language")))
    else:
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            txt = path.with_suffix(".txt")
            if txt.exists():
                items.append(AsrItem(path, txt.read_text(encoding="utf-8").strip(), None))
    if language is not None:
        items = [i for i in items if i.language in (None, language)]
    if not items:
        raise ScenarioError(f"{root}: no audio with a reference transcript")
    return items


def _inside(root: Path, rel: str, where: str) -> Path:
    """Resolve ``rel`` against ``root`` (or its parent, as the shared index is written)."""
    for base in (root, root.parent):
        path = (base / rel).resolve()
        if path.is_relative_to(base.resolve()) and path.is_file():
            return path
    raise ScenarioError(f"{where}: audio not found inside the folder: {rel}")


def eval_asr(
    root: Path,
    transcribe: Callable[[np.ndarray], str],
    language: str | None = "en",
) -> dict[str, Any]:
    """WER per file and overall, and the real-time factor."""
    files = []
    errors = words = 0
    audio_s = compute_s = 0.0
    for item in asr_items(root, language):
        data, rate = audio.read(item.audio)
        t0 = time.perf_counter()
        if data.shape[1] == 2 and item.reference.startswith("LEFT:"):
            # One speaker per channel: the reference is written per channel.
            left = transcribe(audio.mono16k(data[:, :1], rate))
            right = transcribe(audio.mono16k(data[:, 1:], rate))
            hyp = f"LEFT: {left} | RIGHT: {right}"
        else:
            hyp = transcribe(audio.mono16k(data, rate))
        compute_s += time.perf_counter() - t0
        audio_s += data.shape[0] / rate
        ref_w, hyp_w = normalise(item.reference), normalise(hyp)
        e = word_errors(ref_w, hyp_w)
        errors += e
        words += len(ref_w)
        files.append(
            {
                "audio": item.audio.name,
                "reference": item.reference,
                "hypothesis": hyp,
                "wer": round(e / max(1, len(ref_w)), 4),
            }
        )
    return {
        "wer": round(errors / max(1, words), 4),
        "rtf": round(compute_s / max(1e-9, audio_s), 4),
        "files": files,
    }


def read_scv(path: Path) -> list[tuple[float, float, int]]:
    """TEN VAD labels: ``name,start,end,label,start,end,label,...`` -> segments."""
    fields = path.read_text(encoding="utf-8").strip().split(",")
    values = fields[1:]
    if len(values) % 3:
        raise ScenarioError(f"{path}: expected start,end,label triples")
    try:
        return [
            (float(values[i]), float(values[i + 1]), int(values[i + 2]))
            for i in range(0, len(values), 3)
        ]
    except ValueError as e:
        raise ScenarioError(f"{path}: {e}") from e


def frames_from_segments(segs: list[tuple[float, float]], n: int) -> np.ndarray:
    """A boolean 10 ms frame mask from (start, end) speech segments."""
    mask = np.zeros(n, dtype=bool)
    for start, end in segs:
        mask[round(start / FRAME_S) : round(end / FRAME_S)] = True
    return mask


def eval_vad(
    root: Path, detect: Callable[[np.ndarray], list[tuple[float, float]]]
) -> dict[str, Any]:
    """Frame-level precision, recall and F1 at 10 ms over every labelled file."""
    labels = sorted(root.rglob("*.scv"))
    if not labels:
        raise ScenarioError(f"{root}: no .scv label files")
    tp = fp = fn = 0
    files = []
    for scv in labels:
        wav = scv.with_suffix(".wav")
        if not wav.exists():
            raise ScenarioError(f"{scv}: no audio beside it ({wav.name})")
        samples = audio.load_mono16k(wav)
        n = int(len(samples) / audio.RATE / FRAME_S)
        truth = frames_from_segments([(s, e) for s, e, lab in read_scv(scv) if lab == 1], n)
        pred = frames_from_segments(detect(samples), n)
        f_tp = int(np.sum(truth & pred))
        f_fp = int(np.sum(~truth & pred))
        f_fn = int(np.sum(truth & ~pred))
        tp, fp, fn = tp + f_tp, fp + f_fp, fn + f_fn
        files.append({"audio": wav.name, **_prf(f_tp, f_fp, f_fn)})
    return {**_prf(tp, fp, fn), "files": files}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
