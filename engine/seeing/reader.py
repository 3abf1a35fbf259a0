"""The OCR thread: changed regions in, redacted screen text and cues out, off the tick thread.

The grabber submits a ``ReadJob`` per changed frame; the slot holds one job (latest only: a
job not started when a newer one arrives is dropped as stale), so OCR never queues up behind
a scrolling terminal. Each job's regions are read at full resolution, redacted, merged into
``ScreenState``, and what is new becomes one compact ``ScreenText`` (a few words, not the
screen) plus a ``ScreenCue`` per failure or risk. Replay calls ``process`` directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.core.cpu import heavy
from engine.core.frames import ScreenCue, ScreenText
from engine.seeing import cues as cue_detectors
from engine.seeing.ocr import Ocr, OcrError, OcrLine
from engine.seeing.redact import redact_lines
from engine.seeing.regions import Box, Frame, mask
from engine.seeing.state import ScreenState

log = logging.getLogger(__name__)

MAX_READ_REGIONS = 4
"""Regions read per job, largest first (the rest wait for the next change)."""
MIN_REGION_PX = 10
"""A changed region lower than this cannot hold a line of text (a cursor blink)."""
LAST_LINE_CHARS = 60
"""How much of the newest line a screen summary quotes."""
OCR_DUTY = 0.5
"""OCR uses at most this share of the OCR thread's time (so of one core): after a job that
took ``d`` seconds it rests ``d * (1 / OCR_DUTY - 1)``; jobs arriving meanwhile replace each
other (only the newest screen is read). Bounds a scrolling terminal's cost."""

Emit = Callable[[ScreenText | ScreenCue], object]


@dataclass(frozen=True, slots=True)
class ReadJob:
    """One changed frame to read."""

    t: float
    app: str
    frame: Frame
    regions: tuple[Box, ...]


def summarize(new_lines: list[str]) -> str:
    """A few words for the model: how much is new and the newest line, capped."""
    shown = [ln for ln in new_lines if ln.strip()]
    if not shown:
        return ""
    last = " ".join(shown[-1].split())
    if len(last) > LAST_LINE_CHARS:
        last = last[: LAST_LINE_CHARS - 1] + "…"
    n = len(shown)
    return f"+{n} line{'s' if n != 1 else ''}, last: {last}"


class ScreenReader:
    """Reads jobs on its own thread (``start``/``close``) or synchronously (``process``)."""

    def __init__(self, ocr: Ocr, state: ScreenState, emit: Emit) -> None:
        self.ocr = ocr
        self.state = state
        self.emit = emit
        self.dropped = 0
        """Jobs replaced before they started (stale work dropped)."""
        self._slot: ReadJob | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def process(self, job: ReadJob) -> list[ScreenText | ScreenCue]:
        """Read one job and return its frames (the thread emits them)."""
        regions = sorted(
            (r for r in job.regions if r.h >= MIN_REGION_PX and r.w >= MIN_REGION_PX),
            key=lambda r: r.area,
            reverse=True,
        )[:MAX_READ_REGIONS]
        lines: list[OcrLine] = []
        sensitive: list[Box] = []
        for region in regions:
            try:
                with heavy():  # tesseract's process computes on a core the model wants
                    raw = self.ocr.read(job.frame, region)
            except OcrError as e:
                log.warning("screen: %s", e)
                continue
            clean = redact_lines(line.text for line in raw)
            for text, line in zip(clean, raw, strict=True):
                lines.append(OcrLine(text, line.box))
                if text != line.text:
                    sensitive.append(line.box)
        pixels = None
        if regions:  # kept for a vision model: with the secrets OCR found blacked out
            r = regions[0]
            local = [Box(b.x - r.x, b.y - r.y, b.w, b.h) for b in sensitive]
            pixels = mask(r.crop(job.frame).copy(), local)
        new = self.state.update(job.t, job.app, regions, lines, pixels)
        out: list[ScreenText | ScreenCue] = []
        summary = summarize(new)
        if summary:
            out.append(ScreenText(job.t, job.app, summary, len(new)))
        for cue in cue_detectors.detect(lines):
            box = (cue.box.x, cue.box.y, cue.box.w, cue.box.h)
            out.append(ScreenCue(job.t, cue.kind.value, cue.summary, cue.key, box, job.app))
        return out

    def submit(self, job: ReadJob) -> None:
        """Hand a job to the thread; a job still waiting is replaced (stale)."""
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = job
            self._cond.notify()

    def start(self) -> None:
        """Start the OCR thread."""
        self._thread = threading.Thread(target=self._run, name="tandem-ocr", daemon=False)
        self._thread.start()

    def close(self) -> None:
        """Stop after the job in hand and join the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def idle(self) -> bool:
        """True when no job waits (tests and the bench poll it)."""
        with self._cond:
            return self._slot is None and not self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._slot = self._slot, None
                if job is None:
                    continue
                self._busy = True
            started = time.monotonic()
            try:
                for frame in self.process(job):
                    self.emit(frame)
            finally:
                rest = (time.monotonic() - started) * (1.0 / OCR_DUTY - 1.0)
                with self._cond:
                    self._busy = False
                    self._cond.wait_for(lambda: self._closed, timeout=rest)
