"""Bounded data channels with named overflow policies, and the control inbox.

Two lanes: data frames go through a ``Channel`` that is bounded and says what it drops when
full; control events go through the ``ControlInbox``, which never drops and is drained
before any data. Producers may live on other threads (a device callback, a grabber thread):
``put`` is thread-safe and never blocks, so a callback only copies and hands off.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full channel does with one more item."""

    DROP_OLDEST = "drop_oldest"
    """Audio-like streams: the newest data matters most."""
    LATEST_ONLY = "latest_only"
    """State-like streams (screen, focus): only the last value matters (capacity is 1)."""
    DROP_NEWEST = "drop_newest"
    """Requests where the first ones win (rarely right; named so nobody picks it by accident)."""


class Channel(Generic[T]):
    """A bounded, thread-safe FIFO with an overflow policy and a drop counter."""

    def __init__(self, name: str, capacity: int, overflow: Overflow) -> None:
        if capacity < 1:
            raise ValueError(f"channel {name!r}: capacity must be >= 1")
        if overflow is Overflow.LATEST_ONLY:
            capacity = 1
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.dropped = 0
        self._items: deque[T] = deque()
        self._lock = threading.Lock()

    def put(self, item: T) -> bool:
        """Add ``item``; returns False when the policy dropped something."""
        with self._lock:
            if len(self._items) < self.capacity:
                self._items.append(item)
                return True
            self.dropped += 1
            if self.overflow is Overflow.DROP_NEWEST:
                return False
            self._items.popleft()
            self._items.append(item)
            return False

    def drain(self) -> list[T]:
        """Take everything queued, oldest first."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class ControlInbox(Generic[T]):
    """Unbounded, never-dropping inbox for control events, with a wake-up for asyncio.

    ``put`` may be called from any thread; ``notify`` (set by the driver) is called after each
    put so the engine handles the event at once rather than at the next tick.
    """

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self.notify: object = None

    def put(self, item: T) -> None:
        """Queue a control event (never dropped) and wake the engine."""
        with self._lock:
            self._items.append(item)
        wake = self.notify
        if callable(wake):
            wake()

    def drain(self) -> list[T]:
        """Take all pending control events, oldest first."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items
