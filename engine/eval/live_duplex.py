"""``tandem eval duplex --live``: the duplex scenarios played in real time through real devices.

For each scenario (a folder with ``labels.json``) a private PulseAudio
(``engine.eval.virtual_audio``) is running; Tandem is started as a user starts it (``tandem
run --mic --mic-device virtmic --speaker-device speaker``, its own config, data and home
folders, the private server in its environment). Once it prints ``microphone: listening`` the
recording starts, ``mic.wav`` is played into the virtual microphone with ``paplay`` in real
time, and the scenario's scripted inputs are typed on Tandem's standard input at their times
(``assistant_say`` as ``/say TEXT``, so in overlap scenarios the assistant talks first and
the user's audio then overlaps it; ``type`` as a line; ``mute`` as ``/mute``/``/unmute``);
then ``/quit``. Tandem's printed lines are kept with the time each one arrived.

Alignment. One stereo recording holds the virtual speaker (left) and the microphone's feed
(right) sample-locked (see ``virtual_audio``). Scenario time 0 is where ``mic.wav`` begins in
the right channel, found by cross-correlating the two (FFT; the normalised correlation at the
peak is reported as ``align_quality`` and must be high, or the scenario fails). Every audio
time is then ``(sample - lag) / rate``: exact to a sample, whatever the start-up delays of the
player and the recorder. The printed lines and the scripted inputs are on the monotonic clock;
the recorder's arrival times place the recording on that clock too, to within ~10 ms.

Detection. Every metric comes from the recorded speaker audio: 10 ms frames whose RMS is
above ``THRESHOLD_DBFS`` (relative to full scale) are speech; gaps shorter than
``HANGOVER_S`` (the pauses between words) are bridged; bursts shorter than ``MIN_SEGMENT_S``
are dropped. Per task (labels as in ``docs/EVAL_FORMATS.md``):

- pause: a takeover is assistant audio starting inside the pause, *or* a printed answering
  decision (``decide speak|interject|handoff``) arriving inside it even if the audio came too
  late to be heard;
- turn: the first assistant audio starting after the turn end; latency is its start minus
  the turn end; none within ``TURN_WINDOW_S`` (3 s) is a miss; ``early``: assistant audio
  started while the user was still talking (before the turn end);
- interrupt: stop time is the end of the assistant audio running at (or first after) the
  interruption start, minus that start; success when within 1 s (as replay scores it);
  *strict* success also needs no assistant audio again while the user is still talking
  (labels ``user_speech``);
- backchannel: a false stop is assistant audio that stops within the backchannel (or 0.5 s
  after it) and does not continue within 1.5 s; ``restarted`` is the assistant saying its
  utterance again from the start after the backchannel: a printed ``tandem`` line after the
  backchannel whose text is the whole original text (the audio cross-check, ``restarted_audio``:
  the audio after the resume lasts longer than the remaining part of the utterance would).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import audio
from engine.core.frames import ControlKind, TypedText
from engine.core.processes import ProcessError, Spawned, run, spawn
from engine.errors import EngineError, ScenarioError
from engine.eval.duplex import (
    BACKCHANNEL_GRACE_S,
    INTERRUPT_WINDOW_S,
    RESUME_GRACE_S,
    STOP_BEFORE_S,
)
from engine.eval.replay import load_scenario
from engine.eval.virtual_audio import MIC, SPEAKER, Recording, VirtualAudio

FRAME_S = 0.01
THRESHOLD_DBFS = -45.0
"""Speech frames: RMS above this (dB relative to full scale). The voice peaks near -6 dBFS
and the virtual speaker is digital silence between utterances."""
HANGOVER_S = 0.3
"""Gaps shorter than this (between words, at commas) do not end a segment."""
MIN_SEGMENT_S = 0.05
TURN_WINDOW_S = 3.0
"""A turn with no assistant audio this long after its end is a miss."""
UTTERANCE_GAP_S = 1.5
"""Silence longer than this ends one utterance (used to measure a resumed one)."""
MIN_HEARD_S = 1.0
"""The audio check of a restart needs this much of the utterance heard before the pause."""
MIN_ALIGN_QUALITY = 0.5
READY_LINE = "microphone: listening"
READY_TIMEOUT_S = 180.0
SETTLE_S = 0.5
"""After Tandem listens, before the scenario starts (its first capture callback, PulseAudio)."""
LEAD_S = 0.3
"""Recorded before the scenario's audio starts, so the alignment sees it begin."""
TAIL_S = 1.5
"""Recorded after the scenario's audio ends (a late reply still counts where it falls)."""
QUIT_TIMEOUT_S = 30.0
ANSWERING = frozenset({"speak", "interject", "handoff"})
"""Printed decisions that take the floor."""
_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+(decide|tandem|stop|vad|asr)\s+(.*)$")

Segment = tuple[float, float]


class LiveEvalError(EngineError):
    """A live evaluation cannot run here at all (no sound server, no players)."""


# --- detection and alignment (pure) --------------------------------------------------------


def speech_segments(
    x: np.ndarray,
    rate: int,
    *,
    threshold_dbfs: float = THRESHOLD_DBFS,
    frame_s: float = FRAME_S,
    hangover_s: float = HANGOVER_S,
    min_s: float = MIN_SEGMENT_S,
    origin: float = 0.0,
) -> list[Segment]:
    """Speech in ``x`` as (start, end) seconds (``origin`` is the time of sample 0).

    A segment starts at its first loud frame and ends at the end of its last one.
    """
    n = max(1, round(frame_s * rate))
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    if not len(frames):
        return []
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = np.nonzero(rms > 10 ** (threshold_dbfs / 20))[0]
    segments: list[list[int]] = []
    bridge = round(hangover_s / frame_s)
    for i in loud:
        if segments and i - segments[-1][1] <= bridge:
            segments[-1][1] = int(i) + 1
        else:
            segments.append([int(i), int(i) + 1])
    return [
        (origin + a * n / rate, origin + b * n / rate)
        for a, b in segments
        if (b - a) * n / rate >= min_s
    ]


def align(heard: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Where ``reference`` begins inside ``heard`` (in samples, >= 0) and how well it fits
    there (normalised cross-correlation, 1.0 = the same waveform)."""
    if not len(reference) or not len(heard):
        return 0, 0.0
    size = 1 << int(np.ceil(np.log2(len(heard) + len(reference))))
    h = heard.astype(np.float64)
    r = reference.astype(np.float64)
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(r, size)), size)
    lags = corr[: len(heard)]
    lag = int(np.argmax(lags))
    window = h[lag : lag + len(r)]
    denom = float(np.linalg.norm(window) * np.linalg.norm(r[: len(window)]))
    quality = float(lags[lag]) / denom if denom > 0 else 0.0
    return lag, round(quality, 3)


@dataclass(frozen=True, slots=True)
class Printed:
    """One line Tandem printed: when it arrived (scenario time), what kind, what it said."""

    t: float
    kind: str
    text: str

    @property
    def decision(self) -> str | None:
        """For ``decide`` lines, the decision (``speak`` in ``decide  speak (turn_end)``)."""
        return self.text.split()[0] if self.kind == "decide" and self.text.split() else None


def parse_printed(lines: Sequence[tuple[float, str]], t0: float = 0.0) -> list[Printed]:
    """Tandem's event lines (``  12.3  decide  speak (turn_end)``) on the scenario's clock:
    ``t`` is when the line arrived minus ``t0`` (Tandem's own printed time is on its clock,
    rounded to 0.1 s, and not used)."""
    out = []
    for arrived, line in lines:
        m = _LINE.match(line)
        if m is not None:
            out.append(Printed(arrived - t0, m.group(2), m.group(3).strip()))
    return out


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


# --- scoring (pure) ------------------------------------------------------------------------


def score_live(
    labels: dict[str, Any],
    segments: Sequence[Segment],
    printed: Sequence[Printed] = (),
    *,
    said: str | None = None,
    full_s: float | None = None,
) -> dict[str, Any]:
    """One scenario's outcome from the speaker's audio segments and the printed lines.

    ``said`` is the text the scenario made the assistant say (overlap scenarios) and
    ``full_s`` how long that utterance sounds in full (speech only), for the restart checks.
    """
    task = labels.get("task")
    starts = [s for s, _ in segments]
    if task == "pause":
        a, b = labels["pause"]
        audio_in = any(a <= s < b for s in starts)
        decided = any(
            p.decision in ANSWERING and a <= p.t < b for p in printed if p.kind == "decide"
        )
        return {
            "task": task,
            "takeover": audio_in or decided,
            "takeover_audio": audio_in,
            "takeover_decision": decided,
        }
    if task == "turn":
        end = labels["turn_end"]
        after = [s for s in starts if end <= s <= end + TURN_WINDOW_S]
        latency = after[0] - end if after else None
        decision = next(
            (p.t for p in printed if p.decision in ANSWERING and p.t >= end and p.kind == "decide"),
            None,
        )
        spoken = next((p.t for p in printed if p.kind == "tandem" and p.t >= end), None)
        first_audio = next((s for s in starts if spoken is not None and s >= spoken), None)
        user = [(u0, min(u1, end)) for u0, u1 in labels.get("user_speech", []) if u0 < end]
        return {
            "task": task,
            "takeover": latency is not None,
            "latency": _r(latency),
            "early": any(u0 <= s < u1 for s in starts for u0, u1 in user),
            "decision_latency": _r(None if decision is None else decision - end),
            "printed_to_audio": _r(
                None if spoken is None or first_audio is None else first_audio - spoken
            ),
        }
    if task == "interrupt":
        return _score_interrupt(labels, segments, printed, said)
    if task == "backchannel":
        return _score_backchannel(labels, segments, printed, said, full_s)
    raise ScenarioError(f"unknown task {task!r}")


def _score_interrupt(
    labels: dict[str, Any],
    segments: Sequence[Segment],
    printed: Sequence[Printed],
    said: str | None,
) -> dict[str, Any]:
    at = labels["interrupt_start"]
    user = [(u0, u1) for u0, u1 in labels.get("user_speech", []) if u1 > at]
    user_end = max((u1 for _, u1 in user), default=at)
    k = next((i for i, (_, e) in enumerate(segments) if e > at - STOP_BEFORE_S), None)
    if k is None:
        return {
            "task": "interrupt",
            "speaking": False,
            "stop_time": None,
            "success": False,
            "strict_success": False,
            "spoke_over_user_s": 0.0,
            "repeated": False,
            "next_audio_after_user_s": None,
        }
    s, e = segments[k]
    stop = e - at
    later = segments[k + 1 :]
    over = sum(max(0.0, min(e2, u1) - max(s2, u0)) for s2, e2 in later for u0, u1 in user)
    success = stop <= INTERRUPT_WINDOW_S
    nxt = next((s2 for s2, _ in later if s2 >= user_end), None)
    return {
        "task": "interrupt",
        "speaking": s <= at,
        "stop_time": _r(stop),
        "success": success,
        "strict_success": success and over == 0.0,
        "spoke_over_user_s": _r(over),
        "repeated": said is not None
        and any(p.kind == "tandem" and p.t >= at and _same_text(p.text, said) for p in printed),
        "next_audio_after_user_s": _r(None if nxt is None else nxt - user_end),
    }


def _score_backchannel(
    labels: dict[str, Any],
    segments: Sequence[Segment],
    printed: Sequence[Printed],
    said: str | None,
    full_s: float | None,
) -> dict[str, Any]:
    a, b = labels["backchannel"]
    k = next((i for i, (s, e) in enumerate(segments) if s <= a <= e), None)
    if k is None:  # the assistant was not talking when the user acknowledged: nothing tested
        return {
            "task": "backchannel",
            "speaking": False,
            "false_stop": False,
            "paused": False,
            "restarted": False,
            "restarted_audio": None,
        }
    e = segments[k][1]
    paused = e < b + BACKCHANNEL_GRACE_S
    later = segments[k + 1 :]
    resumed = paused and bool(later) and later[0][0] - e <= RESUME_GRACE_S
    after_lines = [p for p in printed if p.kind == "tandem" and p.t >= a]
    restarted_text = said is not None and any(_same_text(p.text, said) for p in after_lines)
    restarted_audio: bool | None = None
    heard = sum(e2 - s2 for s2, e2 in segments[: k + 1])
    if full_s is not None and paused and later and heard >= MIN_HEARD_S:
        rest, last_end = 0.0, later[0][0]
        for s2, e2 in later:  # the utterance after the pause: up to the next long silence
            if s2 - last_end > UTTERANCE_GAP_S:
                break
            rest, last_end = rest + e2 - s2, e2
        # Continuing leaves about full - heard to say; starting over, about full.
        restarted_audio = rest > full_s - heard / 2
    return {
        "task": "backchannel",
        "speaking": True,
        "false_stop": paused and not resumed,
        "paused": paused,
        "resume_gap_s": _r(later[0][0] - e) if resumed else None,
        "restarted": restarted_text if after_lines else bool(restarted_audio),
        "restarted_audio": restarted_audio,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _rate(values: Sequence[bool]) -> float | None:
    return round(sum(1 for v in values if v) / len(values), 3) if values else None


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.mean(vals), 3) if vals else None


def summarise_live(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rates and latencies per task; failed scenarios are counted, not scored."""
    by: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, int] = {}
    for o in outcomes:
        if o.get("failed"):
            failed[o["task"]] = failed.get(o["task"], 0) + 1
        else:
            by.setdefault(o["task"], []).append(o)
    out: dict[str, Any] = {}
    for task in ("pause", "turn", "interrupt", "backchannel"):
        got = by.get(task, [])
        if not got and task not in failed:
            continue
        row: dict[str, Any] = {"n": len(got), "failed": failed.get(task, 0)}
        if task == "pause":
            row["takeover_rate"] = _rate([o["takeover"] for o in got])
            row["takeover_audio_rate"] = _rate([o["takeover_audio"] for o in got])
            row["takeover_decision_rate"] = _rate([o["takeover_decision"] for o in got])
        elif task == "turn":
            lat = [o["latency"] for o in got]
            row["takeover_rate"] = _rate([o["takeover"] for o in got])
            row["latency_mean_s"] = _mean(lat)
            row["latency_median_s"] = _median(lat)
            row["missed"] = sum(1 for x in lat if x is None)
            row["early_rate"] = _rate([o["early"] for o in got])
            row["decision_latency_median_s"] = _median([o["decision_latency"] for o in got])
            row["printed_to_audio_median_s"] = _median([o["printed_to_audio"] for o in got])
        elif task == "interrupt":
            row["success_rate"] = _rate([o["success"] for o in got])
            row["strict_success_rate"] = _rate([o["strict_success"] for o in got])
            row["stop_time_median_s"] = _median([o["stop_time"] for o in got])
            row["repeated_rate"] = _rate([o["repeated"] for o in got])
            row["not_speaking"] = sum(1 for o in got if not o["speaking"])
        else:
            tested = [o for o in got if o["speaking"]]
            row["false_stop_rate"] = _rate([o["false_stop"] for o in tested])
            row["restarted_rate"] = _rate([o["restarted"] for o in tested])
            row["paused_rate"] = _rate([o["paused"] for o in tested])
            row["not_speaking"] = len(got) - len(tested)
        out[task] = row
    return out


# --- scenarios -----------------------------------------------------------------------------


def find_scenarios(root: Path, limit: int | None = None) -> list[Path]:
    """Scenario folders under ``root`` (those with labels.json), sorted by name; with
    ``limit``, the first ``limit`` taken in turn from each task, so a short run covers all."""
    found = sorted(p.parent for p in root.rglob("labels.json"))
    if not found:
        raise ScenarioError(f"{root}: no scenario with labels.json")
    if limit is None or limit >= len(found):
        return found
    by: dict[str, list[Path]] = {}
    for sc in found:
        by.setdefault(str(_labels(sc).get("task")), []).append(sc)
    queues = [list(v) for _, v in sorted(by.items())]
    picked: list[Path] = []
    while len(picked) < limit:
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return sorted(picked)


def _labels(sc: Path) -> dict[str, Any]:
    try:
        labels = json.loads((sc / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ScenarioError(f"{sc / 'labels.json'}: {e}") from e
    if not isinstance(labels, dict):
        raise ScenarioError(f"{sc / 'labels.json'}: expected a JSON object")
    return labels


def stdin_inputs(scenario: Path) -> list[tuple[float, str]]:
    """The scenario's scripted inputs as the lines a user would type, at their times."""
    out: list[tuple[float, str]] = []
    for item in load_scenario(scenario).items:
        if item.control is not None and item.control.kind is ControlKind.FORCE_SAY:
            out.append((item.t, "/say " + " ".join(item.control.text.split())))
        elif item.control is not None and item.control.kind is ControlKind.MUTE:
            out.append((item.t, "/mute"))
        elif item.control is not None and item.control.kind is ControlKind.UNMUTE:
            out.append((item.t, "/unmute"))
        elif isinstance(item.frame, TypedText):
            out.append((item.t, " ".join(item.frame.text.split())))
    return out


def said_text(scenario: Path) -> str | None:
    """What the scenario makes the assistant say first (``assistant_say``), if anything."""
    for item in load_scenario(scenario).items:
        if item.control is not None and item.control.kind is ControlKind.FORCE_SAY:
            return item.control.text
    return None


# --- running Tandem ------------------------------------------------------------------------


@dataclass(slots=True)
class _Lines:
    """A child's stdout as lines, each with the monotonic time it arrived."""

    proc: Spawned
    lines: list[tuple[float, str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def read_all(self) -> None:
        buf = b""
        while chunk := self.proc.read():
            now = time.monotonic()
            buf += chunk
            *done, buf = buf.split(b"\n")
            with self.changed:
                self.lines.extend((now, d.decode("utf-8", "replace")) for d in done)
                self.changed.notify_all()
        with self.changed:
            if buf:
                self.lines.append((time.monotonic(), buf.decode("utf-8", "replace")))
            self.closed = True
            self.changed.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        """True once a line containing ``text`` arrived; False if the child closed its
        output first or the time ran out."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not any(text in line for _, line in self.lines):
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
            return True


@dataclass(frozen=True, slots=True)
class LiveRun:
    """What one scenario produced: the recording, the lines, when each input was typed."""

    recording: Recording
    lines: list[tuple[float, str]]
    typed: list[tuple[float, str]]
    stderr: str
    status: int


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How to start Tandem (the argv up to and excluding the device options) and wait."""

    command: Sequence[str]
    ready_timeout_s: float = READY_TIMEOUT_S
    keep: Path | None = None
    """Keep each scenario's evidence here: the stereo recording (left: speaker, right:
    microphone), Tandem's printed lines with their arrival times, its standard error."""


def tandem_argv(options: LiveOptions) -> list[str]:
    """The full command line: the user's ``tandem run --mic`` on the virtual devices."""
    return [*options.command, "--mic", "--mic-device", MIC, "--speaker-device", SPEAKER]


class ScenarioFailedError(EngineError):
    """Tandem crashed or never got ready in one scenario (the run goes on)."""


def run_scenario(va: VirtualAudio, scenario: Path, options: LiveOptions, work: Path) -> LiveRun:
    """Play one scenario live into a fresh Tandem and record what its speaker played.

    Raises:
        ScenarioFailedError: Tandem exited early or never said it was listening (the message
            ends with its last line on standard error).
    """
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("home", "config", "data"):
        (work / sub).mkdir(exist_ok=True)
    env = {
        **va.env,
        "HOME": str(work / "home"),
        "TANDEM_CONFIG_DIR": str(work / "config"),
        "TANDEM_DATA_DIR": str(work / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):  # the screen is not part of these scenarios
        env.pop(name, None)
    inputs = stdin_inputs(scenario)
    stderr = work / "stderr.txt"
    proc = spawn(
        tandem_argv(options), env=env, stdin=True, stdout="pipe", stderr=stderr, name="tandem"
    )
    out = _Lines(proc)
    reader = threading.Thread(target=out.read_all, name="tandem-eval-stdout")
    reader.start()
    recorder = va.recorder()
    player: Spawned | None = None
    typed: list[tuple[float, str]] = []
    recording: Recording | None = None
    try:
        if not out.wait_for(READY_LINE, options.ready_timeout_s):
            status = proc.poll()
            why = "exited" if status is not None else "never said it was listening"
            raise ScenarioFailedError(f"tandem {why}: {_last_line(stderr, out.lines)}")
        time.sleep(SETTLE_S)
        recorder.start()
        time.sleep(LEAD_S)
        player = va.play(scenario / "mic.wav")
        started = time.monotonic()
        for t, line in inputs:
            delay = started + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            typed.append((time.monotonic(), line))
            if not proc.write((line + "\n").encode()):
                break
        duration = load_scenario(scenario).duration
        player.wait(max(1.0, started + duration + 10.0 - time.monotonic()))
        time.sleep(TAIL_S)
        if proc.poll() is not None:
            raise ScenarioFailedError(
                f"tandem exited with status {proc.poll()} during the scenario: "
                f"{_last_line(stderr, out.lines)}"
            )
        proc.write(b"/quit\n")
        status = proc.wait(QUIT_TIMEOUT_S)
        recording = recorder.stop()
        if status is None:
            raise ScenarioFailedError(f"tandem did not quit within {QUIT_TIMEOUT_S:.0f} s of /quit")
        if status != 0:
            raise ScenarioFailedError(
                f"tandem exited with status {status}: {_last_line(stderr, out.lines)}"
            )
    finally:
        if recording is None:
            recorder.stop()
        if player is not None:
            player.stop()
        proc.stop(timeout_s=5.0)
        reader.join()
    return LiveRun(
        recording=recording,
        lines=list(out.lines),
        typed=typed,
        stderr=stderr.read_text(errors="replace"),
        status=status,
    )


def _last_line(stderr: Path, lines: Sequence[tuple[float, str]]) -> str:
    try:
        err = [x for x in stderr.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        err = []
    if err:
        return err[-1].strip()
    return lines[-1][1].strip() if lines else "(nothing printed)"


def analyse(scenario: Path, run: LiveRun, *, full_s: float | None = None) -> dict[str, Any]:
    """Score one live run (see the module docstring for how it is aligned and detected)."""
    labels = _labels(scenario)
    reference = audio.load_mono16k(scenario / "mic.wav")
    rec = run.recording
    lag, quality = align(rec.mic, reference)
    if quality < MIN_ALIGN_QUALITY:
        raise ScenarioFailedError(
            f"the scenario's audio was not found in the recording (correlation {quality})"
        )
    t0 = rec.time_of(lag)
    segments = speech_segments(rec.speaker, rec.rate, origin=-lag / rec.rate)
    printed = parse_printed(run.lines, t0)
    outcome = score_live(labels, segments, printed, said=said_text(scenario), full_s=full_s)
    return {
        **outcome,
        "model": model_line(run.lines),
        "align_quality": quality,
        "typed_at": [round(w - t0, 3) for w, _ in run.typed],
        "assistant_audio": [[round(s, 3), round(e, 3)] for s, e in segments],
        "underruns": run.stderr.lower().count("underrun"),
    }


_MODEL = re.compile(r"^model:\s+(\S+), window")


def model_line(lines: Sequence[tuple[float, str]]) -> str | None:
    """The model Tandem said it loaded (``model:      NAME, window N tokens``)."""
    for _, line in lines:
        m = _MODEL.match(line)
        if m is not None:
            return m.group(1)
    return None


def keep(run: LiveRun, scenario: Path, folder: Path) -> None:
    """Write one run's evidence: ``recording.wav`` (stereo, 16 kHz: speaker left, microphone
    right; scenario time 0 at the sample ``offset.txt`` names), ``stdout.txt`` (each line
    with the scenario time it arrived; ``>`` marks what was typed to Tandem), ``stderr.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    rec = run.recording
    lag, _ = align(rec.mic, audio.load_mono16k(scenario / "mic.wav"))
    t0 = rec.time_of(lag)
    stereo = np.stack([rec.speaker, rec.mic], axis=1)
    audio.write_wav(folder / "recording.wav", stereo, rec.rate)
    (folder / "offset.txt").write_text(f"{lag}\n")
    both = sorted([*run.lines, *((t, f"> {line}") for t, line in run.typed)])
    text = "".join(f"{t - t0:9.3f}  {line}\n" for t, line in both)
    (folder / "stdout.txt").write_text(text)
    (folder / "stderr.txt").write_text(run.stderr)


def utterance_seconds(text: str) -> float | None:
    """How long ``text`` sounds when the live voice says it (speech only, no pauses), or None
    when no voice loads here. Synthesised clause by clause, as the live voice plays it."""
    from engine.voice.synthesis import default_synthesizer, sentences

    try:
        synth = default_synthesizer()
    except EngineError:
        return None
    try:
        total = 0.0
        for part in sentences(text):
            x = synth.synthesize(part)
            total += sum(e - s for s, e in speech_segments(x, audio.RATE))
        return round(total, 3)
    finally:
        synth.close()


def eval_duplex_live(
    scenarios: Sequence[Path],
    options: LiveOptions,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every scenario live; the same shape as ``eval_duplex``: per task, then scenarios.

    Raises:
        LiveEvalError: no PulseAudio, or it did not start.
    """
    from engine.eval.virtual_audio import VirtualAudioError

    say = progress or (lambda _: None)
    texts = {t for t in (said_text(sc) for sc in scenarios) if t is not None}
    full = {t: utterance_seconds(t) for t in texts}
    outcomes: list[dict[str, Any]] = []
    try:
        with VirtualAudio() as va, tempfile.TemporaryDirectory(prefix="tandem-live-") as tmp:
            for i, sc in enumerate(scenarios, start=1):
                task = str(_labels(sc).get("task"))
                started = time.monotonic()
                load = round(os.getloadavg()[0], 2)  # other work on the machine skews timing
                try:
                    live_run = run_scenario(va, sc, options, Path(tmp) / sc.name)
                    if options.keep is not None:
                        keep(live_run, sc, options.keep / sc.name)
                    said = said_text(sc)
                    outcome = analyse(sc, live_run, full_s=full.get(said) if said else None)
                except (ScenarioFailedError, ProcessError) as e:
                    outcome = {"task": task, "failed": True, "error": str(e)}
                outcomes.append({"scenario": sc.name, **outcome, "load_1min": load})
                took = time.monotonic() - started
                say(f"[{i}/{len(scenarios)}] {sc.name}: {brief(outcome)} ({took:.0f} s)")
    except VirtualAudioError as e:
        raise LiveEvalError(str(e)) from e
    return {**summarise_live(outcomes), "scenarios": outcomes}


def brief(o: dict[str, Any]) -> str:
    """One scenario's outcome in a few words (the progress and human output)."""
    if o.get("failed"):
        return f"FAILED: {o['error']}"
    keys = ("takeover", "latency", "stop_time", "strict_success", "false_stop", "restarted")
    return "  ".join(f"{k} {o[k]}" for k in keys if k in o)


def detector_settings() -> dict[str, float]:
    """The detector's settings, for the provenance of a live run."""
    return {
        "frame_s": FRAME_S,
        "threshold_dbfs": THRESHOLD_DBFS,
        "hangover_s": HANGOVER_S,
        "min_segment_s": MIN_SEGMENT_S,
        "turn_window_s": TURN_WINDOW_S,
        "interrupt_window_s": INTERRUPT_WINDOW_S,
    }


def tandem_settings(prefix: Sequence[str]) -> dict[str, Any]:
    """What ``tandem config show --json`` says with the environment the live runs had (its
    own empty config folder, the caller's ``TANDEM_*`` variables), or {"error": ...}."""
    with tempfile.TemporaryDirectory(prefix="tandem-live-config-") as tmp:
        env = {
            **os.environ,
            "HOME": tmp,
            "TANDEM_CONFIG_DIR": str(Path(tmp) / "config"),
            "TANDEM_DATA_DIR": str(Path(tmp) / "data"),
        }
        try:
            shown = json.loads(run([*prefix, "config", "show", "--json"], env=env, timeout_s=60))
        except (ProcessError, ValueError) as e:
            return {"error": str(e)}
    return shown if isinstance(shown, dict) else {"error": "not a JSON object"}


# --- live beside replay --------------------------------------------------------------------

COMPARED = (
    ("pause", "takeover_rate"),
    ("pause", "takeover_audio_rate"),
    ("pause", "takeover_decision_rate"),
    ("turn", "takeover_rate"),
    ("turn", "latency_mean_s"),
    ("turn", "latency_median_s"),
    ("turn", "missed"),
    ("turn", "early_rate"),
    ("interrupt", "success_rate"),
    ("interrupt", "strict_success_rate"),
    ("interrupt", "stop_time_median_s"),
    ("interrupt", "repeated_rate"),
    ("backchannel", "false_stop_rate"),
    ("backchannel", "restarted_rate"),
)


def side_by_side(live: dict[str, Any], replay: dict[str, Any] | None) -> list[str]:
    """The human table: one row per task metric, live beside replay."""

    def cell(result: dict[str, Any] | None, task: str, key: str) -> str:
        if result is None or task not in result or result[task].get(key) is None:
            return "-"
        return str(result[task][key])

    rows = [f"{'task':<12} {'metric':<24} {'live':>8} {'replay':>8}"]
    for task, key in COMPARED:
        if task in live or (replay is not None and task in replay):
            rows.append(
                f"{task:<12} {key:<24} {cell(live, task, key):>8} {cell(replay, task, key):>8}"
            )
    for task in ("pause", "turn", "interrupt", "backchannel"):
        if task in live:
            n, failed = live[task]["n"], live[task]["failed"]
            rows.append(f"{task:<12} {'scenarios (failed)':<24} {f'{n} ({failed})':>8}")
    return rows
