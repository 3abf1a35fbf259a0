"""One task's loop: the model proposes a step, the registry (gate first) runs it, repeat.

The loop ends when the model finishes (a ``finish`` action, or a reply with no call), when it
runs out of steps, when the model server fails, when the model keeps writing calls that
cannot be repaired, or when the task is cancelled. A redirect ("no, use the other file")
arrives as a user message before the next step. The result line is built from facts the
agent saw for itself (files and lines changed, the last test run) before the model's words.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from background_agent import checkpoints
from background_agent.client import ChatClient, finish_summary
from background_agent.errors import AgentError, ModelServerError, TaskCancelledError
from background_agent.repair import loads_lenient
from background_agent.tools import Registry, describe
from engine.core.handoff import HandoffPackage

log = logging.getLogger(__name__)

Status = Literal["done", "failed", "cancelled"]
MAX_STEPS = 20
MAX_REJECTED_IN_A_ROW = 3
SUMMARY_CHARS = 200

SYSTEM = """You are Tandem's background coding agent. You work inside a git workspace on the \
user's request, one small step at a time, using tools. Read a file before you change it. \
After changing code, run its tests. Never guess file contents. When the work is done, or \
cannot be done, finish with one short sentence for the user."""

JSON_FORMAT = """Every reply is exactly one JSON object and nothing else:
{"tool": "<tool name>", "arguments": {...}}
When you are done: {"tool": "finish", "arguments": {"summary": "<one short sentence>"}}
Tools:
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended and what it cost."""

    status: Status
    summary: str
    steps: int
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    diff: str | None = None


Emit = Callable[[str, str], None]
"""``emit(kind, summary)``: ``progress`` or ``needs_permission`` while the task runs."""


class Agent:
    """Runs one package to an outcome with one client and one registry."""

    def __init__(self, client: ChatClient, registry: Registry, *, max_steps: int = MAX_STEPS):
        self.client, self.registry, self.max_steps = client, registry, max_steps

    def system_prompt(self) -> str:
        """The instructions, with the tool list in ``json`` mode."""
        if self.client.mode != "json":
            return SYSTEM
        lines = []
        for t in self.registry.schemas():
            params = ", ".join(t["parameters"].get("properties", {}))
            lines.append(f"- {t['name']}({params}): {t['description']}")
        return f"{SYSTEM}\n\n{JSON_FORMAT}" + "\n".join(lines)

    def run(
        self,
        package: HandoffPackage,
        cancel: threading.Event,
        redirects: queue.SimpleQueue[str],
        emit: Emit,
    ) -> Outcome:
        """Work on ``package`` until done, failed or cancelled (never raises)."""
        started = time.monotonic()
        ws = self.registry.workspace
        state = _Run()
        try:
            checkpoints.ensure_repo(ws)
            base = checkpoints.snapshot_tree(ws)
        except AgentError as e:
            return Outcome("failed", f"could not start: {e}", 0, 0, 0, 0, 0.0)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": package.prompt()},
        ]
        status, summary = self._loop(messages, state, cancel, redirects, emit)
        diff, facts = None, []
        try:
            changed = checkpoints.changed_lines(ws, base)
            if changed:
                diff = checkpoints.diff_since(ws, base)
                facts.append(_changed(changed))
        except AgentError as e:
            log.warning("task diff unavailable: %s", e)
        if status == "done" and state.tests_passed:
            facts.insert(0, "the tests pass now")
        if status == "done" and facts:
            summary = "; ".join(facts) + (f". {summary}" if summary else "")
        elif facts and status != "done":
            summary = f"{summary} ({facts[-1]})"
        return Outcome(
            status,
            _line(summary) or status,
            state.steps,
            state.calls,
            state.prompt_tokens,
            state.completion_tokens,
            time.monotonic() - started,
            diff,
        )

    def _loop(
        self,
        messages: list[dict[str, Any]],
        st: _Run,
        cancel: threading.Event,
        redirects: queue.SimpleQueue[str],
        emit: Emit,
    ) -> tuple[Status, str]:
        rejected = 0
        schemas = self.registry.schemas()
        while st.steps < self.max_steps:
            if cancel.is_set():
                return "cancelled", "cancelled"
            while not redirects.empty():
                note = redirects.get_nowait()
                messages.append(
                    {"role": "user", "content": f"The user changed the request: {note}"}
                )
            st.steps += 1
            try:
                reply = self.client.complete(messages, schemas, cancel=cancel)
            except TaskCancelledError:
                return "cancelled", "cancelled"
            except ModelServerError as e:
                return "failed", str(e)
            st.prompt_tokens += reply.prompt_tokens
            st.completion_tokens += reply.completion_tokens
            messages.append(self.client.assistant_message(reply))
            if not reply.calls:
                return "done", finish_summary(reply)
            for call in reply.calls:
                if cancel.is_set():
                    return "cancelled", "cancelled"
                result = self.registry.call(call, cancel)
                st.calls += 1
                messages.append(self.client.result_message(call, result.output))
                if result.name == "run_command" and result.exit_code is not None:
                    command = str(_arg(call.arguments, "command"))
                    if "test" in command:
                        st.tests_passed = result.exit_code == 0
                emit("progress", describe(result))
                rejected = rejected + 1 if result.decision == "rejected" else 0
            if rejected >= MAX_REJECTED_IN_A_ROW:
                return "failed", "the model kept writing tool calls that could not be repaired"
        return "failed", f"no result after {self.max_steps} steps"


@dataclass(slots=True)
class _Run:
    steps: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tests_passed: bool = False


def _arg(arguments: str, key: str) -> object:
    obj = loads_lenient(arguments)
    return obj.get(key, "") if isinstance(obj, dict) else ""


def _changed(changed: dict[str, int]) -> str:
    lines = sum(changed.values())
    names = sorted(changed)
    where = names[0] if len(names) == 1 else f"{len(names)} files"
    return f"I changed {lines} line{'s' if lines != 1 else ''} in {where}"


def _line(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= SUMMARY_CHARS else one[: SUMMARY_CHARS - 1] + "…"
