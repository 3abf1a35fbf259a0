"""The live driver: the engine on a real clock, in the terminal, until the desktop app exists.

It says which senses it found (and why not), loads the model, then ticks every 200 ms. Lines
typed on standard input are ``TypedText`` (``/quit`` stops it; so does the end of input,
unless a ``duration`` was given). Control events
are handled the moment they arrive: the stdin thread wakes the loop, it does not wait for the
next tick. A tick that cannot start before the next one is due is skipped and counted (its
inputs go into the next micro-turn; nothing is lost).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from engine.channels import Channel, ControlInbox, Overflow
from engine.clock import RealClock
from engine.engine import LIVE_BUDGET, Engine, TimelineEvent
from engine.features.asr import Recognizer
from engine.features.echo import EchoGate
from engine.features.vad import SileroVad
from engine.frames import TICK_S, ControlEvent, ControlKind, TypedText
from engine.hearing import Hearing
from engine.listen import Listener, MicLevel
from engine.model.load import ModelConfig, make_session
from engine.model.worker import ModelWorker
from engine.senses import screen, sound
from engine.senses.sound import AudioDeviceError, Microphone, Speaker
from engine.speech import PacedTextSpeech, SpeechOut
from engine.voice import PlayedSpeech, default_synthesizer
from permissions import settings
from permissions.audit import AUDIT_FILE, AuditLog
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Scope, Sense

QUIT = "/quit"
METER_S = 0.2
"""The level meter prints at most one line per this many seconds (5 a second)."""
METER_RANGE_DB = 60.0
METER_WIDTH = 20


@dataclass(frozen=True, slots=True)
class AudioChoice:
    """The user's sound settings for a live session (``tandem run --mic ...``)."""

    mic: str | None = None
    """Microphone: an index or part of a name (``tandem devices``); None follows the default."""
    speaker: str | None = None
    """Speaker, chosen the same way."""
    levels: bool = False
    """Print a level-meter line (RMS, peak, clipping) at most every ``METER_S``."""


def describe(ev: TimelineEvent) -> str | None:
    """A human line for the terminal (None for events too frequent to print)."""
    f = ev.fields
    if ev.lane == "tick":
        return None
    if ev.lane == "model":
        if f.get("decision") == "silent":
            return None
        return f"{ev.t:7.1f}  decide  {f.get('decision')} ({f.get('reason')})"
    if ev.lane in ("vad", "asr"):
        text = f" {f['text']}" if "text" in f else ""
        return f"{ev.t:7.1f}  {ev.lane:<7} {ev.kind}{text}"
    if ev.lane == "speech":
        if ev.kind == "start":
            return f"{ev.t:7.1f}  tandem  {f.get('text')}"
        return f"{ev.t:7.1f}  stop    {f.get('reason')}"
    extra = " ".join(f"{k}={v}" for k, v in f.items())
    return f"{ev.t:7.1f}  {ev.lane:<7} {ev.kind} {extra}"


async def run_live(
    cfg: ModelConfig,
    out: Callable[[str], None],
    stdin: TextIO,
    duration: float | None = None,
    *,
    listen: bool = False,
    audio: AudioChoice | None = None,
) -> dict[str, int]:
    """Run until ``/quit``, end of input, or ``duration`` seconds; returns tick counters.

    ``listen`` is the user's own switch (``tandem run --mic``): it turns the microphone on for
    this session through the gate, which still refuses it while muted or killed. ``audio``
    picks the devices and the level meter.

    Raises:
        AudioDeviceError: a device the user chose by name or index is not there (before
            anything is loaded; the message lists the devices there are).
    """
    audio = audio or AudioChoice()
    mic, scr = sound.probe(audio.mic), screen.probe()
    if listen and audio.mic is not None and not mic.available:
        raise AudioDeviceError(mic.detail)
    if listen and audio.speaker is not None:
        sound.resolve(audio.speaker, "output")
    out(f"microphone: {mic.detail}" + ("" if mic.available else " - listening is off"))
    out(f"screen:     {scr.detail}" + ("" if scr.available else " - watching is off"))
    if mic.available and not listen:
        out("microphone: found; off until you start with --mic - type instead")
    listen = listen and mic.available
    if listen:
        cfg = replace(cfg, audio_active=True)  # leave a core to VAD and ASR
    if scr.available:
        out("screen:     found; watching arrives with the screen issue")
    out("model:      loading ...")
    worker = ModelWorker()
    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(None, worker.start, lambda: make_session(cfg))
    backend = session.backend
    out(f"model:      {backend.name}, window {backend.n_ctx} tokens - type a line, {QUIT} to stop")

    loaded = settings.load()
    if loaded.problem:
        out(f"settings:   {loaded.problem}")
    audit = AuditLog(settings.data_dir() / AUDIT_FILE)
    gate = Gate.from_settings(loaded, audit=audit)
    speaker = _open_speaker(out, audio.speaker) if listen else None
    speech: SpeechOut = (
        PlayedSpeech(default_synthesizer(), speaker) if speaker else PacedTextSpeech()
    )
    engine = Engine(worker, speech, _printer(out), budget=LIVE_BUDGET, gate=gate)
    clock = RealClock()
    inbox: ControlInbox[ControlEvent] = ControlInbox()
    wake = asyncio.Event()
    inbox.notify = lambda: loop.call_soon_threadsafe(wake.set)
    stopped = threading.Event()
    levels: Channel[MicLevel] | None = None
    if listen and audio.levels:
        levels = Channel("mic-levels", 10, Overflow.DROP_OLDEST)
    meter = LevelMeter(levels) if levels is not None else None
    listener = (
        _start_listener(
            gate, clock, inbox, engine, out, speaker=speaker, device=audio.mic, levels=levels
        )
        if listen
        else None
    )

    def read_stdin() -> None:
        for raw in stdin:
            text = raw.strip()
            if text == QUIT:
                break
            if text:
                engine.data.put(TypedText(t=clock.now(), text=text))
            if stopped.is_set():
                return
        else:
            if duration is not None:
                return  # input ended (a pipe): keep running for the duration asked
        inbox.put(ControlEvent(clock.now(), ControlKind.SHUTDOWN))

    reader = threading.Thread(target=read_stdin, name="tandem-stdin", daemon=True)
    reader.start()
    counters = {"ticks": 0, "skipped_ticks": 0}
    k = 1
    try:
        while True:
            due = k * TICK_S
            if duration is not None and due > duration:
                break
            while clock.now() < due and not wake.is_set():
                try:
                    await asyncio.wait_for(wake.wait(), timeout=max(0.0, due - clock.now()))
                except TimeoutError:
                    break
            wake.clear()
            if await _handle_controls(engine, inbox):
                break
            if clock.now() < due:
                continue  # woken by a control event before the tick was due
            late = int((clock.now() - due) // TICK_S)
            if late > 0:  # the previous tick overran: skip to the current slot
                counters["skipped_ticks"] += late
                k += late
                due = k * TICK_S
            await engine.tick(due)
            counters["ticks"] += 1
            line = meter.poll(due) if meter is not None else None
            if line is not None:
                out(line)
            k += 1
    finally:
        stopped.set()
        if listener is not None:
            listener.stop()
        if speaker is not None:
            speaker.stop()
        worker.close()
        audit.close()
    out(f"stopped after {counters['ticks']} ticks ({counters['skipped_ticks']} skipped)")
    return counters


async def _handle_controls(engine: Engine, inbox: ControlInbox[ControlEvent]) -> bool:
    """Apply pending control events at once; True when one asks to shut down."""
    shutdown = False
    for ev in inbox.drain():
        await engine.control(ev)
        shutdown = shutdown or ev.kind is ControlKind.SHUTDOWN
    return shutdown


def _open_speaker(out: Callable[[str], None], device: str | None) -> Speaker | None:
    speaker = Speaker(device)
    try:
        speaker.start()
    except AudioDeviceError as e:
        out(f"speaker:    {e} - replies are printed only")
        return None
    name = speaker.chosen.name if speaker.chosen else "?"
    out(f"speaker:    playing replies ({name}, {speaker.rate} Hz), echo gate on")
    return speaker


def _start_listener(
    gate: Gate,
    clock: RealClock,
    inbox: ControlInbox[ControlEvent],
    engine: Engine,
    out: Callable[[str], None],
    *,
    speaker: Speaker | None,
    device: str | None,
    levels: Channel[MicLevel] | None,
) -> Listener | None:
    gate.add_rule(Rule("cli:--mic", Decision.ALLOW, sense=Sense.MICROPHONE, scope=Scope.SESSION))
    lease = gate.open_sense(Sense.MICROPHONE, AppContext("tandem", "terminal"))
    if lease is None:
        out("microphone: the permission gate refused it")
        return None
    out("hearing:    loading VAD and ASR ...")
    echo = EchoGate() if speaker is not None else None
    hearing = Hearing(SileroVad(), Recognizer(threads=1), echo=echo)
    listener = Listener(
        Microphone(lease, device),
        hearing,
        clock,
        inbox=inbox,
        data=engine.data,
        report=out,
        speaker=speaker,
        levels=levels,
    )
    listener.start()
    return listener


class LevelMeter:
    """Turns the Listener's level windows into a compact terminal line, at most every METER_S.

    Everything queued since the last line is summed up (loudest RMS, highest peak, any
    clipping), so a clip between two lines is still shown. Levels only, never audio.
    """

    def __init__(self, levels: Channel[MicLevel], period: float = METER_S) -> None:
        self.levels, self.period = levels, period
        self._last = float("-inf")

    def poll(self, t: float) -> str | None:
        """The meter line for time ``t``, or None (too soon, or nothing new)."""
        if t - self._last < self.period - 1e-9:
            return None
        got = self.levels.drain()
        if not got:
            return None
        self._last = t
        return meter_line(
            t,
            max(x.rms_dbfs for x in got),
            max(x.peak_dbfs for x in got),
            any(x.clipping for x in got),
        )


def meter_line(t: float, rms_dbfs: float, peak_dbfs: float, clipping: bool) -> str:
    """One compact meter line: RMS and peak in dBFS, a bar over the top 60 dB, CLIP."""
    filled = round((rms_dbfs + METER_RANGE_DB) / METER_RANGE_DB * METER_WIDTH)
    filled = min(METER_WIDTH, max(0, filled))
    bar = "#" * filled + "." * (METER_WIDTH - filled)
    clip = "  CLIP" if clipping else ""
    return f"{t:7.1f}  level   {rms_dbfs:6.1f} dBFS  peak {peak_dbfs:6.1f}  |{bar}|{clip}"


def _printer(out: Callable[[str], None]) -> Callable[[TimelineEvent], None]:
    def sink(ev: TimelineEvent) -> None:
        line = describe(ev)
        if line is not None:
            out(line)

    return sink
