"""The bridge: engine events in as queued Qt signals, the user's intents out as engine commands.

The engine runs on its own thread (the live driver's event loop, ``app.desktop.runtime``);
the gate and the audit log take locks and touch the disk. The Qt thread therefore never calls
them. It only:

- puts control events in the engine's control inbox and typed text in its data lane (both are
  thread-safe queues that never block: the inbox wakes the loop with ``call_soon_threadsafe``);
- answers prompts through the broker (``PromptBroker.answer`` sets an event and returns);
- hands everything else (kill switch, rules, the audit log, settings files, the keyring) to one
  worker thread (``tandem-ui-work``), whose results come back as the ``done`` signal.

Everything the engine says arrives on the engine thread (``sink``) and is re-emitted with a
queued connection, so every slot connected to ``timeline`` runs on the Qt thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from PySide6.QtCore import QObject, Qt, Signal, Slot

from app.composition import Composition
from engine.core.frames import ControlEvent, ControlKind, TypedText
from permissions import settings
from permissions.broker import Answer, Prompt, PromptBroker
from permissions.errors import SettingsError
from permissions.model import Decision, Rule, Scope

log = logging.getLogger(__name__)


class TaskControl(Protocol):
    """What the window needs of the background agent (``background_agent.tasks.TaskManager``)."""

    def cancel(self, task_id: str) -> None:
        """Stop a task (its ``cancelled`` event follows on the timeline)."""
        ...

    def snapshot(self) -> list[Any]:
        """The latest event of every task."""
        ...


@dataclass(frozen=True, slots=True)
class WorkResult:
    """What a job on the worker thread returned (``value``) or the one-line error it raised."""

    job: str
    value: object = None
    error: str | None = None


class Bridge(QObject):
    """One object between the Qt thread and the engine thread (see the module docstring).

    Signals (all delivered on the Qt thread):
        timeline: a typed timeline event (``engine.core.events``, or a newer kind).
        status: a status line from the composition or the runtime.
        prompt: a ``Prompt`` the gate filed (an ask to answer without a modal dialog).
        ready: the engine runs; the composition is attached.
        stopped: the engine thread ended (empty text, or the one-line reason it failed).
        muted: the microphone mute state the user asked for.
        killed_changed: the kill switch was thrown or lifted.
        done: a ``WorkResult`` from the worker thread.
    """

    timeline = Signal(object)
    status = Signal(str)
    prompt = Signal(object)
    ready = Signal()
    stopped = Signal(str)
    muted = Signal(bool)
    killed_changed = Signal(bool)
    done = Signal(object)
    _event_in = Signal(object)
    _status_in = Signal(str)
    _prompt_in = Signal(object)
    _ready_in = Signal()
    _stopped_in = Signal(str)
    _done_in = Signal(object)

    def __init__(self, broker: PromptBroker | None = None) -> None:
        super().__init__()
        self.broker = broker or PromptBroker()
        self.live: Composition | None = None
        self.tasks: TaskControl | None = None
        self.is_muted = False
        self.killed = False
        self._pending: list[object] = []
        self._lock = threading.Lock()
        self._work = ThreadPoolExecutor(1, thread_name_prefix="tandem-ui-work")
        queued = Qt.ConnectionType.QueuedConnection
        self._event_in.connect(self._on_event, queued)
        self._status_in.connect(self.status, queued)
        self._prompt_in.connect(self.prompt, queued)
        self._ready_in.connect(self._on_ready, queued)
        self._stopped_in.connect(self._on_stopped, queued)
        self._done_in.connect(self.done, queued)
        self.broker.attach(self._file_prompt)
        self._attached = True

    # --- called on the engine thread ------------------------------------------------------

    def sink(self, ev: object) -> None:
        """The engine's timeline sink: re-emit on the Qt thread (never blocks)."""
        self._event_in.emit(ev)

    def say(self, line: str) -> None:
        """A status line from the composition (any thread)."""
        self._status_in.emit(line)

    def attach(self, live: Composition) -> None:
        """The composition is built (engine thread): intents can reach it from now on."""
        with self._lock:
            self.live = live
            queued, self._pending = self._pending, []
        for item in queued:
            self._deliver(live, item)
        self._ready_in.emit()

    def detach(self, reason: str) -> None:
        """The engine thread ended (engine thread, last thing it does)."""
        with self._lock:
            self.live = None
        self._stopped_in.emit(reason)

    def _file_prompt(self, prompt: Prompt) -> None:
        self._prompt_in.emit(prompt)

    # --- Qt thread: the user's intents ----------------------------------------------------

    def set_muted(self, on: bool) -> None:
        """Mute or unmute the microphone: the engine has the gate revoke or re-grant the lease."""
        self.is_muted = on
        self._send(ControlEvent(self._now(), ControlKind.MUTE if on else ControlKind.UNMUTE))
        self.muted.emit(on)

    def toggle_mute(self) -> None:
        """The tray click and the push-to-mute hotkey."""
        self.set_muted(not self.is_muted)

    def stop_speaking(self) -> None:
        """Stop Tandem mid-sentence."""
        self._send(ControlEvent(self._now(), ControlKind.STOP_SPEAKING))

    def type_text(self, text: str) -> bool:
        """Text typed to Tandem (a direct request); False when it is empty."""
        text = text.strip()
        if not text:
            return False
        self._send(TypedText(t=self._now(), text=text))
        return True

    def shutdown(self) -> None:
        """Ask the engine to stop (its thread ends after joining its parts)."""
        self._send(ControlEvent(self._now(), ControlKind.SHUTDOWN))

    def answer(self, prompt_id: str, decision: Decision, scope: Scope = Scope.ONCE) -> bool:
        """Answer a pending ask; False when it had closed (timed out, cancelled)."""
        return self.broker.answer(prompt_id, Answer(decision, scope))

    def kill_switch(self, on: bool) -> None:
        """Revoke every sense at once (or lift the switch); the gate runs on the worker."""
        self.killed = on
        self.submit("kill_switch", lambda live: live.gate.kill_switch(on))
        self.killed_changed.emit(on)

    def add_rule(self, rule: Rule) -> None:
        """Add a user rule (the per-app rules); ``always`` ones are also saved to the file."""
        self.submit("add_rule", lambda live: _add_and_save(live, rule))

    def remove_rule(self, rule_id: str) -> None:
        """Remove a user rule and save the file."""
        self.submit("remove_rule", lambda live: _remove_and_save(live, rule_id))

    def cancel_task(self, task_id: str) -> None:
        """Cancel a background task (through the agent's task manager, on the worker)."""
        tasks = self.tasks
        if tasks is not None:
            self._work.submit(self._job, "cancel_task", lambda: tasks.cancel(task_id))

    def submit(self, job: str, fn: Callable[[Composition], object]) -> None:
        """Run ``fn(composition)`` on the worker thread; its result arrives as ``done``.

        Before the engine is up, the job waits and runs as soon as it is attached.
        """
        with self._lock:
            live = self.live
            if live is None:
                self._pending.append((job, fn))
                return
        self._deliver(live, (job, fn))

    def run_job(self, job: str, fn: Callable[[], object]) -> Future[None]:
        """Run ``fn()`` (no composition needed: files, devices, the keyring) on the worker."""
        return self._work.submit(self._job, job, fn)

    def close(self) -> None:
        """Stop listening for prompts and join the worker thread (after the engine stopped)."""
        if self._attached:
            self._attached = False
            self.broker.detach(self._file_prompt)
        self._work.shutdown(wait=True, cancel_futures=True)

    # --- internals ------------------------------------------------------------------------

    def _now(self) -> float:
        live = self.live
        return live.clock.now() if live is not None else 0.0

    def _send(self, item: ControlEvent | TypedText) -> None:
        with self._lock:
            live = self.live
            if live is None:
                self._pending.append(item)
                return
        self._deliver(live, item)

    def _deliver(self, live: Composition, item: object) -> None:
        if isinstance(item, ControlEvent):
            if item.t == 0.0:
                item = ControlEvent(live.clock.now(), item.kind, item.text, item.voice_t)
            live.inbox.put(item)
        elif isinstance(item, TypedText):
            if item.t == 0.0:
                item = TypedText(live.clock.now(), item.text)
            live.engine.data.put(item)
        elif isinstance(item, tuple):
            job, fn = item
            self._work.submit(self._job, job, lambda: fn(live))

    def _job(self, job: str, fn: Callable[[], object]) -> None:
        try:
            result = WorkResult(job, fn())
        except Exception as e:  # every failure becomes one line in the window
            log.warning("ui job %s failed: %s", job, type(e).__name__)
            result = WorkResult(job, None, " ".join(str(e).split()) or type(e).__name__)
        self._done_in.emit(result)

    @Slot(object)
    def _on_event(self, ev: object) -> None:
        self.timeline.emit(ev)

    @Slot()
    def _on_ready(self) -> None:
        self.ready.emit()

    @Slot(str)
    def _on_stopped(self, reason: str) -> None:
        self.stopped.emit(reason)


def _add_and_save(live: Composition, rule: Rule) -> Rule:
    live.gate.add_rule(rule)
    if rule.scope is Scope.ALWAYS:
        _save_rules(live)
    return rule


def _remove_and_save(live: Composition, rule_id: str) -> bool:
    removed = live.gate.remove_rule(rule_id)
    if removed:
        _save_rules(live)
    return removed


def _save_rules(live: Composition) -> None:
    """Write the gate's user rules back, keeping the file's other entries; a file that did not
    load cleanly is left alone (the change holds for this session only)."""
    loaded = settings.load()
    if loaded.problem:
        raise SettingsError(f"not saved, the settings file has a problem: {loaded.problem}")
    settings.save(replace(loaded.settings, rules=live.gate.user_rules()))
