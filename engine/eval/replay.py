"""Replay a recorded scenario through the real engine on a virtual clock.

A scenario folder (contract in docs/EVAL_FORMATS.md) holds ``mic.wav`` and optionally
``script.jsonl``, ``labels.json`` and ``frames/``. Replay runs the same engine, model, policy
and speech as the live app, as fast as it can, and writes the timeline sorted by ``t``.
Deterministic for a given scenario and model file: virtual time does not move while the model
computes, and replies are greedy.

Lanes handled: tick, model, speech, typed text, focus, forced assistant speech, mute and the
microphone (heard ahead with the real VAD and ASR, results placed at their modelled
latency). The replayed microphone holds a real lease from a real gate, so a mute revokes it
and an unmute opens a new one, and the timeline shows both as the live app's does.

The screen lane: each ``screen`` image is what the grabber would have grabbed from ``t`` on.
``ReplayedScreen`` holds a screen lease from the same gate (its built-in rules exclude
password managers and private windows), the ``focus`` lane moves it (an excluded app revokes
it, focus back re-opens it), and while it holds one each new image goes through the live
path: changed regions, tesseract OCR of them, redaction, cues; what comes out enters the
engine after a modelled OCR latency (``OCR_S_PER_REGION`` per region read).

Replay figures are *replay* figures: the clock stands still while the model computes and
recognition and synthesis latencies are modelled; what a user hears is measured live
(``tandem eval duplex --live``).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.core import audio
from engine.core.clock import VirtualClock
from engine.core.engine import Engine
from engine.core.events import Sink, TimelineEvent, to_json
from engine.core.frames import TICK_S, ControlEvent, ControlKind, DataFrame, FocusChange, TypedText
from engine.core.proactivity import ProactivityConfig
from engine.errors import ScenarioError
from engine.eval.images import load_frame
from engine.hearing.asr import Recognizer
from engine.hearing.pipeline import hear
from engine.hearing.smart_turn import ModeledSmartTurn, SmartTurn, smart_turn_or_none
from engine.hearing.vad import SileroVad
from engine.model.worker import ModelWorker
from engine.seeing.ocr import Ocr, TesseractOcr
from engine.seeing.reader import MAX_READ_REGIONS, ReadJob, ScreenReader
from engine.seeing.regions import ChangeTracker
from engine.seeing.state import ScreenState
from engine.voice.handles import PacedTextSpeech, SpeechOut
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Scope, Sense

log = logging.getLogger(__name__)

KNOWN_KINDS = {"focus", "screen", "type", "assistant_say", "mute"}
TAIL_S = 2.0
"""Without mic.wav, the scenario runs this long after its last scripted input."""


@dataclass(frozen=True, slots=True)
class ScriptItem:
    """One timed input from script.jsonl, already turned into a frame or control event."""

    t: float
    frame: DataFrame | None = None
    control: ControlEvent | None = None
    image: Path | None = None
    """A ``screen`` item: the image shown from ``t`` on."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A loaded scenario."""

    root: Path
    duration: float
    items: tuple[ScriptItem, ...]
    mic_rate: int | None


def wav_duration(path: Path) -> tuple[float, int]:
    """Duration (s) and sample rate of a PCM WAV file, with a clear error otherwise."""
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            if rate <= 0:
                raise ScenarioError(f"{path}: sample rate is {rate}")
            return w.getnframes() / rate, rate
    except (wave.Error, EOFError) as e:
        raise ScenarioError(f"{path}: not a PCM WAV file ({e})") from e


def load_scenario(root: Path) -> Scenario:
    """Read and validate a scenario folder.

    Raises:
        ScenarioError: naming the file and line that is wrong.
    """
    if not root.is_dir():
        raise ScenarioError(f"scenario folder not found: {root}")
    items: list[ScriptItem] = []
    script = root / "script.jsonl"
    if script.exists():
        for n, raw in enumerate(script.read_text(encoding="utf-8").splitlines(), start=1):
            if raw.strip():
                items.append(_parse_item(raw, f"{script}:{n}", root))
    last_t = -1.0
    for item in items:
        if item.t < last_t:
            raise ScenarioError(f"{script}: lines must be sorted by t ({item.t} after {last_t})")
        last_t = item.t
    mic = root / "mic.wav"
    if mic.exists():
        duration, rate = wav_duration(mic)
        mic_rate: int | None = rate
    elif items:
        duration, mic_rate = items[-1].t + TAIL_S, None
    else:
        raise ScenarioError(f"{root}: needs mic.wav or a script.jsonl with inputs")
    return Scenario(root=root, duration=duration, items=tuple(items), mic_rate=mic_rate)


def _parse_item(raw: str, where: str, root: Path) -> ScriptItem:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{where}: not JSON ({e.msg})") from e
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected a JSON object")
    t, kind = obj.get("t"), obj.get("kind")
    if not isinstance(t, int | float) or isinstance(t, bool) or t < 0:
        raise ScenarioError(f"{where}: 't' must be a number of seconds >= 0")
    t = float(t)
    if kind not in KNOWN_KINDS:
        raise ScenarioError(f"{where}: unknown kind {kind!r} (known: {sorted(KNOWN_KINDS)})")

    def text_field(name: str) -> str:
        value = obj.get(name)
        if not isinstance(value, str):
            raise ScenarioError(f"{where}: {kind!r} needs a string {name!r}")
        return value

    if kind == "type":
        return ScriptItem(t=t, frame=TypedText(t=t, text=text_field("text")))
    if kind == "focus":
        title = obj.get("title", "")
        return ScriptItem(t=t, frame=FocusChange(t=t, app=text_field("app"), title=str(title)))
    if kind == "assistant_say":
        return ScriptItem(t=t, control=ControlEvent(t, ControlKind.FORCE_SAY, text_field("text")))
    if kind == "mute":
        on = obj.get("on")
        if not isinstance(on, bool):
            raise ScenarioError(f"{where}: 'mute' needs a boolean 'on'")
        return ScriptItem(
            t=t, control=ControlEvent(t, ControlKind.MUTE if on else ControlKind.UNMUTE)
        )
    image = root / text_field("image")
    if not image.resolve().is_relative_to(root.resolve()):
        raise ScenarioError(f"{where}: screen image must be inside the scenario folder")
    if not image.is_file():
        raise ScenarioError(f"{where}: screen image not found: {image}")
    return ScriptItem(t=t, image=image)


@dataclass(slots=True)
class Ears:
    """The hearing models, loaded once and reused across scenarios."""

    vad: SileroVad
    asr: Recognizer
    turn: SmartTurn | None = None
    """Smart Turn (end of turn from prosody); None when its model is missing or corrupt."""

    @classmethod
    def load(cls, threads: int = 2) -> Ears:
        """The embedded VAD, ASR and end-of-turn models."""
        return cls(SileroVad(), Recognizer(threads=threads), smart_turn_or_none())


def hear_scenario(scenario: Scenario, ears: Ears | None = None) -> list[ScriptItem]:
    """What the engine hears in mic.wav (VAD events and final transcripts), as timed items."""
    mic = scenario.root / "mic.wav"
    if not mic.exists():
        return []
    ears = ears or Ears.load()
    turn = ModeledSmartTurn(ears.turn) if ears.turn is not None else None
    heard = hear(audio.load_mono16k(mic), ears.vad, ears.asr, turn)
    return [ScriptItem(t=h.t, frame=h.transcript, control=h.control) for h in heard]


def replay_events(
    root: Path, worker: ModelWorker, ears: Ears, speech: SpeechOut | None = None
) -> list[TimelineEvent]:
    """Replay one scenario folder on a fresh session; the events sorted by time."""
    scenario = load_scenario(root)
    heard = hear_scenario(scenario, ears)
    worker.call_sync(lambda s: s.start())  # a fresh timeline (the prefix comes from a snapshot)
    events: list[TimelineEvent] = []
    asyncio.run(replay(scenario, worker, events.append, heard, speech))
    return sorted(events, key=lambda e: e.t)


async def replay(
    scenario: Scenario,
    worker: ModelWorker,
    sink: Sink,
    heard: list[ScriptItem] | None = None,
    speech: SpeechOut | None = None,
    *,
    ocr: Ocr | None = None,
    proactive: ProactivityConfig | None = None,
) -> int:
    """Drive the engine through the scenario on a virtual clock; returns the tick count.

    ``heard`` holds what the microphone lane produced (``hear_scenario``); scripted inputs
    come first when both happen at the same moment. ``ocr`` reads the screen lane
    (tesseract by default); ``proactive`` is the proactivity policy's configuration.
    """
    clock = VirtualClock()
    gate = Gate(
        (
            Rule("replay:mic", Decision.ALLOW, sense=Sense.MICROPHONE, scope=Scope.SESSION),
            Rule("replay:screen", Decision.ALLOW, sense=Sense.SCREEN, scope=Scope.SESSION),
        )
    )
    screen = ReplayedScreen(gate, ocr or TesseractOcr())
    engine = Engine(
        worker,
        speech or PacedTextSpeech(),
        sink,
        gate=gate,
        proactive=proactive,
        screen_text=screen.state.latest_text,
    )
    mic = ReplayedMicrophone(gate)
    pending = sorted([*scenario.items, *(heard or [])], key=lambda i: i.t)
    n_ticks = round(scenario.duration / TICK_S)
    for k in range(1, n_ticks + 1):
        tick_t = round(k * TICK_S, 6)
        while pending and pending[0].t <= tick_t:
            item = pending.pop(0)
            await clock.sleep_until(item.t)
            if item.control is not None:
                engine.control(item.control)
                for ev in [*mic.check(item.t), *screen.check(item.t)]:
                    engine.control(ev)
            elif item.frame is not None:
                engine.data.put(item.frame)
                if isinstance(item.frame, FocusChange):
                    for ev in screen.focus(item.frame):
                        engine.control(ev)
            elif item.image is not None:
                for seen in screen.see(item.t, item.image):
                    bisect.insort(pending, seen, key=lambda i: i.t)
        await clock.sleep_until(tick_t)
        await engine.tick(tick_t)
    engine.flush(clock.now())
    if screen.skipped:
        log.info("replay: %d screen frames not seen (no screen lease)", screen.skipped)
    return n_ticks


OCR_S_PER_REGION = 0.3
"""Modelled OCR latency per region read (tesseract 5, OMP_THREAD_LIMIT=1, a code window)."""


class ReplayedScreen:
    """The scenario's screen as a sense: a lease from the gate, moved by the focus lane, and
    the live reading path (change tracking, OCR, redaction, cues) on each new image."""

    def __init__(self, gate: Gate, ocr: Ocr) -> None:
        self.gate = gate
        self.app = REPLAY_APP
        self.state = ScreenState()
        self.reader = ScreenReader(ocr, self.state, lambda _frame: None)
        self.changes = ChangeTracker()
        self.lease = gate.open_sense(Sense.SCREEN, self.app)
        self.skipped = 0

    def focus(self, change: FocusChange) -> list[ControlEvent]:
        """Tell the gate about the newly focused app; the lease changes that follow."""
        self.app = AppContext(change.app, change.title)
        self.gate.focus_changed(self.app)
        return self.check(change.t)

    def check(self, t: float) -> list[ControlEvent]:
        """Lease changes since the last check, as the control events the live sense posts."""
        name = Sense.SCREEN.value
        if self.lease is not None and not self.lease.active:
            self.lease = None
            self.changes.reset()
            self.state.clear()
            return [ControlEvent(t, ControlKind.LEASE_REVOKED, text=name)]
        allowed = self.gate.explain_sense(Sense.SCREEN, self.app).decision is Decision.ALLOW
        if self.lease is None and allowed:
            self.lease = self.gate.open_sense(Sense.SCREEN, self.app)
            if self.lease is not None:
                return [ControlEvent(t, ControlKind.LEASE_OPENED, text=name)]
        return []

    def see(self, t: float, image: Path) -> list[ScriptItem]:
        """Read an image shown from ``t`` on; what it yields, at its modelled time."""
        if self.lease is None or not self.lease.active:
            self.skipped += 1
            return []
        with self.lease.hold():
            frame = load_frame(image)
        regions = self.changes.update(frame)
        if not regions:
            return []
        job = ReadJob(t, self.app.app_id, frame, tuple(regions))
        done = round(t + OCR_S_PER_REGION * min(len(regions), MAX_READ_REGIONS), 6)
        out: list[ScriptItem] = []
        for seen in self.reader.process(job):
            out.append(ScriptItem(t=done, frame=replace(seen, t=done)))
        return out


class ReplayedMicrophone:
    """The scenario's microphone as a sense: it holds a lease from the gate, and like the live
    hearing thread reports a revocation and, once the gate allows again, a new lease."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.lease = gate.open_sense(Sense.MICROPHONE, REPLAY_APP)

    def check(self, t: float) -> list[ControlEvent]:
        """Lease changes since the last check, as the control events the live sense posts."""
        name = Sense.MICROPHONE.value
        if self.lease is not None and not self.lease.active:
            self.lease = None
            return [ControlEvent(t, ControlKind.LEASE_REVOKED, text=name)]
        allowed = self.gate.explain_sense(Sense.MICROPHONE, REPLAY_APP).decision is Decision.ALLOW
        if self.lease is None and allowed:
            self.lease = self.gate.open_sense(Sense.MICROPHONE, REPLAY_APP)
            if self.lease is not None:
                return [ControlEvent(t, ControlKind.LEASE_OPENED, text=name)]
        return []


REPLAY_APP = AppContext("tandem", "replay")


def write_timeline(events: list[TimelineEvent], out: Path) -> None:
    """Write events as JSON lines, stably sorted by ``t``."""
    ordered = sorted(events, key=lambda e: e.t)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for ev in ordered:
            f.write(json.dumps(to_json(ev), ensure_ascii=False) + "\n")


def summary(events: list[TimelineEvent]) -> dict[str, Any]:
    """Counts per lane/kind (no content), for the command's human output."""
    counts: dict[str, int] = {}
    for ev in events:
        key = f"{ev.lane}.{ev.kind}"
        counts[key] = counts.get(key, 0) + 1
    return counts
