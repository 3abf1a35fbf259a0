"""The boundary between the session logic and a model runtime.

Two real implementations: ``LlamaBackend`` (llama-cpp-python in process, one persistent KV
sequence) and ``RemoteBackend`` (any OpenAI-compatible server over httpx, relying on the
server's prompt cache). ``tests/fakes.py`` has a scripted fake; ``tests/test_backend_contract.py``
runs one contract against all three.

A backend holds one sequence: a pinned prefix followed by *spans*, one span per append. Spans
are the unit of eviction: ``drop_oldest`` removes whole spans right after the prefix and closes
the gap, so later spans keep their cache.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol


class SessionBackend(Protocol):
    """One persistent model sequence. Not thread-safe: one owner thread calls it."""

    name: str
    n_ctx: int

    def reset(self, prefix: str) -> None:
        """Start over with only ``prefix`` (the pinned instructions) in the sequence."""
        ...

    def n_tokens(self) -> int:
        """Tokens now in the sequence (prefix included)."""
        ...

    def span_count(self) -> int:
        """Spans appended after the prefix and not yet dropped."""
        ...

    def append(self, text: str, *, join: bool = False) -> None:
        """Append ``text`` as one new span (``join``: as the end of the newest span); only
        its new tokens are evaluated."""
        ...

    def end_probability(self, candidates: Sequence[str]) -> float | None:
        """P(the next token is the first token of one of ``candidates``), over the whole
        vocabulary (distinct tokens summed); None when the backend cannot tell."""
        ...

    def label_logits(self, labels: Sequence[str]) -> list[float]:
        """Scores of each label's first token as the next token (logits or log-probs).

        Labels whose first token the model cannot score get ``-inf``.
        """
        ...

    def spec_begin(self, prime: str) -> None:
        """Start a speculative continuation: ``prime`` then greedy tokens (never kept)."""
        ...

    def spec_step(
        self,
        max_tokens: int,
        stop: Sequence[str],
        budget_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bool]:
        """Extend the speculation by up to ``max_tokens`` tokens (and ``budget_s`` seconds).

        Returns the text generated so far, cut at the first ``stop`` string, and whether the
        continuation is finished. Several steps can spread one reply over several ticks.
        ``cancel`` stops a step between tokens; the continuation is then not finished.
        """
        ...

    def spec_rollback(self) -> None:
        """Discard the speculation; the sequence is exactly as before ``spec_begin``.

        ``append``, ``drop_oldest`` and ``reset`` roll back any speculation first.
        """
        ...

    def drop_oldest(self, n_spans: int) -> None:
        """Remove the ``n_spans`` oldest spans after the prefix, closing the gap."""
        ...

    def close(self) -> None:
        """Release the model (idempotent)."""
        ...
