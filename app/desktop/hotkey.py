"""The global push-to-mute hotkey (``Ctrl+Alt+M``), wherever the focus is.

On X11 ``pynput`` grabs the key combination on the X server (its listener thread calls back
here; the callback only emits a queued signal, so the mute itself happens on the Qt thread).
Wayland gives applications no global key grabs: there the route is the XDG desktop portal's
``org.freedesktop.portal.GlobalShortcuts`` (GNOME 48+, KDE Plasma 5.27+): ``CreateSession``,
``BindShortcuts`` with the id ``toggle-mute`` and the preferred trigger ``CTRL+ALT+m``, then the
``Activated`` signal. That needs a D-Bus session and the user's approval in the portal's own
dialog; until it is wired, ``start`` says the hotkey is unavailable and the tray click and
the window's mute button remain.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

log = logging.getLogger(__name__)
HOTKEY = "<ctrl>+<alt>+m"
"""pynput's spelling of the push-to-mute combination."""


class GlobalHotkey(QObject):
    """Emits ``pressed`` on the Qt thread when the hotkey is pressed anywhere."""

    pressed = Signal()
    _fired = Signal()

    def __init__(self, combination: str = HOTKEY) -> None:
        super().__init__()
        self.combination = combination
        self._listener: Any = None
        self._fired.connect(self.pressed, Qt.ConnectionType.QueuedConnection)

    def start(self) -> str | None:
        """Start listening; returns None, or one line saying why there is no hotkey."""
        if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
            return "global hotkey: Wayland has no key grabs (the GlobalShortcuts portal is next)"
        if not os.environ.get("DISPLAY"):
            return "global hotkey: no X display"
        try:
            from pynput import keyboard
        except ImportError as e:  # pynput picks its backend at import: no X server, no backend
            return f"global hotkey: unavailable ({e})"
        try:
            self._listener = keyboard.GlobalHotKeys({self.combination: self._fired.emit})
            self._listener.start()
            self._listener.wait()
        except Exception as e:  # Xlib raises its own types: one line for the user
            self._listener = None
            return f"global hotkey: unavailable ({type(e).__name__}: {e})"
        return None

    @property
    def active(self) -> bool:
        """True while the key grab is in place."""
        return self._listener is not None and self._listener.running

    def stop(self) -> None:
        """Release the grab and join the listener thread."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            listener.join(5.0)
