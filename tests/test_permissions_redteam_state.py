"""Red team, second pass: the gate's state over time, its scopes and its files.

Classes of issue 9 covered here (each with its own table of cases):

- 10: prompts re-check the world (kill switch, mute, focus, rules) while they wait and after
  the answer;
- 11: remembered answers never carry globs and are exactly as narrow as the request;
- 12: ``once`` rules are used up atomically, and only ``always`` rules are persisted;
- 15: deep arguments, audit rollback, malformed settings and audit files (one line each,
  never a traceback), caps, a wiped audit log, concurrent first use.

Runs as root and as an unprivileged user with a fresh HOME: everything lives under tmp_path
and ``TANDEM_CONFIG_DIR``/``TANDEM_DATA_DIR``; nothing needs root or a keyring.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from permissions import audit as audit_mod
from permissions import settings
from permissions.audit import AuditLog, canonical_json, digest_args
from permissions.bench import measure_decision_cost
from permissions.broker import Answer, Prompt, PromptBroker
from permissions.errors import AuditError, PermissionsError
from permissions.gate import REMEMBERED, Gate, Lease, literal_glob
from permissions.model import AppContext, Decision, Rule, Scope, Sense, ToolRequest, Verdict

EDITOR = AppContext("code", "parser.py - project")
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real config or data dir, whoever runs the tests."""
    monkeypatch.setenv(settings.ENV_CONFIG_DIR, str(tmp_path / "cfg"))
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(tmp_path / "data"))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    out = tmp_path / "ws"
    (out / "src").mkdir(parents=True)
    (out / "src" / "a.py").write_text("x = 1\n")
    return out


def deep(n: int = 5000) -> list[Any]:
    """A list nested ``n`` levels deep (built without recursion)."""
    root: list[Any] = []
    cur = root
    for _ in range(n):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    return root


# --- class 10: prompts re-check the world ----------------------------------------------------


class HookedBroker(PromptBroker):
    """A broker whose ``settle`` runs a hook first: the world changes *after* the answer
    was given and before the gate looks at it (the race a cancellation cannot catch)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_settle: Callable[[], None] | None = None

    def settle(self, prompt: Prompt) -> Answer | None:
        if self.before_settle is not None:
            self.before_settle()
        return super().settle(prompt)


class Asking:
    """Runs one request on a thread (as the agent does) while the test plays the user."""

    def __init__(self, broker: PromptBroker, call: Callable[[], object]) -> None:
        self.broker = broker
        self.seen: list[Prompt] = []
        broker.attach(self.seen.append)
        self.result: list[object] = []
        self.thread = threading.Thread(target=lambda: self.result.append(call()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.seen, "no prompt was filed"

    @property
    def prompt(self) -> Prompt:
        return self.seen[0]

    def answer(self, answer: Answer) -> bool:
        return self.broker.answer(self.prompt.id, answer)

    def done(self) -> object:
        self.thread.join(5)
        assert not self.thread.is_alive()
        return self.result[0]


ALLOW_SESSION = Answer(Decision.ALLOW, Scope.SESSION)
SLACK = AppContext("slack", "general - Slack")
DENY_SLACK = Rule("u:no-slack-screen", Decision.DENY, sense=Sense.SCREEN, app="slack*")
CAMERA_ASKS = Rule("u:camera-asks", Decision.ASK, sense=Sense.CAMERA)  # off by default

# (name, what is asked, what happens while the prompt waits, is the prompt cancelled?)
SENSE_WHILE_WAITING: list[tuple[str, Sense, Callable[[Gate], None], bool]] = [
    ("kill switch / screen", Sense.SCREEN, lambda g: g.kill_switch(), True),
    ("kill switch / microphone", Sense.MICROPHONE, lambda g: g.kill_switch(), True),
    ("kill switch / camera", Sense.CAMERA, lambda g: g.kill_switch(), True),
    (
        "kill on and off again",
        Sense.SCREEN,
        lambda g: (g.kill_switch(), g.kill_switch(False)),
        True,
    ),
    ("mute mic / mic prompt", Sense.MICROPHONE, lambda g: g.mute(Sense.MICROPHONE), True),
    ("mute screen / screen prompt", Sense.SCREEN, lambda g: g.mute(Sense.SCREEN), True),
    ("mute mic / screen prompt", Sense.SCREEN, lambda g: g.mute(Sense.MICROPHONE), False),
    ("mute screen / mic prompt", Sense.MICROPHONE, lambda g: g.mute(Sense.SCREEN), False),
    (
        "focus keepassxc / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("keepassxc")),
        True,
    ),
    (
        "focus 1password / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("1password")),
        True,
    ),
    (
        "focus bitwarden / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("Bitwarden")),
        True,
    ),
    (
        "focus seahorse / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("seahorse")),
        True,
    ),
    (
        "focus private window / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("firefox", "Mozilla Firefox Private Browsing")),
        True,
    ),
    ("focus user-denied app / screen", Sense.SCREEN, lambda g: g.focus_changed(SLACK), True),
    (
        "focus keepassxc / microphone",
        Sense.MICROPHONE,
        lambda g: g.focus_changed(AppContext("keepassxc")),
        False,
    ),
    (
        "focus another editor / screen",
        Sense.SCREEN,
        lambda g: g.focus_changed(AppContext("vim")),
        False,
    ),
    (
        "deny rule added / screen",
        Sense.SCREEN,
        lambda g: g.add_rule(Rule("u:no-code", Decision.DENY, sense=Sense.SCREEN, app="code")),
        True,
    ),
    (
        "deny rule added / mic",
        Sense.MICROPHONE,
        lambda g: g.add_rule(Rule("u:no-mic", Decision.DENY, sense=Sense.MICROPHONE)),
        True,
    ),
]


@pytest.mark.parametrize("sense", [Sense.MICROPHONE, Sense.CAMERA])
def test_a_kill_switch_the_moment_a_prompt_appears_refuses_the_answer(
    sense: Sense, tmp_path: Path
) -> None:
    """The user hits the kill switch and then "allow" as soon as the prompt shows: the prompt
    is already the gate's to cancel, so the answer is refused (it was accepted, and only the
    re-check after it kept the lease closed, when the prompt was shown before the gate had
    registered it)."""
    broker = PromptBroker()
    log = AuditLog(tmp_path / "audit.sqlite3")
    gate = Gate((CAMERA_ASKS,), broker=broker, audit=log)
    accepted: list[bool] = []

    def user(prompt: Prompt) -> None:  # on the thread that files it, before file() returns
        gate.kill_switch()
        accepted.append(broker.answer(prompt.id, ALLOW_SESSION))

    broker.attach(user)
    assert gate.open_sense(sense, EDITOR, timeout_s=5) is None
    assert accepted == [False]
    assert [r["kind"] for r in log.rows()].count("cancel") == 1
    assert not [r for r in gate.rules() if r.id.startswith(REMEMBERED)]


@pytest.mark.parametrize(
    ("sense", "during", "cancelled"),
    [c[1:] for c in SENSE_WHILE_WAITING],
    ids=[c[0] for c in SENSE_WHILE_WAITING],
)
def test_a_sense_prompt_is_cancelled_by_what_makes_it_moot(
    sense: Sense, during: Callable[[Gate], None], cancelled: bool, tmp_path: Path
) -> None:
    broker = PromptBroker()
    log = AuditLog(tmp_path / "audit.sqlite3")
    gate = Gate((DENY_SLACK, CAMERA_ASKS), broker=broker, audit=log)
    asking = Asking(broker, lambda: gate.open_sense(sense, EDITOR, timeout_s=5))
    during(gate)
    accepted = asking.answer(ALLOW_SESSION)
    lease = asking.done()
    if cancelled:
        assert asking.prompt.cancelled and asking.prompt.closed
        assert accepted is False  # the late answer is refused
        assert lease is None
        assert [r["kind"] for r in log.rows()].count("cancel") == 1
        assert not [r for r in gate.rules() if r.id.startswith(REMEMBERED)]
    else:
        assert accepted is True and isinstance(lease, Lease) and lease.active
    assert log.verify().intact


TOOL_WHILE_WAITING: list[tuple[str, Callable[[Gate], None], bool]] = [
    ("kill switch", lambda g: g.kill_switch(), True),
    ("kill on and off again", lambda g: (g.kill_switch(), g.kill_switch(False)), True),
    (
        "deny rule for the tool",
        lambda g: g.add_rule(Rule("u:nw", Decision.DENY, tool="write_file")),
        True,
    ),
    (
        "deny rule for the path",
        lambda g: g.add_rule(Rule("u:ns", Decision.DENY, tool="*", path="src/**")),
        True,
    ),
    (
        "deny rule for the app now focused",
        lambda g: (
            g.add_rule(Rule("u:nk", Decision.DENY, tool="*", app="keepassxc")),
            g.focus_changed(AppContext("keepassxc")),
        ),
        True,
    ),
    ("mute the microphone", lambda g: g.mute(Sense.MICROPHONE), False),
    ("focus moves to an editor", lambda g: g.focus_changed(AppContext("vim")), False),
    (
        "an unrelated deny rule",
        lambda g: g.add_rule(Rule("u:nr", Decision.DENY, tool="delete_file")),
        False,
    ),
]


@pytest.mark.parametrize(
    ("during", "cancelled"),
    [c[1:] for c in TOOL_WHILE_WAITING],
    ids=[c[0] for c in TOOL_WHILE_WAITING],
)
def test_a_tool_prompt_is_cancelled_by_what_makes_it_moot(
    during: Callable[[Gate], None], cancelled: bool, ws: Path
) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("write_file", {"path": "src/b.py", "content": "y"}, ws, EDITOR)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    during(gate)
    accepted = asking.answer(Answer(Decision.ALLOW, Scope.ALWAYS))
    verdict = asking.done()
    assert isinstance(verdict, Verdict)
    if cancelled:
        assert accepted is False and verdict.decision is Decision.DENY
        assert gate.user_rules() == tuple(
            r for r in gate.user_rules() if not r.id.startswith(REMEMBERED)
        )
    else:
        assert accepted is True and verdict.decision is Decision.ALLOW


# (name, the change that lands between the user's answer and the gate's re-check)
AFTER_ANSWER: list[tuple[str, Callable[[Gate], None]]] = [
    ("kill switch", lambda g: g.kill_switch()),
    ("mute the asked sense", lambda g: g.mute(Sense.SCREEN)),
    ("focus to keepassxc", lambda g: g.focus_changed(AppContext("keepassxc"))),
    (
        "focus to a private window",
        lambda g: g.focus_changed(AppContext("chromium", "New Incognito tab")),
    ),
    ("focus to a user-denied app", lambda g: g.focus_changed(SLACK)),
    (
        "deny rule for the app",
        lambda g: g.add_rule(Rule("u:nc", Decision.DENY, sense=Sense.SCREEN, app="code")),
    ),
    (
        "deny rule for every app",
        lambda g: g.add_rule(Rule("u:ns", Decision.DENY, sense=Sense.SCREEN)),
    ),
]


@pytest.mark.parametrize("change", [c[1] for c in AFTER_ANSWER], ids=[c[0] for c in AFTER_ANSWER])
def test_an_answer_is_re_evaluated_before_a_lease_is_granted(
    change: Callable[[Gate], None],
) -> None:
    broker = HookedBroker()
    gate = Gate((DENY_SLACK,), broker=broker)
    broker.before_settle = lambda: change(gate)
    asking = Asking(broker, lambda: gate.open_sense(Sense.SCREEN, EDITOR, timeout_s=5))
    assert asking.answer(ALLOW_SESSION) is True  # answered in time ...
    assert asking.done() is None  # ... and still refused: the world changed meanwhile
    assert not [r for r in gate.rules() if r.id.startswith(REMEMBERED)]  # nothing remembered


TOOL_AFTER_ANSWER: list[tuple[str, Callable[[Gate], None]]] = [
    ("kill switch", lambda g: g.kill_switch()),
    (
        "deny rule for the tool",
        lambda g: g.add_rule(Rule("u:nw", Decision.DENY, tool="write_file")),
    ),
    (
        "deny rule for the path",
        lambda g: g.add_rule(Rule("u:np", Decision.DENY, tool="*", path="src/b.py")),
    ),
    (
        "deny glob for the path",
        lambda g: g.add_rule(Rule("u:ng", Decision.DENY, tool="write_*", path="src/*")),
    ),
    (
        "deny rule for the workspace",
        lambda g: g.add_rule(Rule("u:nws", Decision.DENY, tool="*", workspace="/*")),
    ),
    (
        "focus to an app a deny rule names",
        lambda g: (
            g.add_rule(Rule("u:nk", Decision.DENY, tool="*", app="keepassxc")),
            g.focus_changed(AppContext("keepassxc")),
        ),
    ),
]


@pytest.mark.parametrize(
    "change", [c[1] for c in TOOL_AFTER_ANSWER], ids=[c[0] for c in TOOL_AFTER_ANSWER]
)
def test_an_answer_is_re_evaluated_before_a_tool_runs(
    change: Callable[[Gate], None], ws: Path
) -> None:
    broker = HookedBroker()
    gate = Gate(broker=broker)
    broker.before_settle = lambda: change(gate)
    req = ToolRequest("write_file", {"path": "src/b.py", "content": "y"}, ws, EDITOR)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(Answer(Decision.ALLOW, Scope.ALWAYS)) is True
    verdict = asking.done()
    assert isinstance(verdict, Verdict) and verdict.decision is Decision.DENY
    assert not [r for r in gate.user_rules() if r.id.startswith(REMEMBERED)]


def test_a_prompt_filed_just_after_the_kill_switch_is_cancelled_at_once(ws: Path) -> None:
    class KillingBroker(PromptBroker):
        def file(self, *a: Any, **kw: Any) -> Prompt | None:
            prompt = super().file(*a, **kw)
            gate.kill_switch()  # between the gate's decision and its prompt
            return prompt

    broker = KillingBroker()
    broker.attach(lambda p: None)
    gate = Gate(broker=broker)
    t0 = time.monotonic()
    v = gate.authorize(ToolRequest("write_file", {"path": "src/b.py"}, ws), timeout_s=5)
    assert v.decision is Decision.DENY and "kill switch" in v.reason
    assert time.monotonic() - t0 < 2  # cancelled, not left to time out
    assert gate.open_sense(Sense.SCREEN, EDITOR, timeout_s=5) is None


def test_late_and_cancelled_answers_stay_refused(ws: Path) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("write_file", {"path": "src/b.py"}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=0.05))
    verdict = asking.done()
    assert isinstance(verdict, Verdict) and verdict.decision is Decision.DENY
    for answer in (ALLOW_SESSION, Answer(Decision.ALLOW, Scope.ALWAYS), Answer(Decision.ALLOW)):
        assert asking.answer(answer) is False
    assert broker.cancel(asking.prompt.id, "late") is False
    assert gate.explain_tool(req).decision is Decision.ASK  # nothing was remembered


# --- class 11: remembered answers never carry globs ------------------------------------------


OUTSIDE_GLOBS = [
    "/*",
    "/**",
    "/etc/*",
    "/e?c/passwd",
    "/[e]tc/passwd",
    "/tmp/x[!a]",
    "/*/*",
    "/[!z]*",
]


@pytest.mark.parametrize("pattern", OUTSIDE_GLOBS)
def test_answering_a_glob_path_remembers_only_that_literal_path(pattern: str, ws: Path) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("read_file", {"path": pattern}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(ALLOW_SESSION)
    verdict = asking.done()
    assert isinstance(verdict, Verdict) and verdict.decision is Decision.ALLOW
    (rule,) = [r for r in gate.rules() if r.id.startswith(REMEMBERED)]
    assert rule.path == literal_glob(os.path.realpath(pattern))
    assert rule.tool == "read_file" and rule.workspace == literal_glob(os.path.realpath(ws))
    assert gate.explain_tool(req).decision is Decision.ALLOW  # the exact path, remembered
    for other in ("/etc/passwd", "/etc/shadow", "/root/.bashrc", "/tmp/xb", "/", "/etc"):
        probe = ToolRequest("read_file", {"path": other}, ws)
        assert gate.explain_tool(probe).decision is not Decision.ALLOW, other


INSIDE_GLOBS = ["*", "**", "src/*", "src/**", "*.py", "src/[ab].py", "?", "~x", "src/a?py"]


@pytest.mark.parametrize("pattern", INSIDE_GLOBS)
def test_answering_an_inside_glob_remembers_only_that_literal_path(pattern: str, ws: Path) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("write_file", {"path": pattern, "content": "x"}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(ALLOW_SESSION)
    assert isinstance(v := asking.done(), Verdict) and v.decision is Decision.ALLOW
    assert gate.explain_tool(req).decision is Decision.ALLOW
    for other in ("src/a.py", "src/b.py", "a.py", "x", "src/ab.py", "setup.py"):
        if other == pattern:
            continue
        probe = ToolRequest("write_file", {"path": other}, ws)
        assert gate.explain_tool(probe).decision is Decision.ASK, other


@pytest.mark.parametrize("tool", ["read_file", "list_dir", "search"])
def test_a_remembered_directory_does_not_cover_what_is_inside_it(
    tool: str, tmp_path: Path, ws: Path
) -> None:
    outside = tmp_path / "other"
    (outside / "deeper").mkdir(parents=True)
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest(tool, {"path": str(outside)}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(ALLOW_SESSION)
    assert isinstance(v := asking.done(), Verdict) and v.decision is Decision.ALLOW
    assert gate.explain_tool(req).decision is Decision.ALLOW
    for inner in ("secret.txt", "deeper", "deeper/x", "../other2"):
        probe = ToolRequest(tool, {"path": str(outside / inner)}, ws)
        assert gate.explain_tool(probe).decision is Decision.ASK, inner


@pytest.mark.parametrize("name", ["ws[1]", "ws*", "w?s", "[ws]", "ws[!x]"])
def test_a_workspace_with_glob_characters_is_matched_literally(name: str, tmp_path: Path) -> None:
    ws = tmp_path / name
    twins = [tmp_path / n for n in ("wsX", "ws1", "w_s", "w", "s")]  # unescaped, they match
    for d in (ws, *twins):
        d.mkdir(exist_ok=True)
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("write_file", {"path": "a.py"}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(ALLOW_SESSION)
    assert isinstance(v := asking.done(), Verdict) and v.decision is Decision.ALLOW
    assert gate.explain_tool(req).decision is Decision.ALLOW  # matches its own workspace
    for d in twins:
        assert (
            gate.explain_tool(ToolRequest("write_file", {"path": "a.py"}, d)).decision
            is Decision.ASK
        )


NOT_REMEMBERED = [
    ("mcp tool (opaque arguments)", ToolRequest("mcp__fs__write", {"path": "a.py"}, Path())),
    ("two paths", ToolRequest("move_file", {"source": "src/a.py", "destination": "b.py"}, Path())),
    ("a command", ToolRequest("run_command", {"command": "pytest -q"}, Path())),
    ("a write outside", ToolRequest("write_file", {"path": "/tmp/tandem-x"}, Path())),
    ("git internals", ToolRequest("write_file", {"path": ".git/config"}, Path())),
    ("unknown tool", ToolRequest("frobnicate", {}, Path())),
]


@pytest.mark.parametrize("req", [c[1] for c in NOT_REMEMBERED], ids=[c[0] for c in NOT_REMEMBERED])
@pytest.mark.parametrize("scope", [Scope.SESSION, Scope.ALWAYS])
def test_requests_no_rule_describes_exactly_ask_again(
    req: ToolRequest, scope: Scope, ws: Path
) -> None:
    req = ToolRequest(req.tool, req.args, ws)
    broker = PromptBroker()
    gate = Gate(broker=broker)
    before = gate.rules()
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(Answer(Decision.ALLOW, scope))
    assert isinstance(v := asking.done(), Verdict) and v.decision is Decision.ALLOW
    assert gate.rules() == before and gate.user_rules() == ()
    assert gate.explain_tool(req).decision is not Decision.ALLOW


@pytest.mark.parametrize("app_id", ["*", "code*", "[a-z]*", "?", "*o*", "[!z]"])
def test_a_sense_answer_is_bound_to_the_literal_app_id(app_id: str) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    app = AppContext(app_id, "window")
    asking = Asking(broker, lambda: gate.open_sense(Sense.SCREEN, app, timeout_s=5))
    assert asking.answer(ALLOW_SESSION)
    assert isinstance(asking.done(), Lease)
    assert gate.explain_sense(Sense.SCREEN, app).decision is Decision.ALLOW
    for other in ("code", "slack", "a", "x", "firefox"):
        assert gate.explain_sense(Sense.SCREEN, AppContext(other)).decision is Decision.ASK, other


def test_an_always_answer_round_trips_through_the_settings_file_still_literal(
    tmp_path: Path, ws: Path
) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("read_file", {"path": "/*"}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(Answer(Decision.ALLOW, Scope.ALWAYS))
    asking.done()
    settings.save(settings.Settings(gate.user_rules()))
    loaded = settings.load()
    assert loaded.problem is None
    again = Gate(loaded.settings.rules)
    assert again.explain_tool(req).decision is Decision.ALLOW
    assert (
        again.explain_tool(ToolRequest("read_file", {"path": "/etc/passwd"}, ws)).decision
        is Decision.ASK
    )


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("/*", "/[*]"),
        ("a?b", "a[?]b"),
        ("[x]", "[[]x]"),
        ("~", "[~]"),
        ("~/a", "[~]/a"),
        ("a~", "a~"),
        ("", ""),
    ],
)
def test_literal_glob(text: str, pattern: str) -> None:
    import fnmatch

    assert literal_glob(text) == pattern
    assert fnmatch.fnmatchcase(text, pattern)


# --- class 12: scopes mean what they say -----------------------------------------------------


ONCE_RULES = [
    (
        "write under src",
        Rule("u:w", Decision.ALLOW, tool="write_file", path="src/**", scope=Scope.ONCE),
        ToolRequest("write_file", {"path": "src/a.py"}, Path()),
    ),
    (
        "a command (dangerous, explicit)",
        Rule("u:c", Decision.ALLOW, tool="run_command", command="pytest", scope=Scope.ONCE),
        ToolRequest("run_command", {"command": "pytest -q"}, Path()),
    ),
    (
        "a git write",
        Rule("u:g", Decision.ALLOW, tool="git_commit", scope=Scope.ONCE),
        ToolRequest("git_commit", {"message": "x"}, Path()),
    ),
    (
        "an mcp tool",
        Rule("u:m", Decision.ALLOW, tool="mcp__github__create_issue", scope=Scope.ONCE),
        ToolRequest("mcp__github__create_issue", {"title": "x"}, Path()),
    ),
    (
        "a read outside",
        Rule("u:r", Decision.ALLOW, tool="read_file", path="/etc/hostname", scope=Scope.ONCE),
        ToolRequest("read_file", {"path": "/etc/hostname"}, Path()),
    ),
]


@pytest.mark.parametrize(
    ("rule", "req"), [c[1:] for c in ONCE_RULES], ids=[c[0] for c in ONCE_RULES]
)
def test_a_once_rule_allows_one_request(rule: Rule, req: ToolRequest, ws: Path) -> None:
    req = ToolRequest(req.tool, req.args, ws)
    gate = Gate()
    gate.add_rule(rule)
    assert gate.explain_tool(req).decision is Decision.ALLOW  # explaining uses nothing up
    assert gate.explain_tool(req).decision is Decision.ALLOW
    first = gate.authorize(req)
    assert first.decision is Decision.ALLOW and first.rule == rule.id
    second = gate.authorize(req)
    assert second.decision is Decision.DENY and second.rule != rule.id  # asked; no UI: deny
    assert rule not in gate.rules() and gate.user_rules() == ()


def together(n: int, work: Callable[[], object]) -> list[object]:
    """Run ``work`` on ``n`` threads released at the same instant; their results."""
    barrier = threading.Barrier(n)
    out: list[object] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            out.append(work())
        except BaseException as e:  # handed to the test below, not swallowed
            errors.append(e)

    pool = [threading.Thread(target=one) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return out


@pytest.mark.parametrize("threads", [2, 8, 32])
def test_concurrent_requests_cannot_both_use_a_once_rule(threads: int, ws: Path) -> None:
    req = ToolRequest("write_file", {"path": "src/a.py"}, ws)
    for _ in range(10):
        gate = Gate()
        gate.add_rule(
            Rule("u:w", Decision.ALLOW, tool="write_file", path="src/**", scope=Scope.ONCE)
        )
        out = together(threads, lambda gate=gate: gate.authorize(req).decision)  # type: ignore[misc]
        assert out.count(Decision.ALLOW) == 1 and len(out) == threads


def test_a_once_sense_rule_grants_one_lease() -> None:
    gate = Gate()
    gate.add_rule(Rule("u:s", Decision.ALLOW, sense=Sense.SCREEN, scope=Scope.ONCE))
    assert gate.explain_sense(Sense.SCREEN, EDITOR).decision is Decision.ALLOW
    assert gate.open_sense(Sense.SCREEN, EDITOR) is not None
    assert gate.open_sense(Sense.SCREEN, EDITOR) is None  # asked; no UI: deny


@pytest.mark.parametrize("decision", [Decision.DENY, Decision.ASK])
def test_once_deny_and_ask_rules_are_not_used_up(decision: Decision, ws: Path) -> None:
    gate = Gate()
    gate.add_rule(Rule("u:x", decision, tool="read_file", path="src/**", scope=Scope.ONCE))
    req = ToolRequest("read_file", {"path": "src/a.py"}, ws)
    for _ in range(3):
        v = gate.authorize(req)
        assert v.decision is Decision.DENY and (v.rule == "u:x" or "no one to ask" in v.reason)
    assert gate.explain_tool(req).rule == "u:x"


def test_a_once_rule_from_the_settings_file_holds_once_per_run_and_stays_in_the_file(
    ws: Path,
) -> None:
    rule = Rule("u:w", Decision.ALLOW, tool="write_file", path="src/**", scope=Scope.ONCE)
    settings.save(settings.Settings((rule,)))
    req = ToolRequest("write_file", {"path": "src/a.py"}, ws)
    for _run in range(2):
        gate = Gate(settings.load().settings.rules)
        assert gate.authorize(req).decision is Decision.ALLOW
        assert gate.authorize(req).decision is Decision.DENY
        assert gate.user_rules() == (rule,)  # the user's file is kept as written
        settings.save(settings.Settings(gate.user_rules()))


ADDED = [
    (Scope.ONCE, False),
    (Scope.SESSION, False),
    (Scope.ALWAYS, True),
]


@pytest.mark.parametrize(("scope", "persisted"), ADDED)
@pytest.mark.parametrize("kind", ["tool", "sense", "deny"])
def test_only_always_rules_are_persisted(scope: Scope, persisted: bool, kind: str) -> None:
    rule = {
        "tool": Rule("u:x", Decision.ALLOW, tool="write_file", scope=scope),
        "sense": Rule("u:x", Decision.ALLOW, sense=Sense.SCREEN, scope=scope),
        "deny": Rule("u:x", Decision.DENY, tool="*", path="secrets/**", scope=scope),
    }[kind]
    gate = Gate()
    gate.add_rule(rule)
    assert rule in gate.rules()
    assert (rule in gate.user_rules()) is persisted
    settings.save(settings.Settings(gate.user_rules()))
    assert (rule in settings.load().settings.rules) is persisted


@pytest.mark.parametrize(("scope", "persisted"), ADDED)
def test_only_always_answers_are_persisted(scope: Scope, persisted: bool, ws: Path) -> None:
    broker = PromptBroker()
    gate = Gate(broker=broker)
    req = ToolRequest("write_file", {"path": "src/b.py"}, ws)
    asking = Asking(broker, lambda: gate.authorize(req, timeout_s=5))
    assert asking.answer(Answer(Decision.ALLOW, scope))
    asking.done()
    assert bool(gate.user_rules()) is persisted
    assert (gate.explain_tool(req).decision is Decision.ALLOW) is (scope is not Scope.ONCE)


def test_a_spent_once_rule_is_not_brought_back_by_other_rule_changes(ws: Path) -> None:
    gate = Gate((Rule("u:w", Decision.ALLOW, tool="write_file", path="src/**", scope=Scope.ONCE),))
    req = ToolRequest("write_file", {"path": "src/a.py"}, ws)
    assert gate.authorize(req).decision is Decision.ALLOW
    gate.add_rule(Rule("u:other", Decision.ALLOW, tool="read_file"))
    gate.remove_rule("u:other")
    assert gate.authorize(req).decision is Decision.DENY
    assert gate.remove_rule("u:w") is True and gate.user_rules() == ()


# --- class 15: deep arguments ----------------------------------------------------------------


DEEP_REQUESTS = [
    ("read_file", lambda: {"path": deep()}),
    ("read_file", lambda: {"path": "src/a.py", "extra": deep()}),
    ("write_file", lambda: {"path": "src/a.py", "content": deep()}),
    ("run_command", lambda: {"command": deep()}),
    ("run_command", lambda: {"command": "pytest", "cwd": deep()}),
    ("fetch_url", lambda: {"url": deep()}),
    ("mcp__fs__write_file", lambda: {"path": deep(), "content": {"a": deep()}}),
    ("frobnicate", lambda: {"x": deep()}),
    ("move_file", lambda: {"source": deep(), "destination": deep()}),
    ("read_file", deep),  # arguments that are not even an object
]


@pytest.mark.parametrize(
    ("tool", "make"), DEEP_REQUESTS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(DEEP_REQUESTS)]
)
def test_5000_deep_arguments_are_decided_and_audited(
    tool: str, make: Callable[[], Any], tmp_path: Path, ws: Path
) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    gate = Gate(audit=log, broker=PromptBroker())
    args = make()
    req = ToolRequest(tool, args, ws)
    assert gate.explain_tool(req).decision in (Decision.ALLOW, Decision.ASK, Decision.DENY)
    v = gate.authorize(req, timeout_s=0.01)
    assert v.decision in (Decision.ALLOW, Decision.DENY)
    assert log.verify().intact
    assert "sha256:" in log.tail(1)[0]["args"]


CANONICAL = [
    ({"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
    ([None, True, False, 1.5, "x"], '[null,true,false,1.5,"x"]'),
    ({1: "a", "1": "b"}, None),  # mixed key types: no crash
    ((1, (2,)), "[1,[2]]"),
    (float("nan"), '"float:nan"'),
    (float("inf"), '"float:inf"'),
    (10**5000, None),  # more digits than int->str allows
    (b"bytes", None),
    ({1, 2}, None),
    (object(), None),
    ("snow\u2603\udcff", None),  # a lone surrogate
    (deep(5000), "[" * 5001 + "]" * 5001),
    ({"k": {"k": {"k": {}}}}, '{"k":{"k":{"k":{}}}}'),
]


@pytest.mark.parametrize(
    ("value", "expected"), CANONICAL, ids=[f"v{i}" for i in range(len(CANONICAL))]
)
def test_canonical_json_never_recurses(value: object, expected: str | None) -> None:
    text = canonical_json(value)
    if expected is not None:
        assert text == expected
    assert digest_args({"v": value})["v"].startswith("sha256:")
    assert all(v.startswith("sha256:") for v in digest_args(value).values())


def test_a_self_containing_value_is_hashed_not_looped() -> None:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    assert canonical_json(a) == '[1,"<cycle>"]'
    assert canonical_json(d) == '{"self":"<cycle>"}'
    shared = [1]
    assert canonical_json([shared, shared]) == "[[1],[1]]"  # shared is not a cycle


# --- class 15: the audit log rolls back whatever goes wrong ----------------------------------


class FailingDb:
    """A connection proxy that raises on the statement that contains ``when``."""

    def __init__(self, db: sqlite3.Connection, when: str, exc: BaseException) -> None:
        self.db, self.when, self.exc = db, when, exc

    def execute(self, sql: str, *a: Any) -> Any:
        if self.when in sql:
            raise self.exc
        return self.db.execute(sql, *a)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


FAILURES = [
    ("entry hash raises", "hash", RuntimeError("boom")),
    ("entry hash interrupted", "hash", KeyboardInterrupt()),
    ("INSERT fails", "INSERT", sqlite3.OperationalError("disk I/O error")),
    ("SELECT fails", "SELECT seq", sqlite3.DatabaseError("malformed")),
    ("INSERT raises non-sqlite", "INSERT", ValueError("odd")),
    ("COMMIT fails", "COMMIT", sqlite3.OperationalError("disk full")),
    ("head write fails", "head", OSError(28, "No space left on device")),
]


@pytest.mark.parametrize(("where", "exc"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_a_failure_inside_append_rolls_back_and_leaves_nothing_locked(
    where: str, exc: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    log.append("decision", "read_file", "allow", "before")
    real_db = log._db
    if where == "hash":
        monkeypatch.setattr(audit_mod, "entry_hash", lambda *a: (_ for _ in ()).throw(exc))
    elif where == "head":
        monkeypatch.setattr(log, "_write_head", lambda *a: (_ for _ in ()).throw(exc))
    else:
        monkeypatch.setattr(log, "_db", FailingDb(real_db, where, exc))
    with pytest.raises((AuditError, type(exc))):
        log.append("decision", "read_file", "allow", "failing", args={"path": "x"})
    monkeypatch.undo()
    assert not real_db.in_transaction
    other = sqlite3.connect(tmp_path / "audit.sqlite3", timeout=0)
    other.execute("BEGIN IMMEDIATE")  # would raise "database is locked"
    other.execute("ROLLBACK")
    other.close()
    assert log.append("decision", "read_file", "allow", "after") == 2
    result = log.verify()
    assert result.intact, result.problem
    assert [r["reason"] for r in log.rows()] == ["before", "after"]


def test_an_exception_in_a_gate_record_does_not_lock_the_next_decision(
    tmp_path: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    gate = Gate(audit=log)
    monkeypatch.setattr(
        audit_mod, "entry_hash", lambda *a: (_ for _ in ()).throw(RuntimeError("x"))
    )
    req = ToolRequest("read_file", {"path": "src/a.py"}, ws)
    with pytest.raises(RuntimeError):
        gate.authorize(req)
    monkeypatch.undo()
    assert gate.authorize(req).decision is Decision.ALLOW
    assert log.verify().intact


# --- class 15: malformed settings files give one line and keep the deny rules ---------------


def _doc(rules: list[Any], **extra: Any) -> bytes:
    return json.dumps({"schema": 1, **extra, "rules": rules}).encode()


GOOD_DENY = {"id": "u:no-secrets", "decision": "deny", "tool": "*", "path": "secrets/**"}
GOOD_ALLOW = {"id": "u:curl", "decision": "allow", "tool": "fetch_url", "scope": "session"}

# (name, file content, rule ids expected to be in force, fragment of the problem line)
MALFORMED_SETTINGS: list[tuple[str, bytes, set[str], str]] = [
    ("empty", b"", set(), "not valid JSON"),
    ("whitespace", b"  \n\t ", set(), "not valid JSON"),
    ("binary garbage", bytes(range(256)) * 4, set(), "not valid JSON"),
    ("utf-16", '{"schema": 1}'.encode("utf-16"), set(), "not valid JSON"),
    ("truncated", _doc([GOOD_DENY])[:-5], set(), "not valid JSON"),
    ("null", b"null", set(), "expected a JSON object"),
    ("a list", b"[]", set(), "expected a JSON object"),
    ("a number", b"5", set(), "expected a JSON object"),
    ("a string", b'"rules"', set(), "expected a JSON object"),
    ("5000 deep", b"[" * 5000 + b"]" * 5000, set(), "not valid JSON"),
    (
        "5000 deep in a rule",
        b'{"schema": 1, "rules": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        set(),
        "not valid JSON",
    ),
    ("huge integer", b'{"schema": 1' + b"0" * 5000 + b"}", set(), "not valid JSON"),
    (
        "schema a string",
        json.dumps({"schema": "1", "rules": [GOOD_DENY, GOOD_ALLOW]}).encode(),
        {"u:no-secrets"},
        "schema",
    ),
    (
        "schema true",
        json.dumps({"schema": True, "rules": [GOOD_DENY, GOOD_ALLOW]}).encode(),
        {"u:no-secrets"},
        "schema",
    ),
    (
        "schema missing",
        json.dumps({"rules": [GOOD_DENY, GOOD_ALLOW]}).encode(),
        {"u:no-secrets"},
        "schema",
    ),
    (
        "schema from the future",
        json.dumps({"schema": 99, "rules": [GOOD_DENY, GOOD_ALLOW]}).encode(),
        {"u:no-secrets"},
        "newer",
    ),
    (
        "rules a dict",
        json.dumps({"schema": 1, "rules": {"a": GOOD_DENY}}).encode(),
        set(),
        "must be a list",
    ),
    (
        "rules a string",
        json.dumps({"schema": 1, "rules": "deny all"}).encode(),
        set(),
        "must be a list",
    ),
    (
        "a rule that is a number",
        _doc([5, GOOD_DENY, GOOD_ALLOW]),
        {"u:no-secrets", "u:curl"},
        "rule 0 is not an object",
    ),
    ("a rule that is a list", _doc([[], GOOD_DENY]), {"u:no-secrets"}, "rule 0 is not an object"),
    (
        "allow with id a number",
        _doc([{**GOOD_ALLOW, "id": 5}, GOOD_DENY]),
        {"u:no-secrets"},
        "rule 0",
    ),
    (
        "allow with a bad decision",
        _doc([{**GOOD_ALLOW, "decision": "maybe"}, GOOD_DENY]),
        {"u:no-secrets"},
        "rule 0",
    ),
    (
        "allow with decision a list",
        _doc([{**GOOD_ALLOW, "decision": ["allow"]}, GOOD_DENY]),
        {"u:no-secrets"},
        "rule 0",
    ),
    (
        "allow with tool a number",
        _doc([{**GOOD_ALLOW, "tool": 5}, GOOD_DENY]),
        {"u:no-secrets"},
        "must be a string",
    ),
    (
        "allow with an unknown key",
        _doc([{**GOOD_ALLOW, "hots": "x.com"}, GOOD_DENY]),
        {"u:no-secrets"},
        "unknown key 'hots'",
    ),
    (
        "allow claiming builtin",
        _doc([{**GOOD_ALLOW, "builtin": True}, GOOD_DENY]),
        {"u:no-secrets"},
        "unknown key 'builtin'",
    ),
    (
        "allow with a bad scope",
        _doc([{**GOOD_ALLOW, "scope": "forever"}, GOOD_DENY]),
        {"u:no-secrets"},
        "rule 0",
    ),
    (
        "allow with a bad sense",
        _doc([{"id": "s", "decision": "allow", "sense": "eyes"}, GOOD_DENY]),
        {"u:no-secrets"},
        "rule 0",
    ),
    (
        "allow with neither tool nor sense",
        _doc([{"id": "s", "decision": "allow"}, GOOD_DENY]),
        {"u:no-secrets"},
        "needs 'tool' or 'sense'",
    ),
    (
        "allow with a preset id",
        _doc([{**GOOD_ALLOW, "id": "preset:mine"}, GOOD_DENY]),
        {"u:no-secrets"},
        "reserved",
    ),
    (
        "deny with a preset id",
        _doc([{**GOOD_DENY, "id": "preset:mine"}]),
        {"settings:preset:mine"},
        "reserved",
    ),
    (
        "deny with tool a number",
        _doc([{**GOOD_DENY, "tool": 5}, GOOD_ALLOW]),
        {"u:no-secrets", "u:curl"},
        "broader deny",
    ),
    (
        "deny with path a list",
        _doc([{**GOOD_DENY, "path": ["secrets"]}]),
        {"u:no-secrets"},
        "broader deny",
    ),
    (
        "deny with an unknown key",
        _doc([{**GOOD_DENY, "paht": "x"}]),
        {"u:no-secrets"},
        "unknown key 'paht'",
    ),
    (
        "deny with a bad sense",
        _doc([{"id": "d", "decision": "deny", "sense": "scren"}]),
        {"d:microphone", "d:screen", "d:camera"},
        "broader deny",
    ),
    (
        "deny with no id",
        _doc([{"decision": "deny", "tool": "run_command"}]),
        {"settings:0"},
        "broader deny",
    ),
    (
        "deny in capitals",
        _doc([{**GOOD_DENY, "decision": "DENY"}]),
        {"u:no-secrets"},
        "broader deny",
    ),
    ("deny with a bad scope", _doc([{**GOOD_DENY, "scope": 3}]), {"u:no-secrets"}, "broader deny"),
    (
        "extra nested 40 deep",
        _doc([GOOD_DENY, GOOD_ALLOW], extra=json.loads("[" * 40 + "]" * 40)),
        {"u:no-secrets", "u:curl"},
        "nested",
    ),
    (
        "too many rules",
        _doc([GOOD_DENY] + [GOOD_ALLOW] * settings.MAX_RULES),
        {"u:no-secrets"},
        "more than",
    ),
    ("over the size cap", _doc([GOOD_DENY], pad="x" * settings.MAX_BYTES), set(), "larger than"),
]


@pytest.mark.parametrize(
    ("content", "kept", "problem"),
    [c[1:] for c in MALFORMED_SETTINGS],
    ids=[c[0] for c in MALFORMED_SETTINGS],
)
def test_a_malformed_settings_file_gives_one_line_and_keeps_every_readable_deny(
    content: bytes, kept: set[str], problem: str, tmp_path: Path, ws: Path
) -> None:
    path = tmp_path / "cfg" / settings.FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    loaded = settings.load(path)
    assert loaded.problem is not None and problem in loaded.problem
    assert "\n" not in loaded.problem and "\r" not in loaded.problem
    assert {r.id for r in loaded.settings.rules} == kept
    assert all(r.decision is not Decision.ALLOW or r.id == "u:curl" for r in loaded.settings.rules)
    gate = Gate(loaded.settings.rules)
    secret = ToolRequest("read_file", {"path": "secrets/key"}, ws)
    if "u:no-secrets" in kept:
        assert gate.explain_tool(secret).decision is Decision.DENY
    write = ToolRequest("write_file", {"path": "src/a.py"}, ws)
    assert gate.explain_tool(write).decision in (Decision.ASK, Decision.DENY)


def test_a_broken_deny_rule_denies_more_never_less(ws: Path) -> None:
    path = settings.config_dir() / settings.FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(
        _doc([{"id": "d", "decision": "deny", "tool": ["run_command"], "path": "secrets/**"}])
    )
    gate = Gate(settings.load().settings.rules)
    for tool in ("read_file", "write_file", "search"):
        assert (
            gate.explain_tool(ToolRequest(tool, {"path": "secrets/x"}, ws)).decision
            is Decision.DENY
        )
    assert (
        gate.explain_tool(ToolRequest("read_file", {"path": "src/a.py"}, ws)).decision
        is Decision.ALLOW
    )


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"{oops"),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"\x00" * 100),
        lambda p: p.write_bytes(b"[]"),
        lambda p: p.write_bytes(b'{"schema": 1, "rules": 7}'),
        lambda p: p.write_bytes(b"[" * 100_000),
        lambda p: (p.unlink(), p.mkdir()),
        lambda p: p.unlink(),
        lambda p: (p.unlink(), p.symlink_to(p.with_name("nowhere"))),
    ],
    ids=[
        "not json",
        "empty",
        "nul bytes",
        "a list",
        "rules a number",
        "deep",
        "a directory",
        "deleted",
        "dangling link",
    ],
)
def test_a_ruined_file_falls_back_to_the_last_good_copys_deny_rules(
    damage: Callable[[Path], object], ws: Path
) -> None:
    deny = Rule("u:no-secrets", Decision.DENY, tool="*", path="secrets/**")
    allow = Rule("u:all-writes", Decision.ALLOW, tool="write_file")
    path = settings.save(settings.Settings((deny, allow)))
    assert settings.load().problem is None  # a clean load keeps a last good copy
    assert path.with_name(path.name + settings.LAST_GOOD_SUFFIX).is_file()
    damage(path)
    loaded = settings.load()
    assert loaded.problem is not None and "\n" not in loaded.problem
    assert "1 deny rules" in loaded.problem
    assert loaded.settings.rules == (deny,)  # the deny, never the allow
    gate = Gate(loaded.settings.rules)
    assert (
        gate.explain_tool(ToolRequest("read_file", {"path": "secrets/k"}, ws)).decision
        is Decision.DENY
    )
    assert (
        gate.explain_tool(ToolRequest("write_file", {"path": "src/a.py"}, ws)).decision
        is Decision.ASK
    )


def test_with_no_last_good_copy_the_line_says_no_deny_rule_of_yours_applies() -> None:
    path = settings.config_dir() / settings.FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{oops")
    loaded = settings.load()
    assert loaded.settings.rules == ()
    assert loaded.problem is not None
    assert "none of your own deny rules could be read" in loaded.problem
    assert "only the built-in ones apply" in loaded.problem


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


SPECIAL_FILES: list[tuple[str, Callable[[Path], object], str]] = [
    ("directory", lambda p: p.mkdir(), "is a directory"),
    ("fifo", os.mkfifo, "not a regular file"),
    ("link to /dev/zero", lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    ("link to a directory", lambda p: p.symlink_to(p.parent), "is a directory"),
    (
        "link loop",
        lambda p: (p.symlink_to(p.with_name("b")), p.with_name("b").symlink_to(p)),
        "cannot be read",
    ),
    ("sparse 50 MB", lambda p: _sparse(p, 50 << 20), "larger than"),
    ("2 MiB of JSON", lambda p: p.write_bytes(_doc([GOOD_DENY] * 20_000)), "larger than"),
]


@pytest.mark.parametrize(
    ("make", "problem"), [c[1:] for c in SPECIAL_FILES], ids=[c[0] for c in SPECIAL_FILES]
)
def test_special_settings_files_give_one_line_and_never_hang(
    make: Callable[[Path], object], problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "cfg" / settings.FILE_NAME
    path.parent.mkdir(parents=True)
    make(path)
    t0 = time.monotonic()
    loaded = settings.load(path)
    assert time.monotonic() - t0 < 1.0
    assert loaded.problem is not None and problem in loaded.problem and "\n" not in loaded.problem
    assert loaded.settings.rules == ()


@pytest.mark.skipif(ROOT, reason="root reads a mode-000 file anyway")
def test_an_unreadable_settings_file_gives_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / settings.FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(_doc([GOOD_DENY]))
    path.chmod(0)
    loaded = settings.load(path)
    assert loaded.problem is not None and "cannot be read" in loaded.problem
    assert "\n" not in loaded.problem


def test_a_50_mb_settings_file_does_not_slow_decisions(tmp_path: Path, ws: Path) -> None:
    path = tmp_path / "cfg" / settings.FILE_NAME
    path.parent.mkdir(parents=True)
    rule = json.dumps(GOOD_ALLOW).encode()
    path.write_bytes(b'{"schema": 1, "rules": [' + b",".join([rule] * 700_000) + b"]}")
    assert path.stat().st_size > 40 << 20
    t0 = time.monotonic()
    loaded = settings.load(path)
    assert time.monotonic() - t0 < 1.0  # not even read: it is over the cap
    gate = Gate(loaded.settings.rules)
    req = ToolRequest("read_file", {"path": "src/a.py"}, ws)
    t0 = time.perf_counter()
    for _ in range(100):
        gate.explain_tool(req)
    assert (time.perf_counter() - t0) / 100 < 0.05


def test_rules_are_parsed_once_at_load_not_per_decision(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.save(
        settings.Settings((Rule("u:w", Decision.ALLOW, tool="write_file", path="src/**"),))
    )
    gate = Gate(settings.load().settings.rules)
    calls = []
    monkeypatch.setattr(Rule, "from_json", staticmethod(calls.append))
    monkeypatch.setattr(settings, "load", lambda *a: calls.append(a))
    for _ in range(50):
        assert (
            gate.authorize(ToolRequest("write_file", {"path": "src/a.py"}, ws)).decision
            is Decision.ALLOW
        )
    assert calls == []


def test_the_keys_a_rule_may_have_are_the_models_own() -> None:
    import dataclasses

    keys = settings.rule_keys()
    assert keys <= {f.name for f in dataclasses.fields(Rule)}
    assert {"id", "decision", "tool", "sense", "path", "command", "scope"} <= keys
    assert not keys & {"builtin", "matcher"}  # preset-only fields are never read from a file


def test_control_characters_in_a_hostile_file_cannot_forge_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(_doc([{"id": "x\n[ok] all good\x1b[2J", "decision": "allow", "tool": 5}]))
    loaded = settings.load(path)
    assert loaded.problem is not None
    assert all(ch.isprintable() for ch in loaded.problem)


# --- class 15: malformed audit files give one line ------------------------------------------


def _filled(path: Path, marker: Path | None = None, n: int = 5) -> AuditLog:
    log = AuditLog(path, marker=marker)
    for i in range(n):
        log.append("decision", "read_file", "allow", f"r{i}", args={"path": f"{i}.py"})
    return log


# (name, how the files are damaged, where the one line appears: "open" or "verify")
AUDIT_DAMAGE: list[tuple[str, Callable[[Path, Path], object], str]] = [
    (
        "database is garbage",
        lambda db, head: db.write_bytes(b"not a database at all" * 100),
        "open",
    ),
    ("database is a directory", lambda db, head: (db.unlink(), db.mkdir()), "open"),
    ("database truncated", lambda db, head: db.write_bytes(db.read_bytes()[:1000]), "any"),
    ("head is a directory", lambda db, head: (head.unlink(), head.mkdir()), "open"),
    ("head is garbage", lambda db, head: head.write_bytes(b"\xff\xfe garbage"), "verify"),
    ("head is empty", lambda db, head: head.write_bytes(b""), "verify"),
    ("head is 5000 deep", lambda db, head: head.write_bytes(b"[" * 5000 + b"]" * 5000), "verify"),
    ("head is huge", lambda db, head: head.write_bytes(b" " * (2 << 20)), "verify"),
    ("head seq a string", lambda db, head: head.write_text('{"seq": "x", "hash": "y"}'), "verify"),
    ("head seq a float", lambda db, head: head.write_text('{"seq": 1e400, "hash": "y"}'), "verify"),
    ("head a list", lambda db, head: head.write_text("[1, 2]"), "verify"),
    ("head hash wrong", lambda db, head: head.write_text('{"seq": 5, "hash": "0"}'), "verify"),
    ("head ahead", lambda db, head: head.write_text('{"seq": 50, "hash": "0"}'), "verify"),
    ("head a fifo", lambda db, head: (head.unlink(), os.mkfifo(head)), "verify"),
    (
        "head links to /dev/zero",
        lambda db, head: (head.unlink(), head.symlink_to("/dev/zero")),
        "verify",
    ),
]


def _entries_rewritten(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.commit()
    con.close()


AUDIT_DAMAGE += [
    (
        "entries table replaced",
        lambda db, head: _entries_rewritten(
            db,
            "DROP TABLE entries; CREATE TABLE entries (x TEXT); INSERT INTO entries VALUES ('a');",
        ),
        "any",
    ),
    (
        "entries with wrong types",
        lambda db, head: _entries_rewritten(
            db, "UPDATE entries SET prev = 5, seq = seq WHERE seq = 2;"
        ),
        "verify",
    ),
    (
        "meta table garbage",
        lambda db, head: _entries_rewritten(
            db, "DELETE FROM meta; INSERT INTO meta VALUES ('x', 'y');"
        ),
        "open",
    ),
    (
        "meta chain unknown",
        lambda db, head: _entries_rewritten(
            db, "UPDATE meta SET value = 'rot13' WHERE key = 'chain';"
        ),
        "open",
    ),
]


@pytest.mark.parametrize(
    ("damage", "where"), [c[1:] for c in AUDIT_DAMAGE], ids=[c[0] for c in AUDIT_DAMAGE]
)
def test_a_damaged_audit_log_gives_one_line_never_a_traceback(
    damage: Callable[[Path, Path], object], where: str, tmp_path: Path
) -> None:
    db = tmp_path / "data" / "audit.sqlite3"
    log = _filled(db)
    log.close()
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    damage(db, db.with_name(db.name + ".head"))
    try:
        reopened = AuditLog(db)
    except AuditError as e:
        assert where in ("open", "any"), e
        assert "\n" not in str(e)
        return
    assert where in ("verify", "any")
    t0 = time.monotonic()
    result = reopened.verify()
    assert time.monotonic() - t0 < 2
    assert result.intact is False
    assert result.problem and "\n" not in result.problem
    try:
        reopened.tail(2)
    except AuditError as e:  # unreadable rows: one line too
        assert "\n" not in str(e)


@pytest.mark.skipif(ROOT, reason="root opens a mode-000 file anyway")
def test_an_unreadable_audit_log_gives_one_line(tmp_path: Path) -> None:
    db = tmp_path / "data" / "audit.sqlite3"
    _filled(db).close()
    for p in db.parent.iterdir():
        p.chmod(0)
    try:
        with pytest.raises(AuditError) as e:
            AuditLog(db).verify()
        assert "\n" not in str(e.value)
    finally:
        for p in db.parent.iterdir():
            p.chmod(0o600)


# --- class 15: a wiped audit log is not intact ----------------------------------------------


def _wipe(db: Path, *, head: bool = True) -> None:
    for suffix in ("", "-wal", "-shm", *([".head"] if head else [])):
        Path(str(db) + suffix).unlink(missing_ok=True)


WIPES: list[tuple[str, Callable[[Path, Path], object], bool, str]] = [
    ("database and head deleted", lambda db, m: _wipe(db), False, "wiped or replaced"),
    ("database deleted, head kept", lambda db, m: _wipe(db, head=False), False, "truncated"),
    (
        "whole data dir deleted",
        lambda db, m: [p.unlink() for p in db.parent.iterdir()],
        False,
        "wiped",
    ),
    (
        "database replaced by another log",
        lambda db, m: (
            _wipe(db),
            _filled(db.with_name("other.sqlite3")).close(),
            db.with_name("other.sqlite3").rename(db),
            db.with_name("other.sqlite3.head").rename(db.with_name(db.name + ".head")),
        ),
        False,
        "wiped or replaced",
    ),
    ("marker garbage", lambda db, m: m.write_bytes(b"\x00garbage"), False, "marker"),
    ("marker a directory", lambda db, m: (m.unlink(), m.mkdir()), False, "directory"),
    ("marker record removed", lambda db, m: m.write_text('{"schema": 1, "logs": {}}'), True, ""),
    # The documented limit: with every witness gone (no keyring), a wipe looks like a first run.
    ("everything deleted, marker too", lambda db, m: (_wipe(db), m.unlink()), True, ""),
]


@pytest.mark.parametrize(
    ("wipe", "intact", "problem"), [c[1:] for c in WIPES], ids=[c[0] for c in WIPES]
)
def test_a_wiped_audit_log_does_not_verify_when_a_marker_was_recorded(
    wipe: Callable[[Path, Path], object], intact: bool, problem: str, tmp_path: Path
) -> None:
    db = tmp_path / "data" / audit_mod.AUDIT_FILE
    marker = tmp_path / "cfg" / audit_mod.MARKER_FILE
    _filled(db, marker).close()
    assert marker.is_file()
    wipe(db, marker)
    try:
        result = AuditLog(db, marker=marker).verify()
    except AuditError as e:
        assert not intact and problem in str(e) and "\n" not in str(e)
        return
    assert result.intact is intact, result
    assert problem in (result.problem or "")


def test_the_user_can_accept_a_new_log_after_looking_into_it(tmp_path: Path) -> None:
    db, marker = tmp_path / "data" / "audit.sqlite3", tmp_path / "cfg" / "marker.json"
    _filled(db, marker).close()
    _wipe(db)
    log = AuditLog(db, marker=marker)
    assert not log.verify().intact
    assert not AuditLog(db, marker=marker).verify().intact  # it stays reported on each open
    log.reset_witnesses()
    assert log.verify().intact
    assert AuditLog(db, marker=marker).verify().intact


def test_open_log_uses_the_marker_in_the_config_dir_and_says_when_the_chain_is_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)  # no keyring backend
    log = audit_mod.open_log()
    log.append("decision", "read_file", "allow", "x")
    result = log.verify()
    assert result.intact and result.note and "plain hash chain" in result.note
    assert result.to_json()["note"] == result.note
    assert (settings.config_dir() / audit_mod.MARKER_FILE).is_file()
    log.close()
    _wipe(settings.data_dir() / audit_mod.AUDIT_FILE)
    again = audit_mod.open_log().verify()
    assert not again.intact and "wiped or replaced" in (again.problem or "")


# --- class 15: concurrent first use ----------------------------------------------------------


WRITER = """
import sys
from pathlib import Path
from permissions.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), marker=Path(sys.argv[2]))
for i in range(int(sys.argv[3])):
    log.append("decision", "read_file", "allow", f"w{sys.argv[4]}-{i}")
log.close()
"""


@pytest.mark.parametrize("writers", [2, 4])
def test_processes_opening_a_fresh_log_together_never_see_database_is_locked(
    writers: int, tmp_path: Path
) -> None:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    for round_ in range(5):
        db = tmp_path / f"r{round_}" / "audit.sqlite3"
        marker = tmp_path / f"r{round_}" / "cfg" / "marker.json"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(db), str(marker), "25", str(w)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for w in range(writers)
        ]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()[-2000:]
        result = AuditLog(db, marker=marker).verify()
        assert result.intact, result.problem
        assert result.entries == 25 * writers


def test_threads_opening_a_fresh_log_together_never_fail(tmp_path: Path) -> None:
    def writer(db: Path) -> int:
        log = AuditLog(db)
        for i in range(20):
            log.append("decision", "read_file", "allow", f"entry {i}")
        log.close()
        return 20

    for round_ in range(5):
        db = tmp_path / f"t{round_}" / "audit.sqlite3"
        assert together(4, lambda db=db: writer(db)) == [20] * 4  # type: ignore[misc]
        result = AuditLog(db).verify()
        assert result.intact and result.entries == 80


# --- the decision cost ---------------------------------------------------------------------


def test_measure_decision_cost_reports_the_ordinary_mix() -> None:
    out = measure_decision_cost(10, 200)
    assert out["n_rules"] == 10 and out["n_requests"] == 200
    assert out["p50_us"] <= out["p99_us"] <= out["max_us"]
    assert out["mean_us"] > 0
    assert set(out["decisions"]) == {
        "read_file:allow",
        "run_command:allow",
        "write_file:allow",
        "fetch_url:allow",
    }


def test_errors_are_one_family() -> None:
    assert issubclass(AuditError, PermissionsError)
