"""The main window: the timeline on top, then the conversation, tasks, permissions and settings.

One slot (``on_event``) receives every timeline event from the bridge (on the Qt thread) and
hands it to each panel and to the tray state. The first run's page stands in front of all of
it until the user has answered.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolBar,
)

from app.desktop.bridge import Bridge
from app.desktop.conversation import ConversationPanel
from app.desktop.firstrun import FirstRunPage
from app.desktop.icons import app_icon
from app.desktop.permissions_panel import PermissionsPanel
from app.desktop.settings_panel import SettingsPanel
from app.desktop.state import StateTracker
from app.desktop.tasks import TasksPanel, Undo
from app.desktop.timeline import TimelineView


class MainWindow(QMainWindow):
    """See the module docstring."""

    event_shown = Signal(object)
    """Re-emitted after every panel took an event (the tray and the tests follow it)."""
    close_requested = Signal()

    def __init__(
        self,
        bridge: Bridge,
        tracker: StateTracker,
        *,
        first_run: bool,
        undo: Undo | None = None,
        workspace: Path | None = None,
    ) -> None:
        super().__init__()
        self.bridge, self.tracker = bridge, tracker
        self.hide_on_close = False
        self.setWindowTitle("Tandem")
        self.setWindowIcon(app_icon())
        self.resize(1100, 760)
        self.timeline = TimelineView()
        self.conversation = ConversationPanel(bridge)
        self.tasks = TasksPanel(bridge, undo, workspace)
        self.permissions = PermissionsPanel(bridge)
        self.settings = SettingsPanel(bridge)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.conversation, "Conversation")
        self.tabs.addTab(self.tasks, "Background tasks")
        self.tabs.addTab(self.permissions, "Permissions")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.settings)
        self.tabs.addTab(scroll, "Settings")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.timeline)
        split.addWidget(self.tabs)
        split.setSizes([280, 480])
        self.first_run = FirstRunPage()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.first_run)
        self.pages.addWidget(split)
        self.pages.setCurrentIndex(0 if first_run else 1)
        self.setCentralWidget(self.pages)

        bar = QToolBar("Tandem")
        bar.setObjectName("toolbar")
        self.mute = QPushButton("Mute microphone")
        self.mute.setObjectName("mute")
        self.mute.setCheckable(True)
        bar.addWidget(self.mute)
        self.state_label = QLabel("starting")
        self.state_label.setObjectName("state")
        bar.addWidget(self.state_label)
        self.addToolBar(bar)
        self.status = QLabel("")
        self.status.setObjectName("status")
        self.statusBar().addWidget(self.status, 1)

        self.mute.toggled.connect(self._mute_clicked)
        bridge.muted.connect(self._muted)
        bridge.timeline.connect(self.on_event)
        bridge.status.connect(self.status.setText)
        bridge.ready.connect(self._ready)
        bridge.stopped.connect(self._stopped)
        self.first_run.answered.connect(lambda *_: self.pages.setCurrentIndex(1))

    def on_event(self, ev: object) -> None:
        """One timeline event, to every panel (Qt thread)."""
        self.timeline.add(ev)
        self.conversation.add(ev)
        self.tasks.add(ev)
        self.permissions.add(ev)
        self.tracker.add(ev)
        self.state_label.setText(self.tracker.state.value)
        self.event_shown.emit(ev)

    def _mute_clicked(self, on: bool) -> None:
        if on != self.bridge.is_muted:
            self.bridge.set_muted(on)

    def _muted(self, on: bool) -> None:
        self.mute.blockSignals(True)
        self.mute.setChecked(on)
        self.mute.setText("Unmute microphone" if on else "Mute microphone")
        self.mute.blockSignals(False)
        self.tracker.set_muted(on)
        self.state_label.setText(self.tracker.state.value)

    def _ready(self) -> None:
        self.tracker.ready = True
        self.state_label.setText(self.tracker.state.value)

    def _stopped(self, reason: str) -> None:
        self.tracker.ready = False
        self.state_label.setText("stopped")
        if reason:
            self.status.setText(f"engine stopped: {reason}")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """The user closing the window hides it to the tray when there is one; any other close
        (the application quitting: the tray's Quit, SIGTERM, the session ending) goes ahead,
        since Qt cancels a quit when a window refuses to close."""
        if self.hide_on_close and event.spontaneous():
            event.ignore()
            self.hide()
            return
        self.close_requested.emit()
        event.accept()
