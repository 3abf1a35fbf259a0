"""``tandem bench session``: what a persistent session costs, measured on the real model.

Two parts, one run:

- rows: at each context length (100 tokens to the window) the median time of one micro-turn
  (append a ~20-token line and read the decision logits), beside the naive alternative of
  re-decoding the whole context from scratch, measured in the same run;
- long session: hours of micro-turns on a virtual clock through the real engine (assembler,
  session with eviction and recap, policy, reply preparation) with a scripted coding-session
  activity; reports memory, the largest context reached, and ticks that would have been
  dropped in real time (a tick whose work ends after the next tick is due).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import psutil

from engine.core.engine import LIVE_BUDGET, Engine
from engine.core.events import TimelineEvent
from engine.core.frames import TICK_S, FocusChange, TaskUpdate, TypedText
from engine.model.llama_backend import LlamaBackend
from engine.model.load import ModelConfig, make_backend
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.voice.handles import PacedTextSpeech

ROW_PREFIX = "<|im_start|>system\nYou are Tandem. One line per moment.<|im_end|>\n"
ROW_LINE = ' silent\n{t:.1f} app code "parser.py" | user "so this loop should stop at the end" =>'
ROW_CONTEXTS = (100, 250, 500, 1000, 1500)

REQUESTS = (
    "why does this test fail?",
    "what does this function return when the list is empty?",
    "rename this variable to something clearer",
    "is there a faster way to do this loop?",
    "run the tests and fix the failing one",
    "what was that error about?",
)
APPS = ("code", "firefox", "terminal", "code")


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / (1 << 20)


def bench_rows(backend: LlamaBackend, reps: int = 9) -> list[dict[str, float]]:
    """Append+decide and naive re-prefill at each context length up to the window."""
    labels = [" silent", " backchannel", " speak", " interject", " stop", " handoff"]
    backend.reset(ROW_PREFIX)
    window = backend.n_ctx - 48
    rows = []
    i = 0
    for target in (*[c for c in ROW_CONTEXTS if c < window], window):
        while backend.n_tokens() + 26 < target:
            i += 1
            backend.append(ROW_LINE.format(t=i * TICK_S))
        times = []
        for k in range(reps):
            t0 = time.perf_counter()
            backend.append(ROW_LINE.format(t=i * TICK_S + k))
            backend.label_logits(labels)
            times.append((time.perf_counter() - t0) * 1000.0)
            backend.pop_span()
        backend.append(ROW_LINE.format(t=i * TICK_S + reps))
        context = backend.n_tokens()  # the context the decision is read at
        reprefill = statistics.median(
            [backend.reprefill_ms() for _ in range(3 if context <= 600 else 1)]
        )
        backend.pop_span()
        rows.append(
            {
                "context": context,
                "append_decide_ms": round(statistics.median(times), 1),
                "reprefill_ms": round(reprefill, 1),
            }
        )
    return rows


def _activity(hours: float, seed: int) -> list[tuple[float, Any]]:
    """A scripted coding session: app switches, typed requests, task updates."""
    rng = random.Random(seed)
    events: list[tuple[float, Any]] = []
    t = 3.0
    end = hours * 3600.0
    while t < end:
        t += rng.uniform(20.0, 90.0)
        r = rng.random()
        if r < 0.45:
            events.append((t, TypedText(t=t, text=rng.choice(REQUESTS))))
        elif r < 0.8:
            app = rng.choice(APPS)
            events.append((t, FocusChange(t=t, app=app, title=f"{app} window {rng.randint(1, 9)}")))
        else:
            events.append(
                (t, TaskUpdate(t=t, task=f"t{rng.randint(1, 99)}", summary="3 tests pass"))
            )
    return events


def long_session(worker: ModelWorker, hours: float, seed: int = 0) -> dict[str, Any]:
    """Run ``hours`` of micro-turns through the real engine on a virtual clock."""
    events = _activity(hours, seed)
    n_ticks = round(hours * 3600.0 / TICK_S)
    sink_count = [0]

    def sink(_: TimelineEvent) -> None:
        sink_count[0] += 1

    engine = Engine(worker, PacedTextSpeech(), sink, budget=LIVE_BUDGET)
    costs: list[float] = []
    rss_start = _rss_mb()

    async def run() -> None:
        pending = list(events)
        for k in range(1, n_ticks + 1):
            tick_t = k * TICK_S
            while pending and pending[0][0] <= tick_t:
                engine.data.put(pending.pop(0)[1])
            t0 = time.perf_counter()
            await engine.tick(tick_t)
            costs.append((time.perf_counter() - t0) * 1000.0)

    asyncio.run(run())
    rss_end = _rss_mb()
    stats = worker.call_sync(lambda s: s.stats())
    active = [c for c in costs if c > 0.5]
    return {
        "simulated_hours": hours,
        "ticks": n_ticks,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "max_context_tokens": stats.max_tokens,
        "n_ctx": worker.call_sync(lambda s: s.backend.n_ctx),
        "evictions": stats.evictions,
        "dropped_ticks": dropped_ticks(costs),
        "model_ticks": len(active),
        "tick_ms_p50": round(statistics.median(active), 1) if active else 0.0,
        "tick_ms_p99": round(_percentile(active, 0.99), 1) if active else 0.0,
        "tick_ms_max": round(max(active), 1) if active else 0.0,
        "timeline_events": sink_count[0],
    }


def dropped_ticks(costs_ms: list[float], period_ms: float = TICK_S * 1000.0) -> int:
    """Ticks a real-time driver would have had to skip, given each tick's work time.

    Tick ``k`` is due at ``k * period``; it starts when due or when the previous one ends,
    whichever is later. A tick that cannot start before the *next* one is due is dropped, as
    the live driver does: skipped, its inputs merged into the next micro-turn.
    """
    dropped = 0
    free_at = 0.0
    for k, cost in enumerate(costs_ms):
        due = k * period_ms
        if free_at >= due + period_ms:
            dropped += 1  # skipped: its inputs fold into the next micro-turn
            continue
        free_at = max(due, free_at) + cost
    return dropped


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_session(
    cfg: ModelConfig,
    hours: float = 2.0,
    reps: int = 9,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The ``tandem bench session --json`` object."""
    say = progress or (lambda _: None)
    worker = ModelWorker()
    backend_box: list[LlamaBackend] = []

    def factory() -> ModelSession:
        backend = make_backend(cfg)
        if not isinstance(backend, LlamaBackend):
            raise TypeError("bench session measures the in-process model (no --server)")
        backend_box.append(backend)
        return ModelSession(backend)

    try:
        worker.start(factory)
        backend = backend_box[0]
        say(f"rows: {backend.name}, n_ctx {backend.n_ctx}, {backend.n_threads} threads")
        rows = worker.call_sync(lambda _: bench_rows(backend, reps))
        worker.call_sync(lambda s: s.start())
        say(f"long session: {hours} simulated hours")
        long = long_session(worker, hours)
    finally:
        worker.close()
    flatness = rows[-1]["append_decide_ms"] / rows[0]["append_decide_ms"]
    return {
        "model": backend.name,
        "n_ctx": backend.n_ctx,
        "n_threads": backend.n_threads,
        "rows": rows,
        "flatness": round(flatness, 2),
        "long_session": long,
    }
