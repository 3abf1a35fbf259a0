"""The persistent model session: one timeline, appended every micro-turn, bounded forever.

``ModelSession`` owns the text protocol on top of a ``SessionBackend``:

- a pinned prefix (the instructions in ``assets/prompts/interaction.txt``), never dropped;
- one span per rendered micro-turn line, ending in the decision cue ``=>``;
- the decision the policy took is written as the start of the next span
  (`` speak "reply"`` or `` silent``), so the model sees its own history;
- the proposal is read from the logits of each label's first token right after the append;
- long sessions: on a quiet tick past the soft-water mark (or, failing that, before an append
  past the high-water mark) the oldest spans are dropped by KV shifting down to the low-water
  mark; then short ``recap:`` lines re-state the last meaningful lines of what was dropped
  (a rolling, extractive summary), one per quiet tick.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources

from engine.core.frames import DecisionKind, Proposal
from engine.core.microturn import DECISION_CUE, quote
from engine.errors import EngineError
from engine.model.backend import SessionBackend

PROMPT_RESOURCE = ("assets", "prompts/interaction.txt")
LABELS: dict[DecisionKind, str] = {kind: " " + kind.value for kind in DecisionKind}
REPLY_STOP = ('"', "\n")
END_OF_WORDS = ('"', '."', '?"', '!"', ".", "?", "!")
"""What may follow the user's last word when the utterance is over: a closing quote or a
sentence end (an ellipsis or a comma continues)."""
MAX_REPLY_CHARS = 240
"""About 60 tokens: a spoken reply is a sentence or two; longer work is a handoff."""
RECAP_ITEMS = 3
RECAP_ITEM_CHARS = 96
"""A recap line costs ~30 tokens (~150 ms on the CPU): one is written per quiet tick."""


def load_prompt() -> str:
    """The pinned instructions (ChatML), from the ``assets`` package data."""
    package, name = PROMPT_RESOURCE
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class SessionStats:
    """Counters for benchmarks and the status line (no content)."""

    n_tokens: int
    max_tokens: int
    evictions: int
    spans: int


@dataclass(frozen=True, slots=True)
class Calibration:
    """What this machine's model costs, measured at start-up (``ModelSession.warm_up``)."""

    first_append_ms: float
    """The very first micro-turn append and decision (cold caches, lazy allocations)."""
    append_ms: float
    """A warm micro-turn append of ~20 tokens and its decision."""
    decode_tok_s: float
    """Reply tokens prepared per second."""


WARM_LINES = (
    '0.2 app code "parser.py" | typed "why does the parser fail on an empty file?" =>',
    ' silent\n0.4 user "and it only happens on the second run, never the first one" =>',
)
WARM_REPLY_TOKENS = 12


class ModelSession:
    """The micro-turn protocol on one persistent backend sequence."""

    def __init__(
        self,
        backend: SessionBackend,
        prompt: str | None = None,
        *,
        reserve_tokens: int | None = None,
        low_water: float = 0.45,
    ) -> None:
        if not 0.1 <= low_water < 1.0:
            raise EngineError("low_water must be in [0.1, 1)")
        self.backend = backend
        self.prompt = prompt if prompt is not None else load_prompt()
        # Room kept free above the high-water mark: one capped line, a recap and a reply.
        reserve = reserve_tokens if reserve_tokens is not None else min(512, backend.n_ctx // 4)
        self.high_water = backend.n_ctx - reserve
        self.soft_water = self.high_water - reserve // 2
        self.low_water = int(backend.n_ctx * low_water)
        if self.low_water >= self.soft_water:
            raise EngineError(f"a {backend.n_ctx}-token window is too small (reserve {reserve})")
        self._labels = list(LABELS.values())
        self._kinds = list(LABELS.keys())
        self._pending = ""
        self._recap: deque[str] = deque(maxlen=RECAP_ITEMS)
        self._recap_queue: deque[str] = deque()
        self._max_tokens = 0
        self._evictions = 0
        self._span_texts: deque[str] = deque()
        self._prefix_n = 0
        self._lead = ""

    def start(self) -> None:
        """Load the pinned prefix (from a snapshot when possible)."""
        self.backend.reset(self.prompt)
        self._pending = ""
        self._span_texts.clear()
        self._recap.clear()
        self._recap_queue.clear()
        self._prefix_n = self._max_tokens = self.backend.n_tokens()

    def warm_up(self) -> Calibration:
        """Run a few real micro-turns and a reply once, measure them, then start afresh.

        The first request to a fresh llama.cpp context is 2-3x slower than the rest; paying it
        here keeps it off the user's first turn, and the figures size the live budget.
        """
        t0 = time.perf_counter()
        self.step(WARM_LINES[0])
        t1 = time.perf_counter()
        self.step(WARM_LINES[1])
        t2 = time.perf_counter()
        self.reply_begin(DecisionKind.SPEAK)
        before = self.backend.n_tokens()
        self.backend.spec_step(WARM_REPLY_TOKENS, (), None, None)
        tokens = max(1, self.backend.n_tokens() - before)
        t3 = time.perf_counter()
        self.backend.spec_rollback()
        self.start()
        return Calibration(
            first_append_ms=round((t1 - t0) * 1000, 1),
            append_ms=round((t2 - t1) * 1000, 1),
            decode_tok_s=round(tokens / max(t3 - t2, 1e-6), 1),
        )

    def step(self, line: str) -> Proposal:
        """Append one micro-turn line (with the last decision in front) and read the proposal."""
        if self.backend.n_tokens() > self.high_water:
            self._evict()  # fallback: no quiet tick came to do it earlier
        self._write(line)
        return self.proposal()

    def step_probing(self, line: str, at: int) -> tuple[Proposal, float | None]:
        """``step``, reading on the way how likely the user's words end at ``at`` (an offset
        in ``line`` right after them, before any closing punctuation): the model's own
        end-of-utterance probability (as LiveKit's turn detector reads ``<|im_end|>``), the
        mass of the tokens that would close the quote or the sentence there. The line is one
        span all the same; the probe costs the split decode (a few ms) and one softmax."""
        if self.backend.n_tokens() > self.high_water:
            self._evict()
        end = self._write(line, probe_at=at)
        return self.proposal(), end

    def maintain(self) -> bool:
        """Window upkeep for a quiet tick; returns True when it wrote to the sequence.

        Past the soft-water mark the oldest spans are dropped (a KV shift: ~1 ms, plus ~15 ms
        on the next decode). The recap of what was dropped is then written one short line per
        quiet tick, so no single tick pays for a long recap.
        """
        if self.backend.n_tokens() > self.soft_water:
            self._evict()
        if not self._recap_queue:
            return False
        self._write(f"recap: {self._recap_queue.popleft()}\n")
        return True

    def _write(self, text: str, probe_at: int | None = None) -> float | None:
        """Append ``text`` as one span, after the pending decision and held lines; with
        ``probe_at``, in two decodes with the end-of-words probability read between."""
        head, self._pending = self._pending, ""
        end = None
        if probe_at is not None and 0 < probe_at < len(text):
            self.backend.append(head + text[:probe_at])
            end = self.backend.end_probability(END_OF_WORDS)
            self.backend.append(text[probe_at:], join=True)
        else:
            self.backend.append(head + text)
        self._span_texts.append(head + text)
        self._max_tokens = max(self._max_tokens, self.backend.n_tokens())
        return end

    def proposal(self) -> Proposal:
        """Softmax over the labels' first-token logits at the end of the sequence."""
        logits = self.backend.label_logits(self._labels)
        top = max(logits)
        if math.isinf(top):
            return Proposal({DecisionKind.SILENT: 1.0})
        exps = [math.exp(x - top) if not math.isinf(x) else 0.0 for x in logits]
        total = sum(exps)
        return Proposal({k: e / total for k, e in zip(self._kinds, exps, strict=True)})

    def record(self, kind: DecisionKind, reply: str | None = None) -> None:
        """Remember the disposed decision; it is written in front of the next span."""
        said = f" {quote(reply)}" if reply else ""
        self._pending = f"{LABELS[kind]}{said}\n{self._pending}"

    def reply_begin(self, kind: DecisionKind, lead: str = "") -> None:
        """Start preparing what to say for ``kind``, speculatively after the last line.

        ``lead`` starts the reply with given words (a second attempt after a reply that only
        copied the prompt or the user: a different opening leads greedy decoding elsewhere).
        """
        self._lead = lead
        self.backend.spec_begin(f'{LABELS[kind]} "{lead}')

    def reply_step(
        self,
        max_tokens: int,
        budget_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bool]:
        """Extend the reply by up to ``max_tokens`` tokens; returns (text so far, finished).

        A finished reply is rolled back from the sequence: ``record`` writes what was said.
        """
        text, finished = self.backend.spec_step(max_tokens, REPLY_STOP, budget_s, cancel)
        text = self._lead + text
        if len(text) >= MAX_REPLY_CHARS:
            text, finished = text[:MAX_REPLY_CHARS].rsplit(" ", 1)[0], True
        if finished:
            self.backend.spec_rollback()
        return " ".join(text.split()), finished

    def reply_abort(self) -> None:
        """Discard a reply being prepared (the user went on talking, or it was cancelled)."""
        self.backend.spec_rollback()

    def note(self, line: str) -> None:
        """Keep a line that arrived while a reply was prepared; it goes in the next append."""
        self._pending += line.removesuffix(DECISION_CUE) + "\n"

    def stats(self) -> SessionStats:
        """Token and eviction counters."""
        return SessionStats(
            n_tokens=self.backend.n_tokens(),
            max_tokens=self._max_tokens,
            evictions=self._evictions,
            spans=self.backend.span_count(),
        )

    # --- window management ---------------------------------------------------------------

    def _evict(self) -> None:
        """Drop the oldest spans down to the low-water mark and queue the rolling recap."""
        before = self.backend.n_tokens()
        # Estimate tokens per span from the average so one KV shift does the whole job.
        per_span = max(1.0, (before - self._prefix_n) / max(1, len(self._span_texts)))
        n_drop = min(len(self._span_texts), max(1, math.ceil((before - self.low_water) / per_span)))
        dropped = [self._span_texts.popleft() for _ in range(n_drop)]
        self.backend.drop_oldest(n_drop)
        while self.backend.n_tokens() > self.low_water and self._span_texts:
            dropped.append(self._span_texts.popleft())
            self.backend.drop_oldest(1)
        for text in dropped:
            for line in text.splitlines():
                if _meaningful(line):
                    self._recap.append(line.strip().removesuffix("=>").strip()[:RECAP_ITEM_CHARS])
        self._evictions += 1
        self._recap_queue = deque(self._recap)


_LABEL_WORDS = {kind.value for kind in DecisionKind}


def _meaningful(line: str) -> bool:
    """A line worth keeping in the recap: it carries more than a time marker or a label."""
    body = line.strip()
    if body.startswith("recap:"):
        return False
    head, _, rest = body.partition(" ")
    if head in _LABEL_WORDS and not rest:
        return False
    return bool(rest.removesuffix("=>").strip())
