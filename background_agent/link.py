"""The engine and the background agent, joined: handoffs out, task updates back in.

``AgentLink`` is what a composition root adds (two lines: build it after the engine, close
it at shutdown). It sets the engine's handoff sink to ``TaskManager.start`` and turns every
``TaskEvent`` into a ``TaskUpdate`` frame on the engine's data lane (thread-safe), where the
engine puts it on the timeline and tells a task's result at the next pause. Without a
configured client it uses the embedded agent model, whose ``llama_cpp.server`` is started on
the first handoff (on the task's thread, never the event loop's) and stopped by ``close``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from background_agent.client import ChatClient, Reply
from background_agent.errors import ModelServerError
from background_agent.server import LlamaServer, agent_model
from background_agent.tasks import TaskEvent, TaskManager
from background_agent.tools import Tool
from engine.core.engine import Engine
from engine.core.frames import TaskUpdate
from engine.core.handoff import HandoffPackage
from permissions.gate import Gate

log = logging.getLogger(__name__)


_CANCEL = re.compile(
    r"\b(?:cancel|abort|kill|stop|drop)\b.{0,30}\b(?:task|background|agent|job)\b", re.I
)
_ID = re.compile(r"^\s*(t\d+)\b\s*")
_CANCEL_ALONE = frozenset({"cancel", "cancel that", "cancel it", "never mind the task"})
_REDIRECT = re.compile(
    r"^(?:tell (?:the )?(?:agent|task) to|(?:redirect|change) the task(?: to)?|instead,?)\s+(.+)$",
    re.I,
)


class EmbeddedClient(ChatClient):
    """A client for the embedded agent model; its server starts on the first request."""

    def __init__(self, *, n_threads: int, model: str | None = None, n_ctx: int = 8192) -> None:
        super().__init__("http://127.0.0.1:0/v1", "embedded")
        self._model_path, self._n_threads, self._n_ctx = model, n_threads, n_ctx
        self._server: LlamaServer | None = None
        self._start_lock = threading.Lock()

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        cancel: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Reply:
        """Start the server if it is not running yet, then ``ChatClient.complete``."""
        with self._start_lock:
            if self._server is None:
                spec = agent_model(self._model_path)
                server = LlamaServer(spec.path, n_threads=self._n_threads, n_ctx=self._n_ctx)
                self.base_url, self.model = server.start(), spec.name
                self._server = server
        return super().complete(messages, tools, cancel=cancel, on_text=on_text)

    def close(self) -> None:
        """Close the connections and stop the server."""
        super().close()
        with self._start_lock:
            if self._server is not None:
                self._server.stop()
                self._server = None


class AgentLink:
    """Connects one engine to one ``TaskManager``."""

    def __init__(
        self,
        engine: Engine,
        gate: Gate,
        workspace: Path,
        *,
        clock: Callable[[], float],
        client: ChatClient | None = None,
        n_threads: int = 1,
        extra_tools: Sequence[Tool] = (),
    ) -> None:
        self.engine = engine
        self.client = client if client is not None else EmbeddedClient(n_threads=n_threads)
        self.tasks = TaskManager(
            gate, workspace, self.client, self._to_engine, clock=clock, extra_tools=extra_tools
        )
        engine.handoff = self._hand_off

    def hear(self, text: str) -> str | None:
        """Act on what the user said or typed about the running task: "cancel the task",
        "stop the background job", "tell the agent to use pytest instead", "instead, ...".
        Applies to the newest running task; returns a one-line note of what was done, or
        None (nothing matched, or no task is running)."""
        running = self.tasks.running()
        words = " ".join(text.split())
        if not running or not words:
            return None
        task = running[-1]
        if _CANCEL.search(words) or words.lower().rstrip(".!") in _CANCEL_ALONE:
            self.tasks.cancel(task)
            return f"task {task}: cancelled"
        m = _REDIRECT.match(words)
        if m:
            self.tasks.redirect(task, m.group(1))
            return f"task {task}: redirected"
        return None

    def command(self, line: str) -> str | None:
        """A typed task command: ``/tasks``, ``/cancel [ID]``, ``/redirect [ID] TEXT`` (the
        newest running task when no id is given); its one-line answer, or None when ``line``
        is not a task command."""
        name, _, rest = line.strip().partition(" ")
        if name == "/tasks":
            lines = [f"{e.task_id} {e.kind}: {e.summary}" for e in self.tasks.snapshot()]
            return "\n".join(lines) or "no tasks"
        if name not in ("/cancel", "/redirect"):
            return None
        m = _ID.match(rest)
        running = self.tasks.running()
        task = m.group(1) if m else (running[-1] if running else None)
        rest = rest[m.end() :] if m else rest
        if task is None:
            return "no task is running"
        if name == "/cancel":
            self.tasks.cancel(task)
            return f"task {task}: cancel asked"
        if not rest.strip():
            return "usage: /redirect [ID] TEXT"
        self.tasks.redirect(task, rest.strip())
        return f"task {task}: redirected"

    def _hand_off(self, package: HandoffPackage) -> None:
        try:
            self.tasks.start(package)
        except (RuntimeError, ModelServerError) as e:  # closing down, or no model
            log.warning("handoff not started: %s", e)

    def _to_engine(self, ev: TaskEvent) -> None:
        self.engine.data.put(TaskUpdate(ev.t, ev.task_id, ev.summary, ev.final, ev.kind))

    def close(self) -> None:
        """Cancel and join every task, then stop the model server."""
        self.engine.handoff = None
        self.tasks.close()
        self.client.close()
