"""Watching the screen live: the grabber thread and the OCR thread, wired to an engine.

``Watching.start`` adds the user's switch as a session rule (``tandem run --screen``, or
``screen.enabled`` in the configuration), then starts the OCR thread and the grabber; the
grabber opens its own lease from the gate (none while an excluded app is in front) and posts
lease changes to the control inbox and focus changes, screen text and cues to the data lane.
The engine reads the latest redacted text through ``state.latest_text``. ``close`` stops and
joins both threads (grabber first, so no new work reaches the reader).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.core.channels import Channel, ControlInbox
from engine.core.frames import ControlEvent, DataFrame
from engine.seeing.ocr import TesseractOcr
from engine.seeing.reader import ScreenReader
from engine.seeing.state import ScreenState
from engine.seeing.vision import Looker
from engine.senses.focus import open_focus
from engine.senses.screen import CaptureSettings, ScreenSense
from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope, Sense

SCREEN_SWITCH = Rule("cli:--screen", Decision.ALLOW, sense=Sense.SCREEN, scope=Scope.SESSION)
"""The user's own switch for this session (excluded apps still win: deny > allow)."""


@dataclass(slots=True)
class Watching:
    """The live screen: its state, reader and grabber."""

    state: ScreenState
    reader: ScreenReader
    sense: ScreenSense
    looker: Looker | None = None
    """Asks a vision model when one is configured (the caller sets it)."""

    @classmethod
    def start(
        cls,
        gate: Gate,
        inbox: ControlInbox[ControlEvent],
        data: Channel[DataFrame],
        now: Callable[[], float],
        settings: CaptureSettings | None = None,
    ) -> Watching:
        """Start watching (see the module docstring); ``sense.error`` says why it could not."""
        gate.add_rule(SCREEN_SWITCH)
        state = ScreenState()
        reader = ScreenReader(TesseractOcr(), state, data.put)
        display = settings.display if settings is not None else None
        sense = ScreenSense(
            gate,
            reader.submit,
            inbox.put,
            data.put,
            now,
            lambda: open_focus(display),
            settings,
            on_revoked=state.clear,
        )
        reader.start()
        sense.start()
        return cls(state, reader, sense)

    def close(self) -> None:
        """Stop the grabber, then the reader and the looker; all joined."""
        self.sense.stop()
        self.reader.close()
        if self.looker is not None:
            self.looker.close()
