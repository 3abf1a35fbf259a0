"""``tandem bench capture``: what seeing costs, on a real (virtual) 1080p X11 desktop.

Starts Xvfb (1920x1080) with fluxbox and an xterm, runs the real grabber thread at the
default rate with change detection and tesseract OCR of changed regions on the OCR thread,
and measures CPU time over a fixed wall time, twice: an idle screen (the xterm shows a
prompt and nothing moves) and a busy one (the xterm scrolls a build log, a line every
``BUSY_LINE_S``). Shares are of one core:

- ``tandem``: this process (grabber, change detection, OCR thread, Python);
- ``ocr``: the tesseract children (reaped, so counted in this process's children times);
- ``x_server``: Xvfb (the compositor's side of a grab, paid by the desktop, reported apart).

Needs Xvfb, fluxbox, xterm and tesseract (installers/debian-packages.txt).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from engine.eval.desktop import VirtualDesktop
from engine.seeing.ocr import TesseractOcr
from engine.seeing.reader import ScreenReader
from engine.seeing.state import ScreenState
from engine.senses.focus import X11Focus
from engine.senses.screen import CaptureSettings, ScreenSense
from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope, Sense

BUSY_LINE_S = 0.05
"""The busy screen scrolls 20 lines a second (a fast build log)."""
SCROLL = (
    "i=0; while :; do i=$((i+1)); "
    'echo "[$i] compiling src/module_$i.c ... ok ($((i*7%100)) warnings suppressed)"; '
    f"sleep {BUSY_LINE_S}; done"
)


@dataclass(frozen=True, slots=True)
class Share:
    """CPU use over one run, as shares of one core."""

    seconds: float
    total: float
    tandem: float
    ocr: float
    x_server: float
    grabs_per_s: float
    changed_per_s: float
    ocr_jobs_dropped: int


def measure(desk: VirtualDesktop, seconds: float) -> Share:
    """Run the grabber and OCR thread for ``seconds`` on the desktop as it is now."""
    gate = Gate((Rule("bench:screen", Decision.ALLOW, sense=Sense.SCREEN, scope=Scope.SESSION),))
    reader = ScreenReader(TesseractOcr(), ScreenState(), lambda _frame: None)
    sense = ScreenSense(
        gate,
        reader.submit,
        lambda _ev: None,
        lambda _frame: None,
        time.monotonic,
        lambda: X11Focus(desk.display),
        CaptureSettings(display=desk.display),
    )
    xvfb = psutil.Process(desk.xvfb_pid)
    reader.start()
    try:
        sense.start()
        time.sleep(1.0)  # settle: the first full-screen read is not the steady state
        x0, t0, c0 = _x(xvfb), time.process_time(), _children()
        g0, ch0 = sense.stats.grabs, sense.stats.changed
        wall0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        tandem, ocr, x_server = time.process_time() - t0, _children() - c0, _x(xvfb) - x0
        grabs, changed = sense.stats.grabs - g0, sense.stats.changed - ch0
    finally:
        sense.stop()
        reader.close()
    if sense.error:
        raise RuntimeError(sense.error)
    return Share(
        seconds=round(wall, 2),
        total=round((tandem + ocr) / wall, 4),
        tandem=round(tandem / wall, 4),
        ocr=round(ocr / wall, 4),
        x_server=round(x_server / wall, 4),
        grabs_per_s=round(grabs / wall, 2),
        changed_per_s=round(changed / wall, 2),
        ocr_jobs_dropped=reader.dropped,
    )


def run(seconds: float = 10.0) -> dict[str, Any]:
    """Idle, then busy; the JSON of ``tandem bench capture --json``."""
    with_desk = VirtualDesktop()
    try:
        term = with_desk.xterm(["sh", "-c", "echo 'user@box:~/project$ '; sleep 3600"])
        with_desk.wait_window(term.pid)
        with_desk.activate(term.pid)
        idle = measure(with_desk, seconds)
        term.stop()
        busy_term = with_desk.xterm(["sh", "-c", SCROLL])
        with_desk.wait_window(busy_term.pid)
        with_desk.activate(busy_term.pid)
        busy = measure(with_desk, seconds)
    finally:
        with_desk.close()
    return {
        "screen": "1920x1080 Xvfb + fluxbox, one xterm",
        "rate_fps_max": CaptureSettings().max_fps,
        "cpu_count": os.cpu_count(),
        "idle": asdict(idle),
        "busy": asdict(busy),
        "note": "shares of one core; total = tandem + ocr (x_server is the X server's side)",
    }


def _children() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _x(proc: psutil.Process) -> float:
    c = proc.cpu_times()
    return float(c.user + c.system)
