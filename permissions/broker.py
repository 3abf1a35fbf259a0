"""The prompt broker: "ask" becomes a non-modal request that the user answers, or not.

The gate files a ``Prompt``; the UI (or a voice answer) resolves it with ``answer()``. Nothing
blocks the UI: the caller waits on the prompt with a timeout, and no answer in time means deny.
With no UI attached, every prompt is denied at once. Prompt ids are random, so nothing that
merely *reads* a prompt (the model, a tool's output, the screen) can guess one to answer it.

A prompt can also be *cancelled* while it waits (the gate does it when the kill switch, mute
or a focus change makes the question moot): the waiter wakes at once with no answer, and an
answer that arrives afterwards is refused, like one that arrives after the timeout. A UI
learns that a prompt closed from ``Prompt.closed`` (or its absence from ``pending()``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from permissions.model import Decision, Scope, Sense, ToolRequest

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Answer:
    """The user's answer to a prompt."""

    decision: Decision
    scope: Scope = Scope.ONCE


@dataclass(slots=True)
class Prompt:
    """One pending question (what is asked, never a secret)."""

    id: str
    subject: str
    summary: str
    dangerous: bool
    request: ToolRequest | None = None
    sense: Sense | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _answer: Answer | None = None
    _cancelled: str | None = None

    def wait(self, timeout_s: float) -> Answer | None:
        """The answer, or None when none came in time or the prompt was cancelled."""
        self._done.wait(timeout_s)
        return self._answer

    @property
    def cancelled(self) -> str | None:
        """Why the prompt was cancelled, or None."""
        return self._cancelled

    @property
    def closed(self) -> bool:
        """True once answered or cancelled."""
        return self._done.is_set()


Listener = Callable[[Prompt], None]


class PromptBroker:
    """Routes prompts to whoever listens (the UI) and answers back to the gate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Prompt] = {}
        self._listeners: list[Listener] = []

    @property
    def attached(self) -> bool:
        """True while a UI listens."""
        with self._lock:
            return bool(self._listeners)

    def attach(self, listener: Listener) -> None:
        """A UI starts listening for prompts (called on the gate's thread: just enqueue)."""
        with self._lock:
            self._listeners.append(listener)

    def detach(self, listener: Listener) -> None:
        """A UI stops listening; its pending prompts will time out as deny."""
        with self._lock:
            self._listeners.remove(listener)

    def file(
        self,
        subject: str,
        summary: str,
        dangerous: bool,
        request: ToolRequest | None,
        sense: Sense | None = None,
        *,
        admit: Callable[[Prompt], str | None] | None = None,
    ) -> Prompt | None:
        """Publish a prompt; None when no UI is attached (the caller denies).

        ``admit`` runs after the prompt is pending and before anyone sees it: the caller
        registers it there (so a kill switch can find it) and may return why it is already
        moot, and then the prompt is cancelled unseen. Without that step, an answer given in
        the moment between publishing and registering was accepted after the kill switch.
        """
        prompt = Prompt(secrets.token_hex(16), subject, summary, dangerous, request, sense)
        with self._lock:
            if not self._listeners:
                return None
            self._pending[prompt.id] = prompt
            listeners = list(self._listeners)
        moot = admit(prompt) if admit is not None else None
        if moot is not None:
            self.cancel(prompt.id, moot)
            return prompt
        for listener in listeners:
            listener(prompt)
        return prompt

    def answer(self, prompt_id: str, answer: Answer) -> bool:
        """Resolve a pending prompt (the user's action); False if unknown or already closed."""
        with self._lock:
            prompt = self._pending.pop(prompt_id, None)
            if prompt is None:
                return False
            prompt._answer = answer
        prompt._done.set()
        return True

    def cancel(self, prompt_id: str, reason: str) -> bool:
        """Close a pending prompt without an answer; False if unknown or already closed."""
        with self._lock:
            prompt = self._pending.pop(prompt_id, None)
            if prompt is None:
                return False
            prompt._cancelled = reason
        prompt._done.set()
        return True

    def settle(self, prompt: Prompt) -> Answer | None:
        """Close a prompt after waiting: its answer, or None (a later answer is refused)."""
        with self._lock:
            self._pending.pop(prompt.id, None)
            return prompt._answer

    def pending(self) -> list[Prompt]:
        """Prompts waiting for an answer."""
        with self._lock:
            return list(self._pending.values())
