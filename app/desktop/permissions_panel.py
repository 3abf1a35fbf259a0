"""The permission panel: what is on right now, asks answered in place, per-app rules, the audit log.

- Senses and tools active now: from the timeline's lease / revoke / decision events, and the
  kill switch (one click revokes every sense and cancels every pending ask).
- Pending asks: each one a card with its buttons (allow once, for the session, always, deny).
  "Always" is not offered for a dangerous request (the gate would count it once anyway). No
  modal dialog: the gate's caller waits on the broker, and an ask that times out or that the
  gate cancels (mute, kill switch, focus) disappears from the panel by itself.
- Per-app rules: the rules that name an application; "add the focused app" makes one from the
  focused window (the timeline's ``FocusEvent`` carries its id) in one click.
- The audit log: its latest entries, and its integrity check (the hash chain), run on the
  bridge's worker thread.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.composition import Composition
from app.desktop.bridge import Bridge, WorkResult
from engine.core.events import PermissionEvent
from permissions.broker import Prompt
from permissions.gate import literal_glob
from permissions.model import Decision, Rule, Scope, Sense

POLL_MS = 250
"""How often open ask cards look whether their prompt closed (a flag read, never a wait)."""
AUDIT_ROWS = 50


class PromptCard(QFrame):
    """One pending ask and its answers."""

    def __init__(self, bridge: Bridge, prompt: Prompt, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.prompt = bridge, prompt
        self.setObjectName(f"ask-{prompt.id[:8]}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        text = f"Tandem asks to {prompt.summary}"
        if prompt.dangerous:
            text += " (dangerous: answered one time only)"
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        answers = [("once", Decision.ALLOW, Scope.ONCE), ("session", Decision.ALLOW, Scope.SESSION)]
        if not prompt.dangerous:
            answers.append(("always", Decision.ALLOW, Scope.ALWAYS))
        answers.append(("deny", Decision.DENY, Scope.ONCE))
        labels = {
            "once": "Allow once",
            "session": "For this session",
            "always": "Always",
            "deny": "Deny",
        }
        for name, decision, scope in answers:
            button = QPushButton(labels[name])
            button.setObjectName(f"answer-{name}")
            button.clicked.connect(lambda _=False, d=decision, s=scope: self._answer(d, s))
            self.buttons[name] = button
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addLayout(row)

    def _answer(self, decision: Decision, scope: Scope) -> None:
        accepted = self.bridge.answer(self.prompt.id, decision, scope)
        if not accepted:
            self.label.setText(self.label.text() + " - too late, it closed")
        for button in self.buttons.values():
            button.setEnabled(False)


class PermissionsPanel(QWidget):
    """See the module docstring."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.active: dict[str, str] = {}
        self.focused_app = ""
        self.cards: dict[str, PromptCard] = {}

        self.senses = QLabel("Nothing is on.")
        self.senses.setObjectName("active-senses")
        self.kill = QPushButton("Kill switch: stop every sense")
        self.kill.setObjectName("kill-switch")
        self.kill.setCheckable(True)
        now = QGroupBox("Active right now")
        now_layout = QVBoxLayout(now)
        now_layout.addWidget(self.senses)
        now_layout.addWidget(self.kill)

        self.asks_box = QGroupBox("Asks waiting for you")
        self.asks = QVBoxLayout(self.asks_box)
        self.no_asks = QLabel("None.")
        self.asks.addWidget(self.no_asks)

        rules_box = QGroupBox("Per-app rules")
        self.rules = QListWidget()
        self.rules.setObjectName("app-rules")
        self.rule_sense = QComboBox()
        self.rule_sense.addItems([s.value for s in (Sense.SCREEN, Sense.MICROPHONE)])
        self.rule_decision = QComboBox()
        self.rule_decision.addItems(
            [d.value for d in (Decision.DENY, Decision.ASK, Decision.ALLOW)]
        )
        self.add_app = QPushButton("Add the focused app")
        self.add_app.setObjectName("add-focused-app")
        self.add_app.setEnabled(False)
        self.remove = QPushButton("Remove rule")
        row = QHBoxLayout()
        for w in (self.rule_sense, self.rule_decision, self.add_app, self.remove):
            row.addWidget(w)
        rules_layout = QVBoxLayout(rules_box)
        rules_layout.addWidget(self.rules)
        rules_layout.addLayout(row)

        audit_box = QGroupBox("Audit log")
        self.audit = QListWidget()
        self.audit.setObjectName("audit")
        self.verify = QPushButton("Check integrity")
        self.verify.setObjectName("verify-audit")
        self.verdict = QLabel("")
        self.verdict.setObjectName("audit-verdict")
        audit_row = QHBoxLayout()
        audit_row.addWidget(self.verify)
        audit_row.addWidget(self.verdict, 1)
        audit_layout = QVBoxLayout(audit_box)
        audit_layout.addWidget(self.audit)
        audit_layout.addLayout(audit_row)

        layout = QVBoxLayout(self)
        for box in (now, self.asks_box, rules_box, audit_box):
            layout.addWidget(box)

        self.kill.clicked.connect(self.bridge.kill_switch)
        self.bridge.killed_changed.connect(self._killed)
        self.add_app.clicked.connect(self._add_focused)
        self.remove.clicked.connect(self._remove)
        self.verify.clicked.connect(self._verify)
        self.bridge.prompt.connect(self.add_prompt)
        self.bridge.done.connect(self._done)
        self.bridge.ready.connect(self.refresh)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._drop_closed)

    # --- timeline ------------------------------------------------------------------------

    def add(self, ev: object) -> None:
        """A timeline event: leases, revocations, tool decisions, focus changes."""
        if isinstance(ev, PermissionEvent):
            if ev.kind == "lease":
                self.active[ev.sense_or_tool] = "on"
            elif ev.kind == "revoke":
                self.active[ev.sense_or_tool] = "off (revoked)"
            else:
                self.active[ev.sense_or_tool] = f"last: {ev.decision}"
            self._show_active()
            self.refresh()
        elif getattr(ev, "lane", None) == "focus" and _app_id(ev):
            self.focused_app = _app_id(ev)
            self.add_app.setEnabled(True)
            self.add_app.setText(f"Add {self.focused_app}")

    def _killed(self, on: bool) -> None:
        self.kill.setChecked(on)
        self._show_active()

    def _show_active(self) -> None:
        lines = [f"{name}: {state}" for name, state in sorted(self.active.items())]
        if self.kill.isChecked():
            lines.insert(0, "KILL SWITCH ON: every sense is off")
        self.senses.setText("\n".join(lines) or "Nothing is on.")

    # --- asks ------------------------------------------------------------------------------

    def add_prompt(self, prompt: Prompt) -> None:
        """Show a new ask (Qt thread, from the bridge's queued signal)."""
        if prompt.closed or prompt.id in self.cards:
            return
        card = PromptCard(self.bridge, prompt)
        self.cards[prompt.id] = card
        self.asks.addWidget(card)
        self.no_asks.hide()
        self._poll.start()

    def _drop_closed(self) -> None:
        for pid, card in list(self.cards.items()):
            if card.prompt.closed:
                del self.cards[pid]
                card.setParent(None)
                card.deleteLater()
        if not self.cards:
            self.no_asks.show()
            self._poll.stop()

    # --- rules and audit (on the worker) ---------------------------------------------------

    def refresh(self) -> None:
        """Reload the rules and the audit tail (on the worker thread)."""
        self.bridge.submit("rules", _app_rules)
        self.bridge.submit("audit_tail", lambda live: live.audit.tail(AUDIT_ROWS))

    def _add_focused(self) -> None:
        if not self.focused_app:
            return
        sense = Sense(self.rule_sense.currentText())
        decision = Decision(self.rule_decision.currentText())
        rule = Rule(
            f"app:{self.focused_app}:{sense.value}",
            decision,
            sense=sense,
            app=literal_glob(self.focused_app),
        )
        self.bridge.add_rule(rule)

    def _remove(self) -> None:
        item = self.rules.currentItem()
        if item is not None:
            self.bridge.remove_rule(str(item.data(256)))

    def _verify(self) -> None:
        self.verdict.setText("checking ...")
        self.bridge.submit("audit_verify", lambda live: live.audit.verify())

    def _done(self, result: WorkResult) -> None:
        if result.error is not None and result.job in {
            "add_rule",
            "remove_rule",
            "audit_verify",
            "kill_switch",
        }:
            self.verdict.setText(f"{result.job}: {result.error}")
        if result.job in {"add_rule", "remove_rule", "kill_switch"}:
            self._show_active()
            self.refresh()
        elif result.job == "rules" and isinstance(result.value, list):
            self.rules.clear()
            for rule in result.value:
                what = rule.sense.value if rule.sense else rule.tool
                item = QListWidgetItem(
                    f"{rule.id}: {rule.decision.value} {what} in {rule.app} ({rule.scope.value})"
                )
                item.setData(256, rule.id)
                self.rules.addItem(item)
        elif result.job == "audit_tail" and isinstance(result.value, list):
            self.audit.clear()
            for row in result.value:
                when = datetime.fromtimestamp(float(row["ts"])).strftime("%H:%M:%S")
                self.audit.addItem(
                    f"{row['seq']:>5} {when} {row['kind']} {row['subject']} {row['decision']}"
                    f" - {row['reason']}"
                )
            self.audit.scrollToBottom()
        elif result.job == "audit_verify" and result.value is not None:
            v = result.value
            intact = getattr(v, "intact", False)
            self.verdict.setText(
                f"intact: {getattr(v, 'entries', 0)} entries checked"
                if intact
                else f"BROKEN: {getattr(v, 'problem', '')}"
            )


def _app_rules(live: Composition) -> list[Rule]:
    """The user's and this session's rules that name an application (presets left out)."""
    return [r for r in live.gate.rules() if r.app and not r.builtin]


def _app_id(ev: object) -> str:
    """The focused app's id in a focus event (``FocusEvent.app``)."""
    return str(getattr(ev, "app", "") or getattr(ev, "app_id", ""))
