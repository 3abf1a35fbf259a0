"""The injected clock: every timing in the engine reads a ``Clock``.

``RealClock`` is monotonic wall time for the live app. ``VirtualClock`` moves only when the
driver tells it to, so a scripted 30-minute timeline replays in seconds, deterministically.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the clock's origin."""

    def now(self) -> float:
        """Current time in seconds."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t``."""
        ...


class RealClock:
    """Monotonic wall time, origin at construction."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def now(self) -> float:
        """Seconds since construction."""
        return time.monotonic() - self._origin

    async def sleep_until(self, t: float) -> None:
        """Sleep on the event loop until ``t``."""
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that jumps: ``sleep_until`` advances time instantly (one driver owns it)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Current virtual time."""
        return self._now

    async def sleep_until(self, t: float) -> None:
        """Advance to ``t`` (never backwards) and yield once to the loop."""
        self._now = max(self._now, t)
        await asyncio.sleep(0)
