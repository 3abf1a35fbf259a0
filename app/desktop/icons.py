"""The tray state icons (SVG files in ``assets/icons``, shipped as package data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon

from app.desktop.state import TrayState


def icon_path(name: str) -> Path:
    """The file of one icon (``listening``, ``muted``, ..., ``tandem``)."""
    return Path(str(resources.files("assets") / "icons" / f"{name}.svg"))


def state_icon(state: TrayState) -> QIcon:
    """The icon of a tray state."""
    return QIcon(str(icon_path(state.value)))


def app_icon() -> QIcon:
    """Tandem's own icon."""
    return QIcon(str(icon_path("tandem")))
