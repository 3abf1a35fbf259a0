"""``tandem run``: the composition root and the terminal UI (until the desktop window lands).

It says which senses it found (and why not), loads the model, builds the gate from the user's
settings, opens the speaker and (with ``--mic``) the microphone through the gate, and runs the
engine's live driver. Lines typed on standard input are ``TypedText``; a few commands are
control events: ``/quit`` (so does the end of input, unless a duration was given), ``/mute``,
``/unmute``, ``/stop`` and ``/say TEXT`` (make the assistant say TEXT: the live evaluation
uses it to have the assistant talk before the user's audio overlaps it).

Every thread started here is named and joined in order on the way out: the stdin reader, the
hearing thread, the voice thread, the espeak child, the model thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from engine.config import VoiceSettings, make_synthesizer
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.core.engine import Engine, live_budget
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    PermissionEvent,
    SpeechStart,
    SpeechStop,
    TimelineEvent,
    VadEvent,
)
from engine.core.frames import ControlEvent, ControlKind, TypedText
from engine.core.policy import PolicyConfig
from engine.errors import MissingDependencyError, ModelFileError
from engine.hearing.asr import Recognizer
from engine.hearing.echo import EchoGate
from engine.hearing.listener import Listener, MicLevel
from engine.hearing.pipeline import Hearing
from engine.hearing.smart_turn import ThreadedSmartTurn
from engine.hearing.vad import SileroVad
from engine.live import LiveDriver, LiveStats
from engine.model.load import ModelConfig, make_session
from engine.model.worker import ModelWorker
from engine.senses import screen, sound
from engine.senses.sound import AudioDeviceError, Microphone, Speaker
from engine.voice.handles import PacedTextSpeech, SpeechOut
from engine.voice.playback import PlayedSpeech
from permissions import settings
from permissions.audit import open_log
from permissions.gate import Gate, Lease
from permissions.model import AppContext, Decision, Rule, Scope, Sense

QUIT = "/quit"
COMMANDS = {
    "/mute": ControlKind.MUTE,
    "/unmute": ControlKind.UNMUTE,
    "/stop": ControlKind.STOP_SPEAKING,
}
SAY = "/say "
METER_S = 0.2
"""The level meter prints at most one line per this many seconds (5 a second)."""
METER_RANGE_DB = 60.0
METER_WIDTH = 20
TERMINAL = AppContext("tandem", "terminal")


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
    match ev:
        case DecisionEvent(decision="silent"):
            return None
        case DecisionEvent():
            return f"{ev.t:7.1f}  decide  {ev.decision} ({ev.reason})"
        case VadEvent():
            return f"{ev.t:7.1f}  vad     {ev.kind}"
        case AsrEvent():
            return f"{ev.t:7.1f}  asr     {ev.kind} {ev.text}"
        case SpeechStart():
            return f"{ev.t:7.1f}  tandem  {ev.text}"
        case SpeechStop():
            return f"{ev.t:7.1f}  stop    {ev.reason}"
        case PermissionEvent():
            return f"{ev.t:7.1f}  permission {ev.kind} {ev.sense_or_tool} {ev.decision}"
    return None


async def run_live(
    cfg: ModelConfig,
    out: Callable[[str], None],
    stdin: TextIO,
    duration: float | None = None,
    *,
    listen: bool = False,
    audio: AudioChoice | None = None,
    policy: PolicyConfig | None = None,
    voice: VoiceSettings | None = None,
) -> LiveStats:
    """Run until ``/quit``, end of input, or ``duration`` seconds; returns the counters.

    ``listen`` is the user's own switch (``tandem run --mic``): it turns the microphone on for
    this session through the gate, which still refuses it while muted or killed. ``audio``
    picks the devices and the level meter; ``policy`` and ``voice`` come from the typed
    configuration (``engine.config``: command line > environment > file > defaults).

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
    try:
        session = await loop.run_in_executor(None, worker.start, lambda: make_session(cfg))
    except BaseException:
        worker.close()
        raise
    backend = session.backend
    cal = await loop.run_in_executor(None, worker.call_sync, lambda s: s.warm_up())
    budget = live_budget(cal.decode_tok_s, cal.append_ms)
    out(
        f"model:      {backend.name}, window {backend.n_ctx} tokens, warm: append"
        f" {cal.append_ms:.0f} ms (first {cal.first_append_ms:.0f} ms), {cal.decode_tok_s:.0f}"
        f" reply tokens/s, {budget.tokens_per_tick} a tick - type a line, {QUIT} to stop"
    )

    loaded = settings.load()
    if loaded.problem:
        out(f"settings:   {loaded.problem}")
    audit = open_log()
    gate = Gate.from_settings(loaded, audit=audit)
    clock = RealClock()
    inbox: ControlInbox[ControlEvent] = ControlInbox()
    speaker = _open_speaker(out, audio.speaker) if listen else None
    synth = make_synthesizer(voice or VoiceSettings()) if speaker is not None else None
    speech: SpeechOut = (
        PlayedSpeech(synth, speaker, post=loop.call_soon_threadsafe)
        if speaker is not None and synth is not None
        else PacedTextSpeech()
    )
    engine = Engine(worker, speech, _printer(out), policy=policy, budget=budget, gate=gate)
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
    stopped = threading.Event()

    def read_stdin() -> None:
        for raw in stdin:
            if stopped.is_set():
                return
            text = raw.strip()
            if text == QUIT:
                break
            if text in COMMANDS:
                inbox.put(ControlEvent(clock.now(), COMMANDS[text]))
            elif text.startswith(SAY) and text[len(SAY) :].strip():
                inbox.put(
                    ControlEvent(clock.now(), ControlKind.FORCE_SAY, text=text[len(SAY) :].strip())
                )
            elif text:
                engine.data.put(TypedText(t=clock.now(), text=text))
        else:
            if duration is not None:
                return  # input ended (a pipe): keep running for the duration asked
        inbox.put(ControlEvent(clock.now(), ControlKind.SHUTDOWN))

    # The reader blocks in readline, which cannot be interrupted: it is a daemon and the only
    # thread not joined (it ends with the process, or at its next line).
    reader = threading.Thread(target=read_stdin, name="tandem-stdin", daemon=True)
    reader.start()
    driver = LiveDriver(engine, clock, inbox, duration=duration)
    meter_task = (
        asyncio.create_task(_meter(meter, clock, out), name="tandem-meter") if meter else None
    )
    try:
        stats = await driver.run()
    finally:
        stopped.set()
        if meter_task is not None:
            meter_task.cancel()
        if listener is not None:
            listener.stop()
        speech.close()
        if speaker is not None:
            speaker.stop()
        if synth is not None:
            synth.close()
        worker.close()
        audit.close()
    out(f"stopped after {stats.ticks} ticks ({stats.skipped_ticks} skipped)")
    return stats


async def _meter(meter: LevelMeter, clock: RealClock, out: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(METER_S)
        line = meter.poll(clock.now())
        if line is not None:
            out(line)


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
    lease = gate.open_sense(Sense.MICROPHONE, TERMINAL)
    if lease is None:
        out("microphone: the permission gate refused it")
        return None

    def new_lease() -> Lease | None:
        # Cheap while muted: explain writes nothing; only an allowed lease is opened (and audited).
        if gate.explain_sense(Sense.MICROPHONE, TERMINAL).decision is not Decision.ALLOW:
            return None
        return gate.open_sense(Sense.MICROPHONE, TERMINAL)

    out("hearing:    loading VAD and ASR ...")
    echo = EchoGate() if speaker is not None else None
    hearing = Hearing(SileroVad(), Recognizer(threads=1), echo=echo, turn=_turn_scorer(out))
    listener = Listener(
        Microphone(lease, device),
        hearing,
        clock,
        inbox=inbox,
        data=engine.data,
        report=out,
        speaker=speaker,
        levels=levels,
        new_lease=new_lease,
    )
    listener.start()
    return listener


def _turn_scorer(out: Callable[[str], None]) -> ThreadedSmartTurn | None:
    """Smart Turn on its own thread, or words-only end of turn when it cannot load."""
    try:
        return ThreadedSmartTurn()
    except (ModelFileError, MissingDependencyError) as e:
        out(f"hearing:    end of turn from the words only ({str(e).splitlines()[0]})")
        return None


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
