"""The conversation: what the user said or typed and what Tandem answered, and a box to type in.

Built from the timeline: a final transcript is the user's turn, the start of an utterance (not
a resumption after a pause) is Tandem's turn; typed lines are shown as typed. Enter sends the
line to the engine as typed text (a direct request), through the bridge.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QListWidget, QPushButton, QVBoxLayout, QWidget

from app.desktop.bridge import Bridge
from engine.core.events import AsrEvent, SpeechStart

MAX_TURNS = 2000


class ConversationPanel(QWidget):
    """The turns so far, and the text box."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.turns = QListWidget()
        self.turns.setObjectName("turns")
        self.turns.setWordWrap(True)
        self.entry = QLineEdit()
        self.entry.setObjectName("entry")
        self.entry.setPlaceholderText("Type to Tandem and press Enter")
        self.send = QPushButton("Send")
        self.stop = QPushButton("Stop speaking")
        row = QHBoxLayout()
        row.addWidget(self.entry, 1)
        row.addWidget(self.send)
        row.addWidget(self.stop)
        layout = QVBoxLayout(self)
        layout.addWidget(self.turns, 1)
        layout.addLayout(row)
        self.entry.returnPressed.connect(self._submit)
        self.send.clicked.connect(self._submit)
        self.stop.clicked.connect(self.bridge.stop_speaking)

    def add(self, ev: object) -> None:
        """A timeline event: keep the ones that are turns."""
        match ev:
            case AsrEvent(kind="final") if ev.text.strip():
                self._turn(f"you: {ev.text.strip()}")
            case SpeechStart(resume=False) if ev.text.strip():
                self._turn(f"tandem: {ev.text.strip()}")

    def texts(self) -> list[str]:
        """Every turn shown, oldest first."""
        return [self.turns.item(i).text() for i in range(self.turns.count())]

    def _submit(self) -> None:
        text = self.entry.text()
        if self.bridge.type_text(text):
            self._turn(f"you (typed): {text.strip()}")
            self.entry.clear()

    def _turn(self, text: str) -> None:
        self.turns.addItem(text)
        while self.turns.count() > MAX_TURNS:
            self.turns.takeItem(0)
        self.turns.scrollToBottom()
