"""The desktop app offscreen: the real window, bridge, gate and engine (on the scripted model).

Every wait is a pytest-qt ``waitSignal`` / ``waitUntil`` with a deadline, never a sleep. The
user's settings and audit log are a temporary folder's (``home``).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from app.desktop import autostart, firstrun
from app.desktop.bridge import Bridge
from app.desktop.main import Desktop
from app.desktop.state import StateTracker, TrayState
from app.desktop.timeline import TimelineModel
from background_agent.tasks import TaskEvent as AgentTaskEvent
from engine import config
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    FocusEvent,
    PermissionEvent,
    SpeechStart,
    SpeechStop,
    TaskEvent,
    VadEvent,
)
from engine.model.fake_backend import FakeBackend
from engine.model.session import ModelSession
from permissions import settings
from permissions.model import AppContext, Decision, Sense, ToolRequest

WAIT_MS = 20_000
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SHOTS_ENV = "TANDEM_SCREENSHOTS"
WRITE_SHOTS = os.environ.get(SHOTS_ENV) == "1"  # read before ``home`` clears TANDEM_*


def task(t: float, task_id: str, status: str, summary: str) -> TaskEvent:
    """A task event as the engine puts it on the timeline (from the agent's TaskUpdate)."""
    kind = {
        "started": "task_started",
        "done": "task_done",
        "failed": "task_done",
        "cancelled": "task_done",
    }.get(status, "task_update")
    return TaskEvent(t, kind, task_id, status, summary)  # type: ignore[arg-type]


class FakeTasks:
    """Follows ``TaskManager.cancel`` / ``snapshot`` (its events are the agent's own)."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.latest: list[AgentTaskEvent] = []

    def cancel(self, task_id: str) -> None:
        self.cancelled.append(task_id)

    def snapshot(self) -> list[Any]:
        return list(self.latest)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TANDEM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("TANDEM_") and name not in ("TANDEM_CONFIG_DIR", "TANDEM_DATA_DIR"):
            monkeypatch.delenv(name)
    return tmp_path


def _fake_session() -> ModelSession:
    return ModelSession(FakeBackend(reply="Use reversed or slice with a step of minus one."))


@pytest.fixture
def desktop(home: Path, qtbot: Any) -> Iterator[Desktop]:
    """The app after its first run (microphone and screen off), engine up."""
    firstrun.save_answer(microphone=False, screen=False)
    app = Desktop(session=_fake_session, hotkey=False, workspace=home)
    with qtbot.waitSignal(app.bridge.ready, timeout=WAIT_MS):
        app.start()
    yield app
    app.close()


# --- the bridge ----------------------------------------------------------------------------


def test_events_from_the_engine_thread_arrive_on_the_qt_thread(qtbot: Any) -> None:
    bridge = Bridge()
    seen: list[tuple[object, bool]] = []
    qt_thread = QApplication.instance().thread()  # type: ignore[union-attr]
    bridge.timeline.connect(lambda ev: seen.append((ev, QThread.currentThread() is qt_thread)))
    ev = AsrEvent(1.0, "final", "hello")
    worker = threading.Thread(target=bridge.sink, args=(ev,), name="engine-like")
    with qtbot.waitSignal(bridge.timeline, timeout=WAIT_MS):
        worker.start()
        worker.join()
    assert seen == [(ev, True)]
    bridge.close()


def test_intents_before_the_engine_is_up_wait_for_it(home: Path, qtbot: Any) -> None:
    firstrun.save_answer(microphone=False, screen=False)
    app = Desktop(session=_fake_session, hotkey=False)
    app.bridge.type_text("are you there?")  # queued: no composition yet
    replies: list[str] = []
    app.window.event_shown.connect(
        lambda ev: replies.append(ev.text) if isinstance(ev, SpeechStart) else None
    )
    app.start()
    qtbot.waitUntil(lambda: bool(replies), timeout=WAIT_MS)
    app.close()
    assert replies[0].startswith("Use reversed")


# --- first run -----------------------------------------------------------------------------


def test_first_run_says_what_it_sees_and_hears_and_nothing_is_on_before(
    home: Path, qtbot: Any
) -> None:
    app = Desktop(session=_fake_session, hotkey=False)
    app.start()
    page = app.window.first_run
    assert app.window.pages.currentWidget() is page
    text = page.findChildren(type(page.error))[0].text()
    assert "What it hears" in text and "What it sees" in text
    assert app.engine is None  # not even the engine runs before the answer
    assert not page.hear_me.isChecked() and not page.see_screen.isChecked()
    page.hear_me.setChecked(True)
    with qtbot.waitSignal(app.bridge.ready, timeout=WAIT_MS):
        page.start.click()
    assert app.window.pages.currentIndex() == 1
    rules = {r.id: r for r in settings.load().settings.rules}
    assert rules["firstrun:microphone"].decision is Decision.ALLOW
    assert rules["firstrun:screen"].decision is Decision.DENY
    assert firstrun.consent() == {"microphone": True, "screen": False}
    app.close()
    # asked once: the next start goes straight to the window
    again = Desktop(session=_fake_session, hotkey=False)
    assert again.window.pages.currentIndex() == 1
    again.close()


# --- conversation and timeline ------------------------------------------------------------


def test_typing_to_tandem_gets_an_answer_in_the_conversation_and_timeline(
    desktop: Desktop, qtbot: Any
) -> None:
    conv = desktop.window.conversation
    conv.entry.setText("how do I reverse a list?")
    conv.send.click()
    qtbot.waitUntil(lambda: any(t.startswith("tandem:") for t in conv.texts()), timeout=WAIT_MS)
    assert conv.texts()[0] == "you (typed): how do I reverse a list?"
    assert conv.entry.text() == ""
    lanes = {m.lane for m in desktop.window.timeline.model.marks}
    assert {"model", "speech"} <= lanes


def test_mute_revokes_through_the_gate_and_unmute_grants_again(
    desktop: Desktop, qtbot: Any
) -> None:
    live = desktop.bridge.live
    assert live is not None
    who = AppContext("tandem", "desktop")
    desktop.window.mute.click()
    qtbot.waitUntil(
        lambda: live.gate.explain_sense(Sense.MICROPHONE, who).reason == "microphone is muted",
        timeout=WAIT_MS,
    )
    assert desktop.tracker.state is TrayState.MUTED
    assert desktop.tray.mute_action.isChecked()
    desktop.bridge.toggle_mute()  # the tray click and the hotkey take this path
    qtbot.waitUntil(
        lambda: "muted" not in live.gate.explain_sense(Sense.MICROPHONE, who).reason,
        timeout=WAIT_MS,
    )
    assert not desktop.window.mute.isChecked()


def test_kill_switch_revokes_every_sense_and_shows_blocked(desktop: Desktop, qtbot: Any) -> None:
    live = desktop.bridge.live
    assert live is not None
    desktop.window.permissions.kill.click()
    who = AppContext("tandem", "desktop")
    qtbot.waitUntil(
        lambda: all(live.gate.explain_sense(s, who).reason == "kill switch is on" for s in Sense),
        timeout=WAIT_MS,
    )
    assert desktop.tracker.state is TrayState.BLOCKED
    assert "KILL SWITCH ON" in desktop.window.permissions.senses.text()


def test_a_gate_ask_is_answered_in_the_panel_without_a_modal(
    desktop: Desktop, qtbot: Any, home: Path
) -> None:
    live = desktop.bridge.live
    assert live is not None
    verdicts: list[Decision] = []
    req = ToolRequest("write_file", {"path": "notes.txt", "content": "x"}, home)

    def agent() -> None:  # the background agent's thread asks and waits
        verdicts.append(live.gate.authorize(req, timeout_s=30).decision)

    asker = threading.Thread(target=agent, name="agent-like")
    asker.start()
    panel = desktop.window.permissions
    qtbot.waitUntil(lambda: len(panel.cards) == 1, timeout=WAIT_MS)
    (card,) = panel.cards.values()
    assert QApplication.activeModalWidget() is None
    assert set(card.buttons) == {"once", "session", "always", "deny"}
    card.buttons["once"].click()
    asker.join(30)
    assert verdicts == [Decision.ALLOW]
    qtbot.waitUntil(lambda: not panel.cards, timeout=WAIT_MS)  # the card goes by itself


def test_dangerous_asks_offer_no_always_and_a_cancelled_ask_disappears(
    desktop: Desktop, qtbot: Any
) -> None:
    broker = desktop.bridge.broker
    waited: list[object] = []

    def ask() -> None:
        prompt = broker.file("run_command", "run `rm -rf build`", True, None)
        assert prompt is not None
        waited.append(prompt.wait(30))

    asker = threading.Thread(target=ask, name="agent-like")
    asker.start()
    panel = desktop.window.permissions
    qtbot.waitUntil(lambda: len(panel.cards) == 1, timeout=WAIT_MS)
    (card,) = panel.cards.values()
    assert "always" not in card.buttons
    broker.cancel(card.prompt.id, "kill switch")
    asker.join(30)
    assert waited == [None]
    qtbot.waitUntil(lambda: not panel.cards, timeout=WAIT_MS)


def test_a_per_app_rule_is_added_from_the_focused_window_in_one_click(
    desktop: Desktop, qtbot: Any
) -> None:
    panel = desktop.window.permissions
    assert not panel.add_app.isEnabled()  # no focused window known yet
    desktop.bridge.sink(FocusEvent(1.0, "org.keepassxc.KeePassXC"))
    qtbot.waitUntil(panel.add_app.isEnabled, timeout=WAIT_MS)
    panel.add_app.click()  # screen / deny are the defaults
    qtbot.waitUntil(lambda: panel.rules.count() == 1, timeout=WAIT_MS)
    rule_id = "app:org.keepassxc.KeePassXC:screen"
    saved = {r.id: r for r in settings.load().settings.rules}
    assert saved[rule_id].decision is Decision.DENY
    assert saved[rule_id].sense is Sense.SCREEN
    live = desktop.bridge.live
    assert live is not None
    verdict = live.gate.explain_sense(Sense.SCREEN, AppContext("org.keepassxc.KeePassXC"))
    assert verdict.decision is Decision.DENY
    panel.rules.setCurrentRow(0)
    panel.remove.click()
    qtbot.waitUntil(lambda: panel.rules.count() == 0, timeout=WAIT_MS)
    assert rule_id not in {r.id for r in settings.load().settings.rules}


def test_the_audit_log_is_shown_and_its_integrity_checked(desktop: Desktop, qtbot: Any) -> None:
    panel = desktop.window.permissions
    desktop.bridge.kill_switch(True)  # something to audit
    qtbot.waitUntil(lambda: panel.audit.count() > 0, timeout=WAIT_MS)
    assert any("kill_switch" in panel.audit.item(i).text() for i in range(panel.audit.count()))
    panel.verify.click()
    qtbot.waitUntil(lambda: panel.verdict.text().startswith("intact"), timeout=WAIT_MS)


def test_tasks_show_progress_cancel_diff_and_undo(desktop: Desktop, qtbot: Any) -> None:
    tasks = FakeTasks()
    desktop.bridge.tasks = tasks
    undone: list[Path] = []
    panel = desktop.window.tasks

    def undo(workspace: Path) -> str:
        undone.append(workspace)
        return "restored checkpoint 1 (before t1): 1 file changed back"

    panel.undo_fn = undo
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    for ev in (
        task(1.0, "t1", "started", "fix the failing test"),
        task(2.0, "t1", "progress", "ran pytest: 1 failed"),
    ):
        desktop.bridge.sink(ev)
    qtbot.waitUntil(
        lambda: panel.list.count() and "progress" in panel.list.item(0).text(), timeout=WAIT_MS
    )
    assert desktop.tracker.state is TrayState.WORKING
    assert panel.cancel.isEnabled() and not panel.undo.isEnabled()
    panel.cancel.click()
    qtbot.waitUntil(lambda: tasks.cancelled == ["t1"], timeout=WAIT_MS)
    tasks.latest = [AgentTaskEvent("t1", "done", "fixed test_parse", 3.0, diff)]
    desktop.bridge.sink(task(3.0, "t1", "done", "fixed test_parse"))
    qtbot.waitUntil(lambda: "[done]" in panel.list.item(0).text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.diff.toPlainText() == diff, timeout=WAIT_MS)  # from the agent
    assert desktop.tracker.state is not TrayState.WORKING
    panel.undo.click()
    qtbot.waitUntil(lambda: "undone" in panel.note.text(), timeout=WAIT_MS)
    assert undone == [desktop.window.tasks.workspace]
    spans = [m for m in desktop.window.timeline.model.marks if m.lane == "agent"]
    assert spans[0].t0 == 1.0 and spans[0].t1 == 3.0


# --- settings ------------------------------------------------------------------------------


def test_settings_edit_the_typed_configuration_and_refuse_bad_values(
    desktop: Desktop, qtbot: Any
) -> None:
    panel = desktop.window.settings
    assert set(panel.editors) == {k.dotted for k in config.KEYS}  # nothing duplicated, none missed
    qtbot.waitUntil(lambda: panel.shown.get("turn_taking.eagerness") is not None, timeout=WAIT_MS)
    eager = panel.editors["turn_taking.eagerness"]
    eager.setText("0.7")  # type: ignore[union-attr]
    panel.save.click()
    qtbot.waitUntil(lambda: "saved" in panel.message.text(), timeout=WAIT_MS)
    doc = json.loads(config.config_path().read_text())
    assert doc["turn_taking"]["eagerness"] == 0.7
    eager.setText("2")  # type: ignore[union-attr]
    panel.save.click()
    qtbot.waitUntil(lambda: "out of range" in panel.message.text(), timeout=WAIT_MS)
    assert json.loads(config.config_path().read_text())["turn_taking"]["eagerness"] == 0.7


def test_start_at_login_writes_and_removes_the_autostart_entry(
    desktop: Desktop, qtbot: Any, home: Path
) -> None:
    panel = desktop.window.settings
    entry = home / "xdg" / "autostart" / "tandem.desktop"
    panel.login.setChecked(True)
    qtbot.waitUntil(entry.is_file, timeout=WAIT_MS)
    assert "Exec=" in entry.read_text() and "app --minimized" in entry.read_text()
    assert autostart.enabled()
    panel.login.setChecked(False)
    qtbot.waitUntil(lambda: not entry.exists(), timeout=WAIT_MS)


# --- timeline and tray state (no engine) -----------------------------------------------------


def test_timeline_spans_overlap_silence_and_unknown_lanes() -> None:
    model = TimelineModel()
    for ev in (
        SpeechStart(1.0, "Here is the fix"),
        VadEvent(1.5, "speech_start"),  # the user talks over Tandem: both spans overlap
        SpeechStop(1.8, "interrupted"),
        AsrEvent(2.4, "final", "wait, not that one"),
        VadEvent(2.5, "speech_end"),
        DecisionEvent(4.0, "silent"),  # silence: nothing on the speech and voice lanes
        PermissionEvent(4.1, "revoke", "microphone", "deny"),
        FocusEvent(4.2, "code"),  # shown by its lane
    ):
        model.add(ev)
    speech = next(m for m in model.marks if m.lane == "speech")
    voice = next(m for m in model.marks if m.lane == "vad")
    assert (speech.t0, speech.t1, voice.t0, voice.t1) == (1.0, 1.8, 1.5, 2.5)
    assert speech.label.endswith("(interrupted)")
    assert voice.t0 < speech.t1  # the overlap is on the timeline
    assert not model.visible(2.6, 3.9)  # the silence is empty
    assert "focus" in model.lanes and model.marks[-1].label.startswith("change")
    model.add(type("ScreenChange", (), {"t": 5.0, "lane": "ocr", "kind": "text"})())
    assert model.lanes[-1] == "ocr"  # an unknown lane gets its own row


def test_timeline_keeps_a_bounded_history() -> None:
    model = TimelineModel(history_s=10.0)
    for i in range(100):
        model.add(DecisionEvent(float(i), "speak"))
    assert min(m.t0 for m in model.marks) >= 89.0


def test_a_hidden_timeline_does_not_repaint(desktop: Desktop, qtbot: Any) -> None:
    view = desktop.window.timeline
    qtbot.waitUntil(lambda: view.repaints > 0, timeout=WAIT_MS)
    desktop.window.hide()
    assert not view.painting
    before = view.repaints
    for i in range(50):
        view.add(DecisionEvent(100.0 + i, "speak"))
    QApplication.processEvents()
    assert view.repaints == before
    assert len(view.model.marks) >= 50  # still recorded
    desktop.window.show()
    qtbot.waitUntil(lambda: view.repaints > before, timeout=WAIT_MS)


def test_tray_state_precedence() -> None:
    st = StateTracker(ready=True)
    assert st.state is TrayState.LISTENING
    st.add(DecisionEvent(1.0, "speak"))
    assert st.state is TrayState.THINKING
    st.add(SpeechStart(1.2, "hi"))
    assert st.state is TrayState.SPEAKING
    st.add(SpeechStop(2.0, "done"))
    st.add(task(2.0, "t", "started", "x"))
    assert st.state is TrayState.WORKING
    st.set_muted(True)
    st.add(PermissionEvent(2.1, "revoke", "microphone", "deny"))
    assert st.state is TrayState.MUTED  # a mute is not a block
    st.add(PermissionEvent(2.2, "revoke", "screen", "deny"))
    assert st.state is TrayState.BLOCKED
    st.add(PermissionEvent(2.3, "lease", "screen", "allow"))
    assert st.state is TrayState.MUTED


# --- screenshots ---------------------------------------------------------------------------


def test_the_window_renders_and_screenshots_are_current(desktop: Desktop, qtbot: Any) -> None:
    """Renders the real window after a short talk; with TANDEM_SCREENSHOTS=1 it rewrites the
    README's PNGs in docs/screenshots/."""
    conv = desktop.window.conversation
    conv.entry.setText("how do I reverse a list in python?")
    conv.send.click()
    qtbot.waitUntil(lambda: any(t.startswith("tandem:") for t in conv.texts()), timeout=WAIT_MS)
    for ev in (
        VadEvent(desktop.window.timeline.model.now + 0.2, "speech_start"),
        AsrEvent(desktop.window.timeline.model.now + 0.9, "partial", "and the"),
        VadEvent(desktop.window.timeline.model.now + 1.4, "speech_end"),
        AsrEvent(desktop.window.timeline.model.now + 1.5, "final", "and the tests?"),
        task(desktop.window.timeline.model.now + 1.6, "t1", "started", "run the tests"),
    ):
        desktop.bridge.sink(ev)
    qtbot.waitUntil(lambda: any(m.lane == "agent" for m in desktop.window.timeline.model.marks))
    desktop.window.resize(1100, 760)
    images = {}
    for name, page in (("conversation", 0), ("permissions", 2), ("settings", 3)):
        desktop.window.tabs.setCurrentIndex(page)
        QApplication.processEvents()
        images[name] = desktop.window.grab().toImage()
    for name, image in images.items():
        w, h = image.width(), image.height()
        assert w >= 1000 and h >= 700, name
        colors = {image.pixel(x, y) for x in range(0, w, 37) for y in range(0, h, 29)}
        assert len(colors) > 5, f"{name}: the window rendered blank"
    if WRITE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for name, image in images.items():
            assert image.save(str(SHOTS / f"{name}.png"))
    else:
        for name in images:
            assert (SHOTS / f"{name}.png").is_file(), f"run with {SHOTS_ENV}=1 to make {name}.png"
