"""``tandem eval agent``: coding tasks in the polyglot format, each in a fresh workspace.

A task line (``aider_polyglot_python.jsonl``) carries ``id``, ``instructions_md`` (and
``hints_md``), ``stub_files``, ``test_files`` and ``support_files`` (path -> content) and
``run_tests``. Each task gets a new temporary git workspace with the stubs, tests and support
files, a new gate and audit log, and the real agent (``Agent``: the model client, every tool
behind the gate, commands in the sandbox). Writes inside the workspace are allowed for the
run by session rules; a command prompt is answered "allow once" by the evaluation (commands
run in the sandbox; without one they are refused, as in use); every other prompt is denied.
When the agent stops, the test files are put back as shipped (an agent that edits the tests
does not pass by it) and the tests are run in the sandbox: exit status 0 is a pass.

Per task: passed, status, steps, tool calls (the agent's count), tool calls audited (tool
decisions in that task's audit log, counted from the log), tokens and seconds.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from background_agent import checkpoints
from background_agent.agent import Agent
from background_agent.client import ChatClient
from background_agent.errors import AgentError
from background_agent.sandbox import Sandbox
from background_agent.tools import builtin_registry
from engine.core.handoff import HandoffPackage
from permissions.audit import AuditLog
from permissions.broker import Answer, Prompt, PromptBroker
from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope

MAX_LINE = 1_000_000
TEST_TIMEOUT_S = 120.0
WRITE_TOOLS = ("write_file", "edit_file", "apply_patch")


class TasksError(AgentError):
    """A tasks file that cannot be read (the message names the file and line)."""


@dataclass(frozen=True, slots=True)
class CodingTask:
    """One polyglot task."""

    id: str
    instructions: str
    stubs: dict[str, str]
    tests: dict[str, str]
    support: dict[str, str]


def load_tasks(path: Path, limit: int | None = None) -> list[CodingTask]:
    """Read a tasks file (blank lines skipped).

    Raises:
        TasksError: unreadable file or a malformed line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as e:
        raise TasksError(f"{path}: cannot read: {e}") from e
    tasks: list[CodingTask] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if limit is not None and len(tasks) >= limit:
            break
        where = f"{path}:{n}"
        if len(line) > MAX_LINE:
            raise TasksError(f"{where}: line longer than {MAX_LINE} characters")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TasksError(f"{where}: not JSON ({e.msg})") from None
        tasks.append(_task(obj, where))
    return tasks


def _task(obj: Any, where: str) -> CodingTask:
    if not isinstance(obj, dict):
        raise TasksError(f"{where}: a task must be a JSON object")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise TasksError(f"{where}: needs a non-empty string 'id'")
    files: dict[str, dict[str, str]] = {}
    for key in ("stub_files", "test_files", "support_files"):
        value = obj.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise TasksError(f"{where}: {key!r} must map file names to their text")
        for name in value:
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] == ".git":
                raise TasksError(f"{where}: {key} has a path outside the workspace: {name!r}")
        files[key] = value
    if not files["test_files"]:
        raise TasksError(f"{where}: 'test_files' is empty: nothing would decide a pass")
    text = str(obj.get("instructions_md", "")) + "\n\n" + str(obj.get("hints_md", ""))
    return CodingTask(
        obj["id"], text.strip(), files["stub_files"], files["test_files"], files["support_files"]
    )


def _write(ws: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = ws / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def request_for(task: CodingTask) -> str:
    """What the agent is asked: the instructions, where to write, how to test."""
    stubs = ", ".join(sorted(task.stubs)) or "a new module"
    tests = " ".join(sorted(task.tests))
    return (
        f"{task.instructions}\n\nImplement this in {stubs} (keep its names). The tests are in "
        f"{tests}; run them with: python -m pytest -q {tests}. Do not change the tests."
    )


def run_task(
    task: CodingTask, client: ChatClient, *, max_steps: int, task_timeout_s: float
) -> dict[str, Any]:
    """Solve one task in a fresh workspace; its result row."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tandem-eval-") as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        _write(ws, {**task.support, **task.stubs, **task.tests})
        checkpoints.ensure_repo(ws)
        audit = AuditLog(Path(tmp) / "audit.sqlite3")
        broker = PromptBroker()

        def answer(prompt: Prompt) -> None:  # commands run sandboxed; anything else: no
            ok = prompt.subject == "run_command"
            broker.answer(prompt.id, Answer(Decision.ALLOW if ok else Decision.DENY))

        broker.attach(answer)
        gate = Gate(workspace=ws, audit=audit, broker=broker, timeout_s=5.0)
        for tool in WRITE_TOOLS:
            gate.add_rule(Rule(f"eval:{tool}", Decision.ALLOW, tool=tool, scope=Scope.SESSION))
        sandbox = Sandbox(ws)
        registry = builtin_registry(gate, ws, sandbox=sandbox)
        cancel = threading.Event()
        timer = threading.Timer(task_timeout_s, cancel.set)
        timer.name = "tandem-eval-deadline"
        timer.start()
        try:
            outcome = Agent(client, registry, max_steps=max_steps).run(
                HandoffPackage(request_for(task), 0.0, workspace=ws),
                cancel,
                queue.SimpleQueue(),
                lambda kind, summary: None,
            )
        finally:
            timer.cancel()
            timer.join()
        _write(ws, task.tests)  # the tests as shipped decide
        passed, verdict = _verdict(sandbox, ws, sorted(task.tests))
        audited = sum(1 for r in audit.rows() if r["kind"] == "decision")
        audit.close()
    return {
        "id": task.id,
        "passed": passed,
        "status": outcome.status,
        "steps": outcome.steps,
        "tool_calls": outcome.tool_calls,
        "tool_calls_audited": audited,
        "tokens": outcome.prompt_tokens + outcome.completion_tokens,
        "seconds": round(time.monotonic() - started, 2),
        "summary": outcome.summary,
        "tests": verdict,
    }


def _verdict(sandbox: Sandbox, ws: Path, tests: list[str]) -> tuple[bool, str]:
    probe = sandbox.probe()
    if not probe.available:
        return False, f"not run: {probe.reason}"
    done = sandbox.run(
        ["python", "-m", "pytest", "-q", "--tb=no", "-p", "no:cacheprovider", *tests],
        cwd=ws,
        timeout_s=TEST_TIMEOUT_S,
        max_output=4000,
    )
    last = (done.output.strip().splitlines() or [""])[-1][:200]
    if done.timed_out:
        return False, f"timed out after {TEST_TIMEOUT_S:.0f} s"
    return done.returncode == 0, last


def run_eval(
    tasks: list[CodingTask],
    client: ChatClient,
    *,
    max_steps: int = 20,
    task_timeout_s: float = 900.0,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every task in turn; ``{"pass_rate", "passed", "tasks": [...]}``."""
    rows = []
    for i, task in enumerate(tasks, 1):
        row = run_task(task, client, max_steps=max_steps, task_timeout_s=task_timeout_s)
        rows.append(row)
        if progress is not None:
            progress(i, row)
    passed = sum(1 for r in rows if r["passed"])
    return {
        "pass_rate": round(passed / len(rows), 4) if rows else 0.0,
        "passed": passed,
        "tasks": rows,
    }
