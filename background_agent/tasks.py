"""Several background tasks at once: start, cancel, redirect, and typed events about each.

``TaskManager.start`` gives a ``HandoffPackage`` its own named thread (``tandem-task-<id>``)
with its own tool registry (every tool behind the gate), cancel flag and redirect queue.
Everything a task does comes back as ``TaskEvent`` values through ``on_event`` — started,
progress, needs_permission, then exactly one of done, failed, cancelled — called on the
task's thread (the consumer hands it off: the engine's data lane is thread-safe). ``close``
cancels every task, closes the permission prompts they wait on, and joins every thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from background_agent.agent import MAX_STEPS, Agent
from background_agent.client import ChatClient
from background_agent.sandbox import Sandbox
from background_agent.tools import Registry, Tool, builtin_registry
from engine.core.handoff import HandoffPackage
from permissions.gate import Gate
from permissions.model import AppContext

log = logging.getLogger(__name__)

KINDS = ("started", "progress", "needs_permission", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
JOIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What the TaskManager reports (also becomes the engine's ``TaskUpdate`` frames)."""

    task_id: str
    kind: str  # "started" | "progress" | "needs_permission" | "done" | "failed" | "cancelled"
    summary: str  # one short line, safe to show or speak
    t: float  # engine/monotonic clock seconds
    diff: str | None = None  # unified diff of the task's changes (done)
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0

    @property
    def final(self) -> bool:
        """True for done, failed and cancelled (the task's last event)."""
        return self.kind in FINAL


@dataclass(slots=True)
class _Task:
    id: str
    package: HandoffPackage
    registry: Registry
    cancel: threading.Event = field(default_factory=threading.Event)
    redirects: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None


class TaskManager:
    """Runs background tasks, each on its own thread; reports ``TaskEvent`` values."""

    def __init__(
        self,
        gate: Gate,
        workspace: Path,
        client: ChatClient,
        on_event: Callable[[TaskEvent], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_steps: int = MAX_STEPS,
        extra_tools: Sequence[Tool] = (),
        app: AppContext | None = None,
        sandbox: Callable[[Path], Sandbox] = Sandbox,
    ) -> None:
        self.gate, self.client, self.on_event = gate, client, on_event
        self.workspace = Path(os.path.realpath(workspace))
        self.clock, self.max_steps = clock, max_steps
        self.extra_tools = tuple(extra_tools)
        self.app = app or AppContext()
        self.sandbox = sandbox
        """Makes the sandbox for a task's workspace (bubblewrap; tests point it elsewhere)."""
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._latest: dict[str, TaskEvent] = {}
        self._ids = itertools.count(1)
        self._closed = False

    def start(self, package: HandoffPackage) -> str:
        """Start working on ``package``; its task id."""
        workspace = Path(os.path.realpath(package.workspace or self.workspace))
        with self._lock:
            if self._closed:
                raise RuntimeError("the task manager is closed")
            task_id = f"t{next(self._ids)}"
        emit = self._emitter(task_id)
        registry = builtin_registry(
            self.gate,
            workspace,
            sandbox=self.sandbox(workspace),
            app=self.app,
            on_permission=lambda s: emit("needs_permission", s),
        )
        for tool in self.extra_tools:
            registry.register(tool)
        task = _Task(task_id, package, registry)
        task.thread = threading.Thread(
            target=self._run, args=(task,), name=f"tandem-task-{task_id}", daemon=False
        )
        with self._lock:
            self._tasks[task_id] = task
        emit("started", _short(package.request))
        task.thread.start()
        return task_id

    def cancel(self, task_id: str) -> None:
        """Cancel a task (a no-op for an unknown or finished one)."""
        task = self._get(task_id)
        if task is None:
            return
        task.cancel.set()
        task.registry.cancel_prompts("task cancelled")

    def redirect(self, task_id: str, text: str) -> None:
        """Change what a running task works on; it reads ``text`` before its next step."""
        task = self._get(task_id)
        if task is None or task.cancel.is_set():
            return
        task.redirects.put(text)
        self._emitter(task_id)("progress", "redirected")

    def snapshot(self) -> list[TaskEvent]:
        """The latest event of each task, oldest task first."""
        with self._lock:
            return [self._latest[k] for k in self._tasks if k in self._latest]

    def running(self) -> list[str]:
        """Ids of the tasks that have not finished."""
        with self._lock:
            return [k for k, t in self._tasks.items() if t.thread and t.thread.is_alive()]

    def wait(self, task_id: str, timeout_s: float) -> TaskEvent | None:
        """Wait for a task to finish; its final event, or None on timeout."""
        task = self._get(task_id)
        if task is None or task.thread is None:
            return None
        task.thread.join(timeout_s)
        with self._lock:
            ev = self._latest.get(task_id)
        return ev if ev is not None and ev.final else None

    def close(self) -> None:
        """Cancel every task and join every thread."""
        with self._lock:
            self._closed = True
            tasks = list(self._tasks.values())
        for task in tasks:
            self.cancel(task.id)
        for task in tasks:
            if task.thread is not None:
                task.thread.join(JOIN_TIMEOUT_S)
                if task.thread.is_alive():
                    log.error("task %s did not stop in %.0f s", task.id, JOIN_TIMEOUT_S)

    def _get(self, task_id: str) -> _Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def _emitter(self, task_id: str) -> Callable[..., None]:
        def emit(kind: str, summary: str, **extra: object) -> None:
            ev = TaskEvent(task_id, kind, summary, self.clock(), **extra)  # type: ignore[arg-type]
            with self._lock:
                self._latest[task_id] = ev
            try:
                self.on_event(ev)
            except Exception:  # a consumer's bug must not kill the task thread
                log.exception("task event consumer failed")

        return emit

    def _run(self, task: _Task) -> None:
        emit = self._emitter(task.id)
        agent = Agent(self.client, task.registry, max_steps=self.max_steps)
        outcome = agent.run(task.package, task.cancel, task.redirects, emit)
        log.info(
            "task %s %s: %d steps, %d tool calls, %.1f s",
            task.id, outcome.status, outcome.steps, outcome.tool_calls, outcome.seconds,
        )  # fmt: skip
        emit(
            outcome.status,
            outcome.summary,
            diff=outcome.diff,
            steps=outcome.steps,
            tool_calls=outcome.tool_calls,
            tokens=outcome.prompt_tokens + outcome.completion_tokens,
        )


def _short(text: str, limit: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"
