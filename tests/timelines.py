"""Driving a real ``Engine`` through a scripted timeline on a virtual clock (engine tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from engine.core.clock import VirtualClock
from engine.core.engine import Engine
from engine.core.frames import TICK_S, ControlEvent, DataFrame

Item = ControlEvent | DataFrame


async def drive(
    engine: Engine,
    items: Sequence[Item],
    duration: float,
    *,
    before_tick: Callable[[float], Awaitable[None]] | None = None,
    clock: VirtualClock | None = None,
) -> None:
    """Each item at its time (control events at once, frames on the data lane), a tick every
    ``TICK_S`` until ``duration``, then the last utterance played out."""
    clock = clock or VirtualClock()
    pending = sorted(items, key=lambda i: i.t)
    for k in range(1, round(duration / TICK_S) + 1):
        tick_t = round(k * TICK_S, 6)
        while pending and pending[0].t <= tick_t:
            item = pending.pop(0)
            await clock.sleep_until(item.t)
            if isinstance(item, ControlEvent):
                engine.control(item)
            else:
                engine.data.put(item)
        await clock.sleep_until(tick_t)
        if before_tick is not None:
            await before_tick(tick_t)
        await engine.tick(tick_t)
    engine.flush(clock.now())
