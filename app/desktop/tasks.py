"""Background tasks: each task's progress, a cancel button, the resulting diff and undo.

Fed by the task events on the timeline (``engine.core.events.TaskEvent``, read through
``state.task_news``: started, progress, needs_permission, done, failed or cancelled, and a
summary line). A finished task's diff comes from the agent's task manager
(``TaskManager.snapshot``, on the bridge's worker thread). Cancel goes to the agent's task
manager through the bridge; undo restores the workspace's last checkpoint
(``background_agent.checkpoints.undo``) on the worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.desktop.bridge import Bridge, TaskControl, WorkResult
from app.desktop.state import task_news

ENDED = frozenset({"done", "failed", "cancelled"})
ROLE = 256
"""Qt.UserRole: where a list item keeps its task id."""
Undo = Callable[[Path], str]


@dataclass(slots=True)
class TaskRow:
    """What the panel knows of one task."""

    task_id: str
    kind: str
    summary: str
    diff: str | None = None

    @property
    def running(self) -> bool:
        """True until the task ended."""
        return self.kind not in ENDED


class TasksPanel(QWidget):
    """The task list, the selected task's diff, cancel and undo."""

    def __init__(
        self,
        bridge: Bridge,
        undo: Undo | None = None,
        workspace: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge, self.undo_fn, self.workspace = bridge, undo, workspace
        self.rows: dict[str, TaskRow] = {}
        self.list = QListWidget()
        self.list.setObjectName("tasks")
        self.diff = QPlainTextEdit()
        self.diff.setObjectName("diff")
        self.diff.setReadOnly(True)
        self.cancel = QPushButton("Cancel task")
        self.undo = QPushButton("Undo changes")
        self.note = QLabel("No background tasks yet.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.undo)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.diff, 2)
        self.list.currentItemChanged.connect(lambda *_: self._select())
        self.cancel.clicked.connect(self._cancel)
        self.undo.clicked.connect(self._undo)
        self.bridge.done.connect(self._done)
        self._select()

    def add(self, ev: object) -> None:
        """A timeline event: keep the task ones (a finished task's diff is fetched from the
        agent's task manager, on the worker)."""
        news = task_news(ev)
        if news is None:
            return
        row = self.rows.get(news.task_id)
        if row is None:
            row = self.rows[news.task_id] = TaskRow(news.task_id, news.status, news.summary)
            item = QListWidgetItem()
            item.setData(ROLE, news.task_id)
            self.list.addItem(item)
            if self.list.currentItem() is None:
                self.list.setCurrentItem(item)
        else:
            row.kind, row.summary = news.status, news.summary or row.summary
        if news.diff is not None:
            row.diff = news.diff
        elif news.ended and row.diff is None and self.bridge.tasks is not None:
            tasks = self.bridge.tasks
            self.bridge.run_job("task_diffs", lambda: _diffs(tasks))
        self._show(row)

    def _show(self, row: TaskRow) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ROLE) == row.task_id:
                item.setText(f"[{row.kind}] {row.summary}")
        self.note.setText(f"{sum(r.running for r in self.rows.values())} running")
        self._select()

    def selected(self) -> TaskRow | None:
        """The task selected in the list."""
        item = self.list.currentItem()
        return self.rows.get(str(item.data(ROLE))) if item is not None else None

    def _select(self) -> None:
        row = self.selected()
        self.cancel.setEnabled(row is not None and row.running and self.bridge.tasks is not None)
        self.undo.setEnabled(
            row is not None
            and row.kind == "done"
            and bool(row.diff)
            and self.undo_fn is not None
            and self.workspace is not None
        )
        self.diff.setPlainText(row.diff or "" if row is not None else "")

    def _cancel(self) -> None:
        row = self.selected()
        if row is not None:
            self.bridge.cancel_task(row.task_id)

    def _undo(self) -> None:
        undo, workspace = self.undo_fn, self.workspace
        if undo is not None and workspace is not None:
            self.undo.setEnabled(False)
            self.bridge.run_job("undo", lambda: undo(workspace))

    def _done(self, result: WorkResult) -> None:
        if result.job == "undo":
            self.note.setText(
                f"undo failed: {result.error}" if result.error else f"undone: {result.value}"
            )
        elif result.job == "task_diffs" and isinstance(result.value, dict):
            for task_id, diff in result.value.items():
                row = self.rows.get(task_id)
                if row is not None and diff:
                    row.diff = diff
            self._select()


def _diffs(tasks: TaskControl) -> dict[str, str]:
    """Each finished task's diff, from the agent's task manager (worker thread)."""
    out = {}
    for ev in tasks.snapshot():
        news = task_news(ev)
        if news is not None and news.diff:
            out[news.task_id] = news.diff
    return out
