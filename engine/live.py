"""The live driver: the engine on a real clock, with a control lane that never waits.

Ticks run every 200 ms as one task on the event loop; control events (voice onset, mute, stop,
shutdown) are handled by a callback the producing thread schedules on the loop
(``call_soon_threadsafe``), so one is applied within a loop iteration even while a tick is
waiting for the model: the tick is suspended at its ``await``, not blocking. The engine marks
work that a control event made stale (its ``epoch``) and sets the model worker's cancel flag,
so a reply slice in flight stops between tokens and its result is discarded.

A tick that cannot start before the next one is due is skipped and counted (its inputs go
into the next micro-turn; nothing is lost). Control latency (event produced to handled) is
recorded for ``tandem bench control``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from engine.core.channels import ControlInbox
from engine.core.clock import RealClock
from engine.core.engine import Engine
from engine.core.frames import TICK_S, ControlEvent, ControlKind

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LiveStats:
    """What a live run counted: ticks, skipped ticks, control latencies (seconds)."""

    ticks: int = 0
    skipped_ticks: int = 0
    control_latency_s: list[float] = field(default_factory=list)


class LiveDriver:
    """Runs one engine on a real clock until shut down or ``duration`` is over."""

    def __init__(
        self,
        engine: Engine,
        clock: RealClock,
        inbox: ControlInbox[ControlEvent],
        *,
        duration: float | None = None,
    ) -> None:
        self.engine, self.clock, self.inbox, self.duration = engine, clock, inbox, duration
        self.stats = LiveStats()
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> LiveStats:
        """Tick until a ``SHUTDOWN`` control event or the duration; returns the counters."""
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self.inbox.notify = self._notify
        self._handle_controls()  # anything queued before the loop was ready
        ticker = asyncio.create_task(self._ticks(), name="tandem-ticks")
        try:
            await self._done.wait()
        finally:
            self.inbox.notify = None
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        return self.stats

    def _notify(self) -> None:
        """Called by the producing thread right after it queued a control event."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._handle_controls)

    def _handle_controls(self) -> None:
        """Apply every pending control event now (on the loop thread, between awaits)."""
        for ev in self.inbox.drain():
            self.stats.control_latency_s.append(max(0.0, self.clock.now() - ev.t))
            self.engine.control(ev)
            if ev.kind is ControlKind.SHUTDOWN and self._done is not None:
                self._done.set()

    async def _ticks(self) -> None:
        k = 1
        start = self.clock.now()
        while True:
            due = start + k * TICK_S
            if self.duration is not None and due - start > self.duration:
                assert self._done is not None
                self._done.set()
                return
            delay = due - self.clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            late = int((self.clock.now() - due) // TICK_S)
            if late > 0:  # the previous tick overran: skip to the current slot
                self.stats.skipped_ticks += late
                k += late
                due = start + k * TICK_S
            t0 = time.perf_counter()
            await self.engine.tick(due)
            log.debug("tick %d: %.1f ms", k, (time.perf_counter() - t0) * 1000)
            self.stats.ticks += 1
            k += 1
