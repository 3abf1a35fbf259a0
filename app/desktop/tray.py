"""The tray icon: Tandem's state at a glance, click to mute, and the kill switch in its menu.

A left click (``Trigger``) toggles the microphone: the bridge posts MUTE/UNMUTE, the engine has
the gate revoke the lease (capture stops before the next block) or re-grant it. The menu shows
the window, mutes, holds the kill switch (every sense revoked at once, every pending ask
cancelled) and quits. The tray needs a host (a panel, or fluxbox's slit); without one
``available`` is False and the window is the only way in.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.desktop.bridge import Bridge
from app.desktop.icons import state_icon
from app.desktop.state import TOOLTIPS, StateTracker, TrayState


class Tray(QObject):
    """The system tray icon and its menu."""

    show_window = Signal()
    quit_requested = Signal()

    def __init__(self, bridge: Bridge, tracker: StateTracker) -> None:
        super().__init__()
        self.bridge, self.tracker = bridge, tracker
        self.icon = QSystemTrayIcon()
        self.icon.setObjectName("tandem-tray")
        self.menu = QMenu()
        self.show_action = QAction("Show Tandem", self.menu)
        self.mute_action = QAction("Mute microphone", self.menu, checkable=True)
        self.kill_action = QAction("Kill switch: stop every sense", self.menu, checkable=True)
        self.quit_action = QAction("Quit", self.menu)
        for action in (self.show_action, self.mute_action, self.kill_action, self.quit_action):
            self.menu.addAction(action)
        self.icon.setContextMenu(self.menu)
        self.show_action.triggered.connect(self.show_window)
        self.mute_action.triggered.connect(self.bridge.set_muted)
        self.kill_action.triggered.connect(self.bridge.kill_switch)
        self.quit_action.triggered.connect(self.quit_requested)
        self.icon.activated.connect(self._activated)
        self.bridge.muted.connect(self._muted)
        self.bridge.killed_changed.connect(self._killed)
        self.state = TrayState.STARTING
        self.refresh()

    @property
    def available(self) -> bool:
        """True when the desktop hosts tray icons."""
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        """Put the icon in the tray."""
        self.icon.show()

    def hide(self) -> None:
        """Take the icon out of the tray."""
        self.icon.hide()

    def refresh(self) -> None:
        """Show the tracker's state (icon and tooltip)."""
        state = self.tracker.state
        if state is not self.state or self.icon.icon().isNull():
            self.state = state
            self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(TOOLTIPS[state])

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason is QSystemTrayIcon.ActivationReason.Trigger:
            self.bridge.toggle_mute()

    def _muted(self, on: bool) -> None:
        self.mute_action.setChecked(on)
        self.tracker.set_muted(on)
        self.refresh()

    def _killed(self, on: bool) -> None:
        self.kill_action.setChecked(on)
        self.tracker.killed = on
        self.refresh()
