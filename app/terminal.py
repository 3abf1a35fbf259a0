"""``tandem run``: the terminal UI on the shared composition (``app.composition``).

``compose`` says which senses it found (and why not), loads the model, builds the gate from
the user's settings, opens the speaker and (with ``--mic``) the microphone through the gate;
this module runs the engine's live driver on it and talks to the user through the terminal.
Lines typed on standard input are ``TypedText``; a few commands are control events:
``/quit`` (so does the end of input, unless a duration was given), ``/mute``, ``/unmute``,
``/stop`` and ``/say TEXT`` (make the assistant say TEXT: the live evaluation uses it to have
the assistant talk before the user's audio overlaps it). Handoffs go to the background agent
(``background_agent.link.AgentLink``, workspace: the current folder); ``/tasks``, ``/cancel
[ID]`` and ``/redirect [ID] TEXT`` act on its tasks, and so does saying or typing "cancel the
task" or "tell the agent to ...".

Every thread started here is named and joined in order on the way out (``Composition.close``):
the hearing thread, the voice thread, the espeak child, the model thread; the stdin reader is
a daemon (see ``run_live``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from app.composition import AudioChoice, compose, watch_screen
from background_agent.link import AgentLink
from engine.config import ScreenSettings, VoiceSettings
from engine.core.channels import Channel
from engine.core.clock import RealClock
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    PermissionEvent,
    SpeechStart,
    SpeechStop,
    TaskEvent,
    TimelineEvent,
    VadEvent,
)
from engine.core.frames import ControlEvent, ControlKind, TypedText
from engine.core.policy import PolicyConfig
from engine.core.proactivity import ProactivityConfig
from engine.hearing.listener import MicLevel
from engine.live import LiveStats
from engine.model.load import ModelConfig

__all__ = ["AudioChoice", "LevelMeter", "describe", "meter_line", "run_live"]

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
        case TaskEvent():
            return f"{ev.t:7.1f}  task    {ev.task} {ev.status} {ev.summary}"
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
    watch: ScreenSettings | None = None,
    proactive: ProactivityConfig | None = None,
) -> LiveStats:
    """Run until ``/quit``, end of input, or ``duration`` seconds; returns the counters.

    ``listen`` is the user's own switch (``tandem run --mic``): it turns the microphone on for
    this session through the gate, which still refuses it while muted or killed. ``audio``
    picks the devices and the level meter; ``policy`` and ``voice`` come from the typed
    configuration (``engine.config``: command line > environment > file > defaults). The
    parts are built by ``app.composition.compose``, the same composition the desktop app uses.
    ``watch`` (``tandem run --screen`` or ``screen.enabled``; off by default until the
    first-run consent exists) starts the screen sense under a lease from the same gate, and
    ``proactive`` is how readily Tandem then speaks up about what it sees.

    Raises:
        AudioDeviceError: a device the user chose by name or index is not there (before
            anything is loaded; the message lists the devices there are).
    """
    links: list[AgentLink] = []  # the background agent, once the engine exists
    printer = _printer(out)

    def sink(ev: TimelineEvent) -> None:
        printer(ev)
        if links and isinstance(ev, AsrEvent) and ev.kind == "final":
            note = links[0].hear(ev.text)  # "cancel the task", "tell the agent to ..."
            if note:
                out(note)

    live = await compose(
        cfg,
        out,
        sink,
        duration=duration,
        listen=listen,
        audio=audio,
        policy=policy,
        voice=voice,
        ready_hint=f" - type a line, {QUIT} to stop",
    )
    clock, inbox, engine = live.clock, live.inbox, live.engine
    link = AgentLink(engine, live.gate, Path.cwd(), clock=clock.now)
    links.append(link)
    if proactive is not None:
        engine.seeing.config = proactive
    watching = watch_screen(live, watch, out) if watch is not None else None
    meter = LevelMeter(live.levels) if live.levels is not None else None
    stopped = threading.Event()

    def read_stdin() -> None:
        for raw in stdin:
            if stopped.is_set():
                return
            text = raw.strip()
            if text == QUIT:
                break
            answer = link.command(text) if text.startswith("/") else link.hear(text)
            if answer is not None:
                out(answer)
                if text.startswith("/"):
                    continue
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
    meter_task = (
        asyncio.create_task(_meter(meter, clock, out), name="tandem-meter") if meter else None
    )
    try:
        stats = await live.driver.run()
    finally:
        stopped.set()
        if meter_task is not None:
            meter_task.cancel()
        if watching is not None:
            watching.close()
        link.close()
        live.close()
    out(f"stopped after {stats.ticks} ticks ({stats.skipped_ticks} skipped)")
    return stats


async def _meter(meter: LevelMeter, clock: RealClock, out: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(METER_S)
        line = meter.poll(clock.now())
        if line is not None:
            out(line)


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
