"""The engine's own thread for the desktop app: the shared composition on an asyncio loop.

``EngineThread`` runs ``app.composition.compose`` and the live driver on a thread named
``tandem-engine``, with the background agent linked (``background_agent.link.AgentLink``:
handoffs become tasks, task updates come back to the timeline) and, when the first run
allowed it, the screen sense; the bridge receives the timeline, the status lines, the
composition and the agent's task manager.
``stop()`` posts ``SHUTDOWN`` and joins the thread (which closes and joins every part first).
A composition that fails (a corrupt model, a missing device) ends the thread with a one-line
reason on ``Bridge.stopped``; no traceback reaches the user.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.composition import AudioChoice, Composition, compose, watch_screen
from app.desktop.bridge import Bridge
from background_agent.link import AgentLink
from engine import config
from engine.core.events import AsrEvent
from engine.errors import EngineError
from engine.model.session import ModelSession
from permissions.errors import PermissionsError
from permissions.model import AppContext

log = logging.getLogger(__name__)
DESKTOP = AppContext("tandem", "desktop")
JOIN_S = 30.0
"""How long ``stop`` waits for the engine thread (model and voice threads join inside it)."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What the desktop app starts the engine with."""

    config: config.Config = field(default_factory=config.Config)
    listen: bool = False
    """Open the microphone (the first run's answer; the gate still decides)."""
    watch: bool = False
    """Watch the screen (the first run's answer; the gate still decides, per app)."""
    levels: bool = True
    session: Callable[[], ModelSession] | None = None
    """A model session factory (tests: the scripted fake); None: ``config.model``."""
    workspace: Path = field(default_factory=Path.cwd)
    """Where handoffs to the background agent work."""
    agent: bool = True
    """Link the background agent (``tandem bench ui`` leaves it out: it measures the window)."""


class EngineThread:
    """The engine on its own thread, connected to one bridge."""

    def __init__(self, bridge: Bridge, options: EngineOptions) -> None:
        self.bridge, self.options = bridge, options
        self._thread = threading.Thread(target=self._run, name="tandem-engine")
        self._stop_asked = threading.Event()
        self._link: AgentLink | None = None

    def start(self) -> None:
        """Start composing (model load, senses) in the background."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the engine thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = JOIN_S) -> None:
        """Shut the engine down and join its thread."""
        self._stop_asked.set()
        self.bridge.shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        reason = ""
        try:
            asyncio.run(self._main())
        except (EngineError, PermissionsError, OSError) as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            log.warning("engine stopped: %s", type(e).__name__)
        finally:
            self.bridge.detach(reason)

    async def _main(self) -> None:
        cfg, opts = self.options.config, self.options
        audio = AudioChoice(
            mic=config.device_choice(cfg.devices.mic),
            speaker=config.device_choice(cfg.devices.speaker),
            levels=opts.levels,
        )
        live: Composition = await compose(
            config.model_config(cfg),
            self.bridge.say,
            self._sink,
            listen=opts.listen,
            audio=audio,
            policy=config.policy_config(cfg),
            voice=cfg.voice,
            broker=self.bridge.broker,
            mic_grant=None,
            app=DESKTOP,
            session=opts.session,
            mic_off_hint="off - switch it on in the permission panel",
            ready_hint=" - ready",
        )
        link = (
            AgentLink(live.engine, live.gate, opts.workspace, clock=live.clock.now)
            if opts.agent
            else None
        )
        self._link = link
        watching = watch_screen(live, cfg.screen, self.bridge.say) if opts.watch else None
        try:
            self.bridge.tasks = link.tasks if link is not None else None
            self.bridge.attach(live)
            if self._stop_asked.is_set():  # closed while the model was loading
                self.bridge.shutdown()
            await live.driver.run()
        finally:
            self.bridge.tasks = None
            if watching is not None:
                watching.close()
            if link is not None:
                link.close()
            live.close()

    def _sink(self, ev: object) -> None:
        """The engine's sink (engine thread): to the window, and what the user says about a
        running task ("cancel the task", "tell the agent to ...") to the agent."""
        self.bridge.sink(ev)
        link = self._link
        if link is not None and isinstance(ev, AsrEvent) and ev.kind == "final":
            note = link.hear(ev.text)
            if note:
                self.bridge.say(note)
