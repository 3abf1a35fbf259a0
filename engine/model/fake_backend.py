"""A scripted, deterministic ``SessionBackend``: the fake beside the real backends.

Engine timelines in virtual time use it (``tests/``), and ``tandem bench control`` makes a
slow one of it (``engine.eval.bench_control.SlowBackend``) to keep the model thread busy.

Tokens are whitespace-separated words, so sizes are predictable. The next-label scores come
from ``rules``: the first rule whose key appears in the *last appended span* wins; otherwise
``silent`` is most likely. Replies are fixed text, produced ``words_per_step`` words a step.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class FakeBackend:
    """Implements ``engine.model.backend.SessionBackend`` without a model."""

    def __init__(
        self,
        n_ctx: int = 4096,
        rules: dict[str, str] | None = None,
        reply: str = "Here is a short answer.",
        end_prob: float | None = None,
    ) -> None:
        self.name = "fake"
        self.n_ctx = n_ctx
        self.rules = rules if rules is not None else {"typed": "speak"}
        self.reply = reply
        self.end_prob = end_prob
        """What ``end_probability`` answers (None: it cannot tell)."""
        self.probes: list[str] = []
        """The sequence's last span at each ``end_probability`` call."""
        self.appends: list[str] = []
        self.label_calls = 0
        self._prefix = 0
        self._spans: list[list[str]] = []
        self._spec: list[str] | None = None
        self._spec_done = 0
        self.closed = False

    def reset(self, prefix: str) -> None:
        self._prefix = max(1, len(prefix.split()))
        self._spans = []
        self._spec = None

    def n_tokens(self) -> int:
        spec = len(self._spec) if self._spec is not None else 0
        return self._prefix + sum(len(s) for s in self._spans) + spec

    def span_count(self) -> int:
        return len(self._spans)

    def append(self, text: str, *, join: bool = False) -> None:
        self.spec_rollback()
        words = text.split() or ["·"]
        if self.n_tokens() + len(words) > self.n_ctx:
            raise ValueError("overflow")
        if join and self._spans:
            self._spans[-1].extend(words)
            self.appends[-1] += text
            return
        self._spans.append(words)
        self.appends.append(text)

    def end_probability(self, candidates: Sequence[str]) -> float | None:
        self.probes.append(self.appends[-1] if self.appends else "")
        return self.end_prob

    def label_logits(self, labels: Sequence[str]) -> list[float]:
        self.label_calls += 1
        last = self.appends[-1] if self.appends else ""
        want = "silent"
        for key, label in self.rules.items():
            if key in last.rsplit("\n", 1)[-1]:
                want = label
                break
        return [
            3.0 if lab.strip() == want else (0.0 if lab.strip() == "silent" else -2.0)
            for lab in labels
        ]

    def spec_begin(self, prime: str) -> None:
        self._spec = prime.split()
        self._spec_done = 0

    def spec_step(
        self,
        max_tokens: int,
        stop: Sequence[str],
        budget_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bool]:
        if self._spec is None:
            raise RuntimeError("spec_step without spec_begin")
        words = self.reply.split()
        if cancel is not None and cancel.is_set():
            return " ".join(words[: self._spec_done]), False
        self._spec_done = min(len(words), self._spec_done + max_tokens)
        return " ".join(words[: self._spec_done]), self._spec_done >= len(words)

    def spec_rollback(self) -> None:
        self._spec = None

    def drop_oldest(self, n_spans: int) -> None:
        self.spec_rollback()
        del self._spans[: max(0, n_spans)]

    def close(self) -> None:
        self.closed = True
