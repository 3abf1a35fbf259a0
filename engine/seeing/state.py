"""``ScreenState``: the latest redacted screen text, for whoever may ask.

The OCR thread updates it; the engine (the user asked about the screen), the background agent
and the app read it. It holds text only after redaction, and the last changed region's pixels
(in memory, for a vision model); nothing of it is ever written to disk or logged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.seeing.ocr import OcrLine
from engine.seeing.regions import Box, Frame

MAX_LINES = 400
"""Lines kept (a 1080p screen of terminal text is ~70 lines per window)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the screen showed when last read."""

    t: float
    app: str
    text: str


class ScreenState:
    """Thread-safe latest screen text (lines re-read in a region replace that region's lines)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[OcrLine] = []
        self._t = 0.0
        self._app = ""
        self._region: Frame | None = None

    def update(
        self, t: float, app: str, regions: list[Box], lines: list[OcrLine], pixels: Frame | None
    ) -> list[str]:
        """Replace the text of ``regions`` with ``lines`` (already redacted); returns the lines
        that were not on screen before (what is new to the user)."""
        with self._lock:
            before = {line.text for line in self._lines}
            if app != self._app:
                self._lines = []  # another window: its text is all new
            kept = [ln for ln in self._lines if not any(_overlaps(ln.box, r) for r in regions)]
            self._lines = sorted([*kept, *lines], key=lambda ln: (ln.box.y, ln.box.x))
            del self._lines[:-MAX_LINES]
            self._t, self._app = t, app
            if pixels is not None:
                self._region = pixels
            return [ln.text for ln in lines if ln.text not in before]

    def clear(self) -> None:
        """Forget everything (the lease was revoked: what was seen is not kept)."""
        with self._lock:
            self._lines, self._region, self._app = [], None, ""

    def latest_text(self) -> str:
        """The latest redacted screen text, top to bottom ("" when nothing was read)."""
        with self._lock:
            return "\n".join(line.text for line in self._lines)

    def snapshot(self) -> Snapshot:
        """Time, app and text of the latest read."""
        with self._lock:
            text = "\n".join(line.text for line in self._lines)
            return Snapshot(self._t, self._app, text)

    def latest_region(self) -> Frame | None:
        """The pixels of the last changed region (for a vision model), or None."""
        with self._lock:
            return self._region


def _overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h
