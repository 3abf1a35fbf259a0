"""Whole tool-using tasks against a scripted OpenAI-compatible server on 127.0.0.1.

Real HTTP (streamed SSE), real tools, real git, the real gate with its audit log, the real
bubblewrap sandbox. The "user" answering permission prompts is a broker listener.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from background_agent import checkpoints
from background_agent.checkpoints import undo
from background_agent.client import ChatClient
from background_agent.sandbox import Sandbox
from background_agent.tasks import TaskEvent, TaskManager
from engine.core.handoff import HandoffPackage
from permissions.audit import AuditLog
from permissions.broker import Answer, Prompt, PromptBroker
from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope
from tests.agent_server import Hold, Native, Status, call, finish, python_in_sandbox, scripted

BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PYTEST = "python -m pytest -q -p no:cacheprovider test_calc.py"
WAIT_S = 30.0

needs_sandbox = pytest.mark.skipif(
    not Sandbox(Path("/")).probe().available, reason="bubblewrap cannot run here"
)


@dataclass
class World:
    workspace: Path
    gate: Gate
    audit: AuditLog
    broker: PromptBroker
    asked: list[Prompt] = field(default_factory=list)
    answer: Callable[[Prompt], Decision] = lambda p: Decision.ALLOW
    events: list[TaskEvent] = field(default_factory=list)

    def decisions(self) -> list[tuple[str, str]]:
        """(tool, decision) of every tool decision in the audit log."""
        return [(r["subject"], r["decision"]) for r in self.audit.rows() if r["kind"] == "decision"]

    def manager(self, url: str, **client: object) -> TaskManager:
        kw: dict[str, object] = {"retries": 0, "backoff_s": 0.01, "timeout_s": 10.0}
        kw.update(client)
        return TaskManager(self.gate, self.workspace, ChatClient(url, **kw), self.events.append)  # type: ignore[arg-type]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "calc.py").write_text(BUGGY)
    (ws / "test_calc.py").write_text(TESTS)
    audit = AuditLog(tmp_path / "audit.sqlite3")
    broker = PromptBroker()
    gate = Gate(workspace=ws, audit=audit, broker=broker, timeout_s=5.0)
    for tool in ("write_file", "edit_file"):  # edits inside the workspace: allowed this session
        gate.add_rule(Rule(f"test:{tool}", Decision.ALLOW, tool=tool, scope=Scope.SESSION))
    w = World(ws, gate, audit, broker)

    def user(prompt: Prompt) -> None:  # the user, answering in the window
        w.asked.append(prompt)
        broker.answer(prompt.id, Answer(w.answer(prompt)))

    broker.attach(user)
    yield w
    audit.close()


def run_task(
    w: World, script: list[object], request: str = "fix add", **client: object
) -> TaskEvent:
    with scripted(script) as server:  # type: ignore[arg-type]
        mgr = w.manager(server.url, **client)
        try:
            tid = mgr.start(HandoffPackage(request, 0.0, workspace=w.workspace))
            final = mgr.wait(tid, WAIT_S)
        finally:
            mgr.close()
        w.requests = server.requests  # type: ignore[attr-defined]
    assert final is not None
    return final


@needs_sandbox
def test_a_task_edits_runs_the_tests_and_can_be_undone(world: World) -> None:
    if not python_in_sandbox():
        pytest.skip(
            "this Python cannot run inside the sandbox as this user (see python_in_sandbox)"
        )
    final = run_task(
        world,
        [
            call("read_file", path="calc.py"),
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("run_command", command=PYTEST),
            finish("Fixed add."),
        ],
    )
    assert final.kind == "done"
    assert final.summary.startswith("the tests pass now; I changed 2 lines in calc.py")
    assert final.diff is not None and "-    return a - b" in final.diff
    assert "+    return a + b" in final.diff
    assert (world.workspace / "calc.py").read_text() == BUGGY.replace("-", "+")
    assert world.kinds()[0] == "started" and world.kinds().count("progress") == 3
    # three calls, three audited decisions (counted from the log, not the agent)
    assert world.decisions() == [
        ("read_file", "allow"), ("edit_file", "allow"), ("run_command", "allow"),
    ]  # fmt: skip
    assert final.tool_calls == 3 and final.steps == 4 and final.tokens > 0
    assert "exit status 0" in str(world.requests[3]["messages"][-1]["content"])  # type: ignore[attr-defined]
    # the grammar constraint went out with every request
    assert all(r["response_format"]["type"] == "json_object" for r in world.requests)  # type: ignore[attr-defined]
    assert "restored checkpoint" in undo(world.workspace)
    assert (world.workspace / "calc.py").read_text() == BUGGY


@needs_sandbox
def test_a_task_is_cancelled_while_its_command_runs(world: World) -> None:
    marker = world.workspace / "started.txt"
    script = [call("run_command", command="touch started.txt; sleep 60"), finish("never")]
    with scripted(script) as server:
        mgr = world.manager(server.url)
        try:
            tid = mgr.start(HandoffPackage("wait", 0.0))
            stop = threading.Event()
            while not marker.exists():  # the command is running in the sandbox
                assert not stop.wait(0.02) and mgr.running() == [tid]
            mgr.cancel(tid)  # a 60 s sleep: only the cancel ends it within WAIT_S
            final = mgr.wait(tid, WAIT_S)
        finally:
            mgr.close()
        assert len(server.requests) == 1  # no step after the cancel
    assert final is not None and final.kind == "cancelled"
    assert mgr.running() == []


def test_a_dead_server_fails_the_task_with_a_clear_line(world: World) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    mgr = world.manager(f"http://127.0.0.1:{port}", retries=2)
    try:
        final = mgr.wait(mgr.start(HandoffPackage("anything", 0.0)), WAIT_S)
    finally:
        mgr.close()
    assert final is not None and final.kind == "failed"
    assert "failed (ConnectError) after 3 tries" in final.summary
    assert world.decisions() == []


def test_server_errors_are_retried_then_reported(world: World) -> None:
    final = run_task(world, [Status(503), Status(500), finish("ok")], retries=2)
    assert final.kind == "done" and final.summary == "ok"
    final = run_task(world, [Status(503)] * 3, retries=2)
    assert final.kind == "failed" and "HTTP 503" in final.summary


def test_malformed_calls_are_repaired_or_rejected_never_half_run(world: World) -> None:
    final = run_task(
        world,
        [
            "```json\n{'tool': 'read_file', 'arguments': {'path': 'calc.py',},}\n```",  # repaired
            '{"tool": "write_file", "arguments": {"path": "calc.py"}}',  # no content: rejected
            '{"tool": "write_file", "arguments": {"path": "calc.py", "content": "x", "mode": 1}}',
            call("list_dir", path="."),
            '{"tool": "write_file", "arguments": {"path": "calc.py", "content": "x"',  # cut off
            finish("gave up"),
        ],
    )
    assert final.kind == "done"
    assert (world.workspace / "calc.py").read_text() == BUGGY  # nothing half-written
    # rejected calls never reach the gate or a tool
    assert world.decisions() == [("read_file", "allow"), ("list_dir", "allow")]
    told = [str(r["messages"][-1]["content"]) for r in world.requests[1:6]]  # type: ignore[attr-defined]
    assert "def add" in told[0]
    assert "missing required argument: content" in told[1]
    assert "unknown argument: mode" in told[2]
    assert "malformed call" in told[4]


def test_a_model_that_only_writes_garbage_fails_the_task(world: World) -> None:
    final = run_task(world, ['{"tool": "read_file", "arguments": ['] * 3)
    assert final.kind == "failed" and "could not be repaired" in final.summary


def test_native_tool_calls_are_joined_from_streamed_fragments(world: World) -> None:
    final = run_task(
        world,
        [Native((("read_file", {"path": "calc.py"}), ("list_dir", {"path": "."}))), "All read."],
        mode="native",
    )
    assert final.kind == "done" and final.summary == "All read."
    assert world.decisions() == [("read_file", "allow"), ("list_dir", "allow")]
    tool_turns = [m for m in world.requests[1]["messages"] if m["role"] == "tool"]  # type: ignore[attr-defined]
    assert [m["tool_call_id"] for m in tool_turns] == ["c0", "c1"]
    assert "tools" in world.requests[0] and "response_format" not in world.requests[0]  # type: ignore[attr-defined]


def test_a_permission_denied_mid_task_stops_that_call_and_the_task_goes_on(world: World) -> None:
    world.answer = lambda p: Decision.DENY
    final = run_task(
        world,
        [
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("run_command", command="touch ran.txt"),
            finish("Fixed, but I could not run anything."),
        ],
    )
    assert final.kind == "done"
    assert "needs_permission" in world.kinds()
    assert [p.subject for p in world.asked] == ["run_command"]
    assert not (world.workspace / "ran.txt").exists()
    assert world.decisions() == [("edit_file", "allow"), ("run_command", "deny")]
    told = str(world.requests[2]["messages"][-1]["content"])  # type: ignore[attr-defined]
    assert "denied by the permission gate: user answered deny" in told


def test_paths_outside_the_workspace_never_reach_the_disk(world: World, tmp_path: Path) -> None:
    world.gate.add_rule(  # even a rule that allows writing anywhere does not let a tool out
        Rule("test:anywhere", Decision.ALLOW, tool="write_file", path="/**", scope=Scope.SESSION)
    )
    (world.workspace / "link").symlink_to(tmp_path)
    final = run_task(
        world,
        [
            call("write_file", path=str(tmp_path / "outside.txt"), content="x"),
            call("write_file", path="../outside.txt", content="x"),
            call("write_file", path="link/outside.txt", content="x"),
            call("write_file", path=".git/hooks/post-commit", content="x"),
            finish("tried"),
        ],
    )
    assert final.kind == "done"
    assert not (tmp_path / "outside.txt").exists()
    assert not (world.workspace / ".git" / "hooks" / "post-commit").exists()
    assert len(world.decisions()) == 4  # every attempt audited


ESCAPE = r"""
port=$1; shift
for t in "$@" .git/config; do
  if err=$( { echo escaped >> "$t"; } 2>&1 ); then echo "WROTE $t"
  else echo "NO-WRITE $t: $err"; fi
done
for addr in 127.0.0.1/$port 1.1.1.1/53; do
  if (exec 3<>"/dev/tcp/$addr") 2>/dev/null; then echo "CONNECTED $addr"; else echo NO-CONNECT; fi
done
if env | grep -q -E 'KEY|TOKEN'; then echo SECRET; else echo NO-SECRET; fi
"""


@needs_sandbox
def test_escapes_from_inside_the_sandbox_fail(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-children")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test")
    (world.workspace / "escape.sh").write_text(ESCAPE)
    checkpoints.ensure_repo(world.workspace)
    config = world.workspace / ".git" / "config"
    config_before = config.read_text()
    # outside the workspace: beside it (under /tmp: a private tmpfs inside), in /var/tmp and
    # in the home directory (the real file system, read-only inside)
    targets = [
        tmp_path / "outside.txt",
        Path("/var/tmp") / f"tandem-escape-{os.getpid()}-{tmp_path.name}",
        Path.home() / f".tandem-escape-{os.getpid()}",
    ]
    with scripted([Hold()]) as listener:  # something really listening on the host's loopback
        port = listener.url.split(":")[2].split("/")[0]
        words = " ".join(str(t) for t in targets)
        final = run_task(
            world, [call("run_command", command=f"bash escape.sh {port} {words}"), finish("x")]
        )
        assert listener.requests == []
    out = str(world.requests[1]["messages"][-1]["content"])  # type: ignore[attr-defined]
    assert final.kind == "done" and "exit status 0" in out
    for target in targets:
        assert not target.exists(), f"{target} was written from inside the sandbox"
    for line in (f"NO-WRITE {targets[1]}", "NO-WRITE .git/config"):  # the real FS: read-only
        said = out.split(f"{line}: ")[1].split("\n", maxsplit=1)[0]
        assert "Read-only file system" in said
    assert config.read_text() == config_before
    assert "CONNECTED" not in out and out.count("NO-CONNECT") == 2
    assert "NO-SECRET" in out
    assert world.decisions() == [("run_command", "allow")]


def test_without_a_sandbox_dangerous_commands_are_refused(world: World) -> None:
    gate, ws = world.gate, world.workspace
    events: list[TaskEvent] = []
    with scripted([call("run_command", command="touch ran.txt"), finish("x")]) as server:
        mgr = TaskManager(
            gate,
            ws,
            ChatClient(server.url, retries=0),
            events.append,
            sandbox=lambda w: Sandbox(w, bwrap="/nonexistent/bwrap"),  # as on a machine without
        )
        try:
            final = mgr.wait(mgr.start(HandoffPackage("x", 0.0)), WAIT_S)
        finally:
            mgr.close()
        told = str(server.requests[1]["messages"][-1]["content"])
    assert final is not None and final.kind == "done"
    assert "refused: no sandbox here" in told and "not installed" in told
    assert not (ws / "ran.txt").exists()
    assert world.decisions() == [("run_command", "allow")]  # decided and audited, then refused


def test_several_tasks_run_and_each_reports_once(world: World) -> None:
    with scripted([finish("one"), finish("two")]) as server:
        mgr = world.manager(server.url)
        try:
            a = mgr.start(HandoffPackage("a", 0.0))
            b = mgr.start(HandoffPackage("b", 0.0))
            assert mgr.wait(a, WAIT_S) is not None and mgr.wait(b, WAIT_S) is not None
            assert {e.kind for e in mgr.snapshot()} == {"done"}
            assert {e.task_id for e in mgr.snapshot()} == {a, b}
        finally:
            mgr.close()
    finals = [e for e in world.events if e.final]
    assert sorted(e.summary for e in finals) == ["one", "two"]


def test_a_redirect_reaches_the_model_before_its_next_step(world: World) -> None:
    with scripted(
        [call("list_dir", path="."), Hold(call("list_dir", path=".")), finish("ok")]
    ) as server:
        mgr = world.manager(server.url)
        try:
            tid = mgr.start(HandoffPackage("look around", 0.0))
            assert server.held.wait(WAIT_S)
            mgr.redirect(tid, "only look at calc.py")
            server.release()
            final = mgr.wait(tid, WAIT_S)
        finally:
            mgr.close()
        third = server.requests[2]["messages"]
    assert final is not None and final.kind == "done"
    assert third[-1] == {
        "role": "user",
        "content": "The user changed the request: only look at calc.py",
    }


def test_a_server_that_refuses_the_grammar_is_asked_again_without_it(world: World) -> None:
    final = run_task(world, [Status(400), finish("fine without")])
    assert final.kind == "done" and final.summary == "fine without"
    first, second = world.requests  # type: ignore[attr-defined]
    assert "response_format" in first and "response_format" not in second


@needs_sandbox
def test_commands_time_out_and_their_output_is_truncated(world: World) -> None:
    final = run_task(
        world,
        [
            call("run_command", command="sleep 30", timeout_s=1),
            call("run_command", command="yes tandem | head -c 100000"),
            finish("x"),
        ],
    )
    assert final.kind == "done"
    slept = str(world.requests[1]["messages"][-1]["content"])  # type: ignore[attr-defined]
    chatty = str(world.requests[2]["messages"][-1]["content"])  # type: ignore[attr-defined]
    assert "(killed after 1 s)" in slept
    assert chatty.endswith("[output truncated]") and len(chatty) < 13_000
