"""``tandem app`` (and ``make run``): the desktop companion, put together.

``Desktop`` owns the bridge, the window, the tray, the hotkey and the engine thread. It starts
the engine once the first run has been answered (nothing is on before that) with the
microphone on only if the user allowed it. ``close`` stops everything in order and joins every
thread it started: the hotkey listener, the download, the engine (which joins its own parts),
the bridge's worker.

The background agent is linked on the engine thread (``app.desktop.runtime``); the tasks
panel follows its task events, cancels through its task manager and undoes through its
checkpoints (``background_agent.checkpoints.undo``).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.desktop import firstrun
from app.desktop.bridge import Bridge
from app.desktop.hotkey import GlobalHotkey
from app.desktop.icons import app_icon
from app.desktop.runtime import EngineOptions, EngineThread
from app.desktop.state import StateTracker
from app.desktop.tray import Tray
from app.desktop.window import MainWindow
from background_agent import checkpoints
from engine import config
from engine.core import events
from engine.model.session import ModelSession

log = logging.getLogger(__name__)
WAKE_MS = 200


class Desktop:
    """The whole app (see the module docstring)."""

    def __init__(
        self,
        cfg: config.Config | None = None,
        *,
        session: Callable[[], ModelSession] | None = None,
        hotkey: bool = True,
        workspace: Path | None = None,
        agent: bool = True,
    ) -> None:
        self.cfg = cfg or config.Config()
        self.session = session
        self.workspace = workspace or Path.cwd()
        self.agent = agent
        self.bridge = Bridge()
        self.tracker = StateTracker()
        self.window = MainWindow(
            self.bridge,
            self.tracker,
            first_run=not firstrun.done(),
            undo=checkpoints.undo,
            workspace=self.workspace,
        )
        self.tray = Tray(self.bridge, self.tracker)
        self.window.event_shown.connect(lambda _ev: self.tray.refresh())
        self.bridge.ready.connect(self.tray.refresh)
        self.tray.show_window.connect(self.show)
        self.tray.quit_requested.connect(self.quit)
        self.window.close_requested.connect(self.quit)
        self.window.first_run.answered.connect(self._answered)
        self.hotkey = GlobalHotkey() if hotkey else None
        if self.hotkey is not None:
            self.hotkey.pressed.connect(self.bridge.toggle_mute)
        self.engine: EngineThread | None = None
        self._closed = False

    def start(self, *, show: bool = True) -> None:
        """Show the window (or only the tray), start the hotkey and, after the first run, the
        engine."""
        if self.tray.available:
            self.tray.show()
            self.window.hide_on_close = True
        if show or not self.tray.available or not firstrun.done():  # the first run must be seen
            self.show()
        if self.hotkey is not None:
            why = self.hotkey.start()
            if why:
                self.window.status.setText(why)
        if firstrun.done():
            self._start_engine(firstrun.consent().get("microphone", False))

    def show(self) -> None:
        """Bring the window up."""
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def _answered(self, microphone: bool, screen: bool) -> None:
        self._start_engine(microphone)

    def _start_engine(self, listen: bool) -> None:
        if self.engine is not None:
            return
        consent = firstrun.consent()
        opts = EngineOptions(
            config=self.cfg,
            listen=listen,
            watch=consent.get("screen", False),
            session=self.session,
            workspace=self.workspace,
            agent=self.agent,
        )
        self.engine = EngineThread(self.bridge, opts)
        self.engine.start()

    def quit(self) -> None:
        """Close everything and leave the Qt event loop."""
        self.close()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    def close(self) -> None:
        """Stop and join everything (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.hotkey is not None:
            self.hotkey.stop()
        self.window.settings.close_download()
        if self.engine is not None:
            self.engine.stop()
        self.bridge.close()
        self.tray.hide()
        self.window.hide_on_close = False
        self.window.hide()


class TimelineFile:
    """``tandem app --timeline FILE``: every event the window showed, one JSON line each.

    Opt-in (the file holds the transcript and Tandem's words, as a replay's timeline does);
    the format is ``docs/EVAL_FORMATS.md``'s, and a kind this version does not know is written
    with its time, lane and kind only.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, ev: object) -> None:
        """Append one event (Qt thread; line-buffered, so a reader sees whole lines)."""
        try:
            obj = events.to_json(ev)  # type: ignore[arg-type]
        except (AttributeError, TypeError):
            obj = {
                "t": round(float(getattr(ev, "t", 0.0)), 3),
                "lane": str(getattr(ev, "lane", "")),
                "kind": str(getattr(ev, "kind", "")),
            }
        self._file.write(json.dumps(obj) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def run_app(
    argv: Sequence[str] = (), *, minimized: bool = False, timeline: Path | None = None
) -> int:
    """Run the desktop app until the user quits (or SIGINT/SIGTERM); returns the exit status."""
    loaded = config.load()
    for line in loaded.lines():
        print(f"tandem: warning: {line}", file=sys.stderr)
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    assert isinstance(app, QApplication)
    app.setApplicationName("Tandem")
    app.setDesktopFileName("tandem")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)
    desktop = Desktop(loaded.config)
    out = TimelineFile(timeline) if timeline is not None else None
    if out is not None:
        desktop.window.event_shown.connect(out.write)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    wake = QTimer()  # Python runs signal handlers only when it gets control: give it some
    wake.start(WAKE_MS)
    wake.timeout.connect(lambda: None)
    desktop.start(show=not minimized)
    app.aboutToQuit.connect(desktop.close)
    try:
        return app.exec()
    finally:
        desktop.close()
        if out is not None:
            out.close()
