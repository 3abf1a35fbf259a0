"""The model's owner thread: every call into the session runs on one dedicated thread.

llama.cpp contexts are not thread-safe, so the backend is created *on* this thread and only
ever touched from it. The engine awaits results without blocking its event loop; a cancel
flag lets a control event (barge-in, shutdown) cut a generation short between tokens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from engine.model.session import ModelSession

T = TypeVar("T")


class ModelWorker:
    """Owns one ``ModelSession`` on a single thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tandem-model")
        self._session: ModelSession | None = None
        self.cancel = threading.Event()

    def start(self, factory: Callable[[], ModelSession]) -> ModelSession:
        """Build the session on the owner thread (blocking) and load its pinned prefix."""

        def build() -> ModelSession:
            session = factory()
            session.start()
            return session

        self._session = self._executor.submit(build).result()
        return self._session

    async def call(self, fn: Callable[[ModelSession], T]) -> T:
        """Run ``fn(session)`` on the owner thread and await its result."""
        session = self._session
        if session is None:
            raise RuntimeError("model worker not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, session)

    def call_sync(self, fn: Callable[[ModelSession], T]) -> T:
        """Run ``fn(session)`` on the owner thread from synchronous code (bench, tools)."""
        session = self._session
        if session is None:
            raise RuntimeError("model worker not started")
        return self._executor.submit(fn, session).result()

    def close(self) -> None:
        """Cancel any generation, release the model on its own thread, stop the thread."""
        self.cancel.set()
        session = self._session
        if session is not None:
            self._executor.submit(session.backend.close).result()
            self._session = None
        self._executor.shutdown(wait=True)
