"""The live timeline: every micro-turn's events in lanes, time-aligned, overlap and silence visible.

``TimelineModel`` (no Qt) turns typed events into marks: spans for what lasts (the user's
voice from ``speech_start`` to ``speech_end``, Tandem's speech from start to stop, a background
task from started to ended) and points for the rest (transcripts, decisions, permissions, screen
events). Known lanes keep a fixed order; an event of a kind this version does not know is shown
by its ``lane`` as a point, so newer senses appear without a change here. The model keeps
``HISTORY_S`` of history (older marks are dropped).

``TimelineView`` paints the model: one row per lane, time on the x axis at ``px_per_s``, a
horizontal scroll bar over the whole history, following the live edge unless the user scrolled
back. While the window is hidden it does not repaint (the model still records).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

from app.desktop.state import TaskNews, task_news
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    PermissionEvent,
    SpeechStart,
    SpeechStop,
    TickEvent,
    VadEvent,
)

LANES: tuple[tuple[str, str], ...] = (
    ("vad", "voice"),
    ("asr", "transcript"),
    ("screen", "screen"),
    ("focus", "focus"),
    ("model", "decisions"),
    ("speech", "speech"),
    ("agent", "agent tasks"),
    ("permission", "permissions"),
)
"""Known lanes, top to bottom, and their labels; unknown lanes are appended in arrival order."""
HISTORY_S = 30 * 60.0
"""History kept: half an hour of marks."""
MAX_MARKS = 20_000
POINT_LABEL_PX = 240.0
AXIS_EVERY_S = 5
"""A time label every this many seconds along the bottom."""
COLORS = {
    "vad": "#2e7d32",
    "asr": "#558b2f",
    "screen": "#00838f",
    "focus": "#00695c",
    "model": "#6a1b9a",
    "speech": "#1565c0",
    "agent": "#ef6c00",
    "permission": "#c62828",
}


@dataclass(slots=True)
class Mark:
    """One thing on the timeline: a span (``t1`` set once it ended) or a point (``t1 == t0``)."""

    lane: str
    t0: float
    t1: float | None
    label: str
    key: str = ""
    """What closes an open span (a task id); empty for the lane's one open span."""

    @property
    def span(self) -> bool:
        """True for something that lasts (open while ``t1`` is None)."""
        return self.t1 is None or self.t1 > self.t0


class TimelineModel:
    """Marks by lane, built from timeline events (see the module docstring)."""

    def __init__(self, history_s: float = HISTORY_S) -> None:
        self.history_s = history_s
        self.marks: deque[Mark] = deque(maxlen=MAX_MARKS)
        self.lanes: list[str] = [lane for lane, _ in LANES]
        self.labels: dict[str, str] = dict(LANES)
        self.now = 0.0
        self.start: float | None = None
        self._open: dict[tuple[str, str], Mark] = {}

    def add(self, ev: object) -> Mark | None:
        """Record one event; returns the mark it made or closed (None for ticks)."""
        t = float(getattr(ev, "t", self.now))
        self.now = max(self.now, t)
        if self.start is None:
            self.start = t
        if isinstance(ev, TickEvent):
            return None
        match ev:
            case VadEvent(kind="speech_start"):
                return self._open_span("vad", t, "you speak")
            case VadEvent():
                return self._close_span("vad", t)
            case SpeechStart():
                self._close_span("speech", t)
                return self._open_span("speech", t, ev.text)
            case SpeechStop():
                return self._close_span("speech", t, f" ({ev.reason})")
            case AsrEvent():
                return self._point("asr", t, f"{ev.kind}: {ev.text}")
            case DecisionEvent():  # "silent" is a bare tick: the model was consulted
                return self._point("model", t, "" if ev.decision == "silent" else ev.decision)
            case PermissionEvent():
                return self._point("permission", t, f"{ev.kind} {ev.sense_or_tool} {ev.decision}")
        news = task_news(ev)
        if news is not None:
            return self._task(news, t)
        lane = str(getattr(ev, "lane", "other"))
        kind = str(getattr(ev, "kind", ""))
        text = getattr(ev, "summary", None) or getattr(ev, "text", None) or ""
        return self._point(lane, t, f"{kind} {text}".strip())

    def visible(self, t0: float, t1: float) -> list[Mark]:
        """Marks that overlap ``[t0, t1]`` (open spans reach ``now``)."""
        return [
            m for m in self.marks if m.t0 <= t1 and (m.t1 if m.t1 is not None else self.now) >= t0
        ]

    def lane_of(self, lane: str) -> int:
        """The row of ``lane`` (a new lane gets the next row)."""
        if lane not in self.lanes:
            self.lanes.append(lane)
            self.labels.setdefault(lane, lane)
        return self.lanes.index(lane)

    def _task(self, news: TaskNews, t: float) -> Mark | None:
        if news.status == "started":
            return self._open_span("agent", t, news.summary or "task", key=news.task_id)
        if news.ended:
            return self._close_span("agent", t, f" ({news.status})", key=news.task_id)
        open_mark = self._open.get(("agent", news.task_id))
        if open_mark is not None and news.summary:
            open_mark.label = news.summary
            return open_mark
        return self._point("agent", t, f"{news.status} {news.summary}".strip())

    def _open_span(self, lane: str, t: float, label: str, key: str = "") -> Mark:
        self._close_span(lane, t, key=key)
        mark = Mark(lane, t, None, label, key)
        self._open[(lane, key)] = mark
        return self._keep(mark)

    def _close_span(self, lane: str, t: float, suffix: str = "", key: str = "") -> Mark | None:
        mark = self._open.pop((lane, key), None)
        if mark is None:
            return None
        mark.t1 = max(t, mark.t0)
        mark.label += suffix
        return mark

    def _point(self, lane: str, t: float, label: str) -> Mark:
        return self._keep(Mark(lane, t, t, label))

    def _keep(self, mark: Mark) -> Mark:
        self.lane_of(mark.lane)
        self.marks.append(mark)
        cutoff = self.now - self.history_s
        while (
            self.marks and (self.marks[0].t1 if self.marks[0].t1 is not None else self.now) < cutoff
        ):
            self.marks.popleft()
        return mark


class TimelineView(QAbstractScrollArea):
    """Paints a ``TimelineModel``; follows the live edge unless scrolled back."""

    ROW = 26
    LABEL_W = 96
    REPAINT_MS = 100

    def __init__(self, model: TimelineModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model or TimelineModel()
        self.px_per_s = 60.0
        self.follow = True
        self.repaints = 0
        """Paint passes done (the tests check that a hidden timeline does not repaint)."""
        self.setObjectName("timeline")
        self.setMinimumHeight(self.ROW * len(LANES) + 40)
        self.horizontalScrollBar().valueChanged.connect(self._scrolled)
        self._timer = QTimer(self)
        self._timer.setInterval(self.REPAINT_MS)
        self._timer.timeout.connect(self._refresh)
        self._dirty = False

    def add(self, ev: object) -> None:
        """A timeline event arrived (Qt thread): record it, repaint soon if shown."""
        if self.model.add(ev) is not None or isinstance(ev, TickEvent):
            self._dirty = True

    def showEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        """Start repainting (and catch up at once)."""
        self._timer.start()
        self._dirty = True
        self._refresh()

    def hideEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        """Paused while hidden: no repaint timer."""
        self._timer.stop()

    @property
    def painting(self) -> bool:
        """True while the view repaints on its timer (shown)."""
        return self._timer.isActive()

    def _span_s(self) -> float:
        start = self.model.start if self.model.start is not None else self.model.now
        return max(0.0, self.model.now - start)

    def _refresh(self) -> None:
        if not self._dirty or not self.isVisible():
            return
        self._dirty = False
        width = max(1, self.viewport().width() - self.LABEL_W)
        total = int(self._span_s() * self.px_per_s)
        bar = self.horizontalScrollBar()
        bar.setRange(0, max(0, total - width))
        bar.setPageStep(width)
        if self.follow:
            bar.setValue(bar.maximum())
        self.viewport().update()

    def _scrolled(self, value: int) -> None:
        self.follow = value >= self.horizontalScrollBar().maximum()
        self.viewport().update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        """Lanes, a second grid, the marks in view."""
        self.repaints += 1
        p = QPainter(self.viewport())
        p.fillRect(self.viewport().rect(), QColor("#fafafa"))
        origin = self.model.start if self.model.start is not None else 0.0
        left = origin + self.horizontalScrollBar().value() / self.px_per_s
        width = max(1, self.viewport().width() - self.LABEL_W)
        right = left + width / self.px_per_s
        p.setPen(QPen(QColor("#e0e0e0")))
        bottom = self.viewport().height()
        for s in range(int(left), int(right) + 1):
            x = self.LABEL_W + (s - left) * self.px_per_s
            p.drawLine(int(x), 0, int(x), bottom)
            if (s - int(origin)) % AXIS_EVERY_S == 0:  # seconds since the session started
                p.setPen(QColor("#9e9e9e"))
                p.drawText(int(x) + 2, bottom - 4, f"{s - int(origin)} s")
                p.setPen(QPen(QColor("#e0e0e0")))
        for row, lane in enumerate(self.model.lanes):
            y = row * self.ROW
            p.setPen(QColor("#424242"))
            p.drawText(
                QRectF(4, y, self.LABEL_W - 8, self.ROW),
                Qt.AlignmentFlag.AlignVCenter,
                self.model.labels.get(lane, lane),
            )
        marks = self.model.visible(left, right)
        starts: dict[str, list[float]] = {}
        for mark in marks:
            starts.setdefault(mark.lane, []).append(self.LABEL_W + (mark.t0 - left) * self.px_per_s)
        metrics = p.fontMetrics()
        for mark in marks:
            row = self.model.lane_of(mark.lane)
            y = row * self.ROW + 4
            color = QColor(COLORS.get(mark.lane, "#455a64"))
            x0 = self.LABEL_W + (mark.t0 - left) * self.px_per_s
            end = mark.t1 if mark.t1 is not None else self.model.now
            if mark.span:
                x1 = self.LABEL_W + (end - left) * self.px_per_s
                x0c = max(x0, float(self.LABEL_W))
                rect = QRectF(x0c, y, max(2.0, x1 - x0c), self.ROW - 8)
                p.fillRect(rect, color.lighter(150))
                p.setPen(color)
                p.drawRect(rect)
                p.setPen(QColor("#212121"))
                p.drawText(rect.adjusted(3, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, mark.label)
            elif x0 >= self.LABEL_W:
                p.setPen(QPen(color, 2))
                p.drawLine(int(x0), y, int(x0), y + self.ROW - 8)
                later = [x for x in starts[mark.lane] if x > x0 + 1]
                room = min([POINT_LABEL_PX, *(x - x0 - 6 for x in later)])
                if room > 12:  # a label never runs into the next mark of its lane
                    text = metrics.elidedText(mark.label, Qt.TextElideMode.ElideRight, int(room))
                    p.setPen(QColor("#212121"))
                    p.drawText(
                        QRectF(x0 + 3, y, room, self.ROW - 8), Qt.AlignmentFlag.AlignVCenter, text
                    )
        p.end()
