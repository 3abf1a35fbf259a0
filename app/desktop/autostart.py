"""Start at login: the XDG autostart entry (``$XDG_CONFIG_HOME/autostart/tandem.desktop``).

The same entry ``installers/linux/install.sh`` writes; macOS (a LaunchAgent) and Windows (the
Startup folder) are the bundles' business and are not handled here.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

FILE_NAME = "tandem.desktop"


def autostart_path() -> Path:
    """Where the autostart entry lives."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / FILE_NAME


def entry(command: str | None = None) -> str:
    """The desktop entry that starts the app (by default with this Python)."""
    exec_line = command or f"{shlex.quote(sys.executable)} -m app app --minimized"
    return (
        "[Desktop Entry]\nType=Application\nName=Tandem\n"
        "Comment=Pair-programming companion (starts in the tray)\n"
        f"Exec={exec_line}\nIcon=tandem\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
    )


def enabled() -> bool:
    """True when Tandem starts at login."""
    return autostart_path().is_file()


def set_enabled(on: bool) -> Path:
    """Write or remove the entry; returns its path."""
    path = autostart_path()
    if on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry(), encoding="utf-8")
    else:
        path.unlink(missing_ok=True)
    return path
