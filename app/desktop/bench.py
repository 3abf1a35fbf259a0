"""``tandem bench ui``: the longest stall of the Qt event loop while Tandem talks.

The real window (on the display there is, else offscreen) runs the real engine on its own
thread, with the embedded model unless ``fake_model``. A question is typed to it every
``ASK_EVERY_S`` so the model, the speech and the timeline are busy the whole time. A timer
fires every ``PROBE_MS``; a stall is how much later than due it fired. The settings and audit
log are a temporary folder's, so the user's own are not touched.

The screen sense is on when there is a display (``screen`` in the result says whether it
could be captured). The background agent is left out: a handoff would start its own model
server, which is the agent's cost, not the window's.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

PROBE_MS = 5
LOAD_S = 600
ASK_EVERY_S = 8.0
QUESTIONS = (
    "How do I reverse a list in Python?",
    "What does git rebase do?",
    "Why would a unit test be flaky?",
    "What is a race condition?",
)


def run_bench(seconds: float = 120.0, *, fake_model: bool = False) -> dict[str, Any]:
    """Run the window for ``seconds`` and measure the event loop (see the module docstring)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="tandem-bench-ui-") as home:
        os.environ["TANDEM_CONFIG_DIR"] = os.path.join(home, "config")
        os.environ["TANDEM_DATA_DIR"] = os.path.join(home, "data")
        return _measure(seconds, fake_model)


def _measure(seconds: float, fake_model: bool) -> dict[str, Any]:
    from app.desktop import firstrun
    from app.desktop.main import Desktop
    from engine.senses import screen

    app = QApplication.instance() or QApplication(["tandem-bench-ui"])
    firstrun.save_answer(microphone=False, screen=True)
    session = None
    if fake_model:
        from engine.model.fake_backend import FakeBackend
        from engine.model.session import ModelSession

        def session() -> ModelSession:
            return ModelSession(FakeBackend())

    desktop = Desktop(session=session, hotkey=False, agent=False)
    events = 0

    def count(_ev: object) -> None:
        nonlocal events
        events += 1

    desktop.window.event_shown.connect(count)
    stalls: list[float] = []
    clock = QElapsedTimer()
    last = [0]
    probe = QTimer()
    probe.setInterval(PROBE_MS)

    def tick() -> None:
        now = clock.elapsed()
        stalls.append(max(0, now - last[0] - PROBE_MS))
        last[0] = now

    probe.timeout.connect(tick)
    ask = QTimer()
    ask.setInterval(int(ASK_EVERY_S * 1000))
    asked = [0]

    def question() -> None:
        desktop.bridge.type_text(QUESTIONS[asked[0] % len(QUESTIONS)])
        asked[0] += 1

    ask.timeout.connect(question)
    ready = [False]

    def on_ready() -> None:  # the model is loaded: start talking and measuring
        ready[0] = True
        clock.start()
        last[0] = 0
        probe.start()
        ask.start()
        question()
        QTimer.singleShot(int(seconds * 1000), app.quit)

    desktop.bridge.ready.connect(on_ready)
    desktop.bridge.stopped.connect(lambda _why: app.quit())
    QTimer.singleShot(int((LOAD_S + seconds) * 1000), app.quit)  # a model that never loads
    desktop.start()
    app.exec()
    probe.stop()
    ask.stop()
    turns = len(desktop.window.conversation.texts())
    desktop.close()
    ordered = sorted(stalls) or [0.0]
    return {
        "seconds": seconds,
        "model": "fake" if fake_model else "embedded",
        "screen": screen.probe().available,
        "platform": QApplication.platformName(),
        "probe_ms": PROBE_MS,
        "samples": len(stalls),
        "max_stall_ms": float(ordered[-1]),
        "p99_stall_ms": float(ordered[int(0.99 * (len(ordered) - 1))]),
        "median_stall_ms": float(statistics.median(ordered)),
        "events": events,
        "turns": turns,
        "engine_ready": ready[0],
    }
