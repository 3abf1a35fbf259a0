"""Channels, control inbox, clocks and the CPU share."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.core import cpu
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock, VirtualClock


def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    ch: Channel[int] = Channel("audio", 3, Overflow.DROP_OLDEST)
    results = [ch.put(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert ch.drain() == [2, 3, 4]
    assert ch.dropped == 2
    assert ch.drain() == []


def test_latest_only_holds_one_value() -> None:
    ch: Channel[str] = Channel("screen", 10, Overflow.LATEST_ONLY)
    for v in "abc":
        ch.put(v)
    assert ch.capacity == 1
    assert ch.drain() == ["c"]
    assert ch.dropped == 2


def test_drop_newest_keeps_the_first() -> None:
    ch: Channel[int] = Channel("requests", 2, Overflow.DROP_NEWEST)
    for i in range(4):
        ch.put(i)
    assert ch.drain() == [0, 1]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Channel("x", 0, Overflow.DROP_OLDEST)


def test_channel_is_safe_across_threads() -> None:
    ch: Channel[int] = Channel("data", 100_000, Overflow.DROP_OLDEST)

    def produce(base: int) -> None:
        for i in range(5000):
            ch.put(base + i)

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = ch.drain()
    assert len(items) == 20_000 and len(set(items)) == 20_000


def test_control_inbox_never_drops_and_wakes() -> None:
    inbox: ControlInbox[int] = ControlInbox()
    woken: list[int] = []
    inbox.notify = lambda: woken.append(1)
    for i in range(10_000):
        inbox.put(i)
    assert inbox.drain() == list(range(10_000))
    assert len(woken) == 10_000


def test_virtual_clock_jumps_and_never_goes_back() -> None:
    clock = VirtualClock()

    async def run() -> list[float]:
        seen = []
        for t in (0.2, 5.0, 3.0, 7.4):
            await clock.sleep_until(t)
            seen.append(clock.now())
        return seen

    assert asyncio.run(run()) == [0.2, 5.0, 5.0, 7.4]


def test_real_clock_moves_forward() -> None:
    clock = RealClock()
    a = clock.now()
    asyncio.run(clock.sleep_until(a + 0.01))
    assert clock.now() >= a + 0.01


def test_heavy_jobs_are_counted_across_threads_and_through_errors() -> None:
    assert not cpu.others_computing()
    started, release = threading.Event(), threading.Event()

    def recognise() -> None:
        with cpu.heavy():
            started.set()
            release.wait(5)

    th = threading.Thread(target=recognise, name="test-asr")
    th.start()
    assert started.wait(5)
    with pytest.raises(RuntimeError), cpu.heavy(), cpu.heavy():
        raise RuntimeError("a failed synthesis")
    assert cpu.others_computing()  # the recogniser still computes: counted, not a flag
    release.set()
    th.join()
    assert not cpu.others_computing()
