"""The one composition of a live Tandem, shared by ``tandem run`` and the desktop app.

``compose`` says which senses it found (and why not), loads the model, builds the gate from the
user's settings (with the caller's prompt broker, so "ask" reaches a UI), opens the speaker
and, when listening, the microphone through the gate, and wires the engine to the caller's
timeline sink and the live driver. The front ends differ only in what they give it:

- ``out``: status lines (the terminal prints them; the window shows them in its status bar);
- ``sink``: timeline events, called on the engine's event loop (the terminal prints a line;
  the desktop bridge turns each into a queued Qt signal);
- ``mic_grant``: the rule that stands for the user's own switch (``tandem run --mic`` adds a
  session rule; the desktop app relies on the rule the first run saved, so it passes None);
- ``session``: the model session to run (default: the one ``cfg`` names; tests pass one on
  the scripted fake backend);
- ``app``: the application context the leases are opened for;
- ``mic_off_hint`` / ``ready_hint``: how the front end tells the user to switch the
  microphone on, and what to do once the model is warm.

``watch_screen`` adds the screen sense to a composition (``tandem run --screen``, and the
desktop app when the first run allowed it). ``Composition.close`` stops and joins everything
in order: the hearing thread, the voice
thread, the speaker, the espeak child, the model thread, the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from engine.config import ScreenSettings, VoiceSettings, make_synthesizer
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.core.engine import Engine, live_budget
from engine.core.events import Sink
from engine.core.frames import ControlEvent
from engine.core.policy import PolicyConfig
from engine.errors import MissingDependencyError, ModelFileError
from engine.hearing.asr import Recognizer
from engine.hearing.echo import EchoGate
from engine.hearing.listener import Listener, MicLevel
from engine.hearing.pipeline import Hearing
from engine.hearing.smart_turn import ThreadedSmartTurn
from engine.hearing.vad import SileroVad
from engine.live import LiveDriver
from engine.model.load import ModelConfig, make_session, server_api_key
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.seeing.vision import Looker, VisionClient
from engine.seeing.watch import Watching
from engine.senses import screen, sound
from engine.senses.screen import CaptureSettings
from engine.senses.sound import AudioDeviceError, Microphone, Speaker
from engine.voice.handles import PacedTextSpeech, SpeechOut
from engine.voice.playback import PlayedSpeech
from engine.voice.synthesis import Synthesizer
from permissions import settings
from permissions.audit import AuditLog, open_log
from permissions.broker import PromptBroker
from permissions.gate import Gate, Lease
from permissions.model import AppContext, Decision, Rule, Scope, Sense

Out = Callable[[str], None]
TERMINAL = AppContext("tandem", "terminal")
CLI_MIC_RULE = Rule("cli:--mic", Decision.ALLOW, sense=Sense.MICROPHONE, scope=Scope.SESSION)
"""``tandem run --mic``: the user's switch, as a session rule (see ``compose``)."""
LEVELS_CAPACITY = 10


@dataclass(frozen=True, slots=True)
class AudioChoice:
    """The user's sound settings for a live session (``tandem run --mic ...``)."""

    mic: str | None = None
    """Microphone: an index or part of a name (``tandem devices``); None follows the default."""
    speaker: str | None = None
    """Speaker, chosen the same way."""
    levels: bool = False
    """Keep the microphone's level windows (RMS, peak, clipping) for a meter."""


@dataclass(slots=True)
class Composition:
    """A composed live Tandem: run ``driver.run()`` on the event loop, then ``close()``."""

    gate: Gate
    audit: AuditLog
    clock: RealClock
    inbox: ControlInbox[ControlEvent]
    engine: Engine
    driver: LiveDriver
    worker: ModelWorker
    speech: SpeechOut
    speaker: Speaker | None
    synth: Synthesizer | None
    listener: Listener | None
    levels: Channel[MicLevel] | None

    def close(self) -> None:
        """Stop and join every part, in order (safe to call once the driver returned)."""
        try:
            if self.listener is not None:
                self.listener.stop()
            self.speech.close()
            if self.speaker is not None:
                self.speaker.stop()
            if self.synth is not None:
                self.synth.close()
        finally:
            self.worker.close()
            self.audit.close()


async def compose(
    cfg: ModelConfig,
    out: Out,
    sink: Sink,
    *,
    duration: float | None = None,
    listen: bool = False,
    audio: AudioChoice | None = None,
    policy: PolicyConfig | None = None,
    voice: VoiceSettings | None = None,
    broker: PromptBroker | None = None,
    mic_grant: Rule | None = CLI_MIC_RULE,
    app: AppContext = TERMINAL,
    session: Callable[[], ModelSession] | None = None,
    mic_off_hint: str = "off until you start with --mic - type instead",
    ready_hint: str = "",
) -> Composition:
    """Build a live Tandem on the running event loop (see the module docstring).

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
        out(f"microphone: found; {mic_off_hint}")
    listen = listen and mic.available
    if listen:
        cfg = replace(cfg, audio_active=True)  # leave a core to VAD and ASR
    out("model:      loading ...")
    worker = ModelWorker()
    loop = asyncio.get_running_loop()
    try:
        make = session or (lambda: make_session(cfg))
        backend = (await loop.run_in_executor(None, worker.start, make)).backend
        cal = await loop.run_in_executor(None, worker.call_sync, lambda s: s.warm_up())
    except BaseException:
        worker.close()
        raise
    budget = live_budget(cal.decode_tok_s, cal.append_ms)
    out(
        f"model:      {backend.name}, window {backend.n_ctx} tokens, warm: append"
        f" {cal.append_ms:.0f} ms (first {cal.first_append_ms:.0f} ms), {cal.decode_tok_s:.0f}"
        f" reply tokens/s, {budget.tokens_per_tick} a tick{ready_hint}"
    )

    loaded = settings.load()
    if loaded.problem:
        out(f"settings:   {loaded.problem}")
    audit = open_log()
    gate = Gate.from_settings(loaded, audit=audit, broker=broker)
    clock = RealClock()
    inbox: ControlInbox[ControlEvent] = ControlInbox()
    speaker = _open_speaker(out, audio.speaker) if listen else None
    synth = make_synthesizer(voice or VoiceSettings()) if speaker is not None else None
    speech: SpeechOut = (
        PlayedSpeech(synth, speaker, post=loop.call_soon_threadsafe)
        if speaker is not None and synth is not None
        else PacedTextSpeech()
    )
    engine = Engine(worker, speech, sink, policy=policy, budget=budget, gate=gate)
    levels: Channel[MicLevel] | None = None
    if listen and audio.levels:
        levels = Channel("mic-levels", LEVELS_CAPACITY, Overflow.DROP_OLDEST)
    listener = None
    if listen:
        # open_sense may ask the user (through the broker): never on the event loop.
        listener = await loop.run_in_executor(
            None,
            lambda: _start_listener(
                gate,
                clock,
                inbox,
                engine,
                out,
                speaker=speaker,
                device=audio.mic,
                levels=levels,
                grant=mic_grant,
                app=app,
            ),
        )
    driver = LiveDriver(engine, clock, inbox, duration=duration)
    return Composition(
        gate, audit, clock, inbox, engine, driver, worker, speech, speaker, synth, listener, levels
    )


def _open_speaker(out: Out, device: str | None) -> Speaker | None:
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
    out: Out,
    *,
    speaker: Speaker | None,
    device: str | None,
    levels: Channel[MicLevel] | None,
    grant: Rule | None,
    app: AppContext,
) -> Listener | None:
    if grant is not None:
        gate.add_rule(grant)
    lease = gate.open_sense(Sense.MICROPHONE, app)
    if lease is None:
        out("microphone: the permission gate refused it")
        return None

    def new_lease() -> Lease | None:
        # Cheap while muted: explain writes nothing; only an allowed lease is opened (and audited).
        if gate.explain_sense(Sense.MICROPHONE, app).decision is not Decision.ALLOW:
            return None
        return gate.open_sense(Sense.MICROPHONE, app)

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


def _turn_scorer(out: Out) -> ThreadedSmartTurn | None:
    """Smart Turn on its own thread, or words-only end of turn when it cannot load."""
    try:
        return ThreadedSmartTurn()
    except (ModelFileError, MissingDependencyError) as e:
        out(f"hearing:    end of turn from the words only ({str(e).splitlines()[0]})")
        return None


def watch_screen(live: Composition, screen: ScreenSettings, out: Out) -> Watching | None:
    """Start the screen sense (grabber + OCR threads) under a lease from the composition's
    gate, or say why not (the caller closes what it returns)."""
    engine, clock = live.engine, live.clock
    capture = CaptureSettings(max_fps=screen.max_fps, all_monitors=screen.all_monitors)
    watching = Watching.start(live.gate, live.inbox, engine.data, clock.now, capture)
    if watching.sense.error is not None:
        out(f"screen:     {watching.sense.error} - watching is off")
        watching.close()
        return None
    engine.screen_text = watching.state.latest_text
    if screen.vision_url is not None:
        client = VisionClient(
            screen.vision_url, screen.vision_model, api_key=server_api_key(screen.vision_url)
        )
        watching.looker = Looker(client, watching.state.latest_region, engine.data.put, clock.now)
        engine.look = watching.looker.ask
    out(f"screen:     watching (at most {screen.max_fps:g} frames/s; excluded apps revoke it)")
    return watching
