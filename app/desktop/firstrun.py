"""The first run: say plainly what Tandem sees and hears, and ask for the senses once.

Nothing is on before the user answers: the engine is not even started. The answer becomes
ordinary permission rules in the user's settings file (``firstrun:microphone``,
``firstrun:screen``: allow when ticked, deny when not), which the permission panel shows and
can remove, and a marker file says the question was asked. Later runs start at once.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QVBoxLayout, QWidget

from permissions import settings
from permissions.errors import SettingsError
from permissions.model import Decision, Rule, Sense

MARKER = "firstrun.json"
EXPLANATION = (
    "<h2>Tandem is a pair programmer that listens, watches and talks.</h2>"
    "<p><b>What it hears:</b> with the microphone on, what you say is turned into text on this"
    " computer (Whisper). The audio is never written to disk and never leaves the machine"
    " unless you point Tandem at a remote server.</p>"
    "<p><b>What it sees:</b> with the screen on, Tandem looks at what changed on your screen"
    " and reads the text in it, on this computer. Apps you exclude (password managers are"
    " excluded already) are never captured.</p>"
    "<p><b>What it does:</b> it answers out loud, and it can hand work to a background agent;"
    " every tool the agent uses asks you first, in the permission panel.</p>"
    "<p>You can mute the microphone from the tray (a click, or Ctrl+Alt+M), and the kill switch"
    " in the tray menu turns every sense off at once. Every decision is in the audit log.</p>"
)


def marker_path() -> Path:
    """The file that says the first run's question was answered."""
    return settings.config_dir() / MARKER


def done() -> bool:
    """True once the user answered the first run."""
    return marker_path().is_file()


def consent() -> dict[str, bool]:
    """What the user answered (empty before the first run)."""
    try:
        data = json.loads(marker_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    senses = data.get("senses") if isinstance(data, dict) else None
    return (
        {k: v for k, v in senses.items() if isinstance(v, bool)} if isinstance(senses, dict) else {}
    )


def save_answer(microphone: bool, screen: bool) -> None:
    """Write the answer as rules (atomically) and the marker.

    Raises:
        SettingsError: the settings file has a problem (nothing was written: fix it first).
    """
    loaded = settings.load()
    if loaded.problem and loaded.path.exists():
        raise SettingsError(f"the settings file has a problem, fix it first: {loaded.problem}")
    mine = {"firstrun:microphone", "firstrun:screen"}
    kept = tuple(r for r in loaded.settings.rules if r.id not in mine)
    added = tuple(
        Rule(f"firstrun:{sense.value}", Decision.ALLOW if on else Decision.DENY, sense=sense)
        for sense, on in ((Sense.MICROPHONE, microphone), (Sense.SCREEN, screen))
    )
    settings.save(replace(loaded.settings, rules=kept + added))
    doc = {"schema": 1, "senses": {"microphone": microphone, "screen": screen}}
    settings.atomic_write(marker_path(), (json.dumps(doc) + "\n").encode(), prefix=".firstrun.")


class FirstRunPage(QWidget):
    """The explanation, one box per sense (both unticked), and "Start"."""

    answered = Signal(bool, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("first-run")
        text = QLabel(EXPLANATION)
        text.setWordWrap(True)
        self.hear_me = QCheckBox("Let Tandem hear me (microphone)")
        self.hear_me.setObjectName("consent-microphone")
        self.see_screen = QCheckBox("Let Tandem see my screen")
        self.see_screen.setObjectName("consent-screen")
        self.start = QPushButton("Start Tandem")
        self.start.setObjectName("first-run-start")
        self.error = QLabel("")
        self.error.setWordWrap(True)
        layout = QVBoxLayout(self)
        for w in (text, self.hear_me, self.see_screen, self.start, self.error):
            layout.addWidget(w)
        layout.addStretch(1)
        self.start.clicked.connect(self._start)

    def _start(self) -> None:
        mic, scr = self.hear_me.isChecked(), self.see_screen.isChecked()
        try:
            save_answer(mic, scr)
        except (SettingsError, OSError) as e:
            self.error.setText(str(e))
            return
        self.answered.emit(mic, scr)
