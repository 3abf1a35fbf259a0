"""The live driver's control lane: control events are handled while the model works."""

from __future__ import annotations

import asyncio
import threading

from engine.core.channels import ControlInbox
from engine.core.clock import RealClock
from engine.core.engine import Engine
from engine.core.events import TimelineEvent, VadEvent
from engine.core.frames import ControlEvent, ControlKind, TypedText
from engine.live import LiveDriver
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from engine.voice.handles import PacedTextSpeech
from tests.fakes import FakeBackend


class BlockingBackend(FakeBackend):
    """Blocks inside ``append`` (as a slow model would) until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.block = False
        self.inside = threading.Event()
        self.release = threading.Event()

    def append(self, text: str) -> None:
        super().append(text)
        if self.block:
            self.inside.set()
            self.release.wait(10)


def test_a_control_event_is_handled_while_the_model_is_busy() -> None:
    backend = BlockingBackend()
    worker = ModelWorker()
    worker.start(lambda: ModelSession(backend, "system"))
    events: list[TimelineEvent] = []
    engine = Engine(worker, PacedTextSpeech(), events.append)
    clock = RealClock()
    inbox: ControlInbox[ControlEvent] = ControlInbox()
    driver = LiveDriver(engine, clock, inbox)
    handled_while_busy: list[bool] = []

    def user() -> None:
        assert backend.inside.wait(10)  # a tick is inside the model now
        inbox.put(ControlEvent(clock.now(), ControlKind.USER_STARTED_SPEAKING))
        for _ in range(500):  # the loop handles it although the model has not returned
            if driver.stats.control_latency_s:
                break
            threading.Event().wait(0.01)
        handled_while_busy.append(bool(driver.stats.control_latency_s))
        handled_while_busy.append(not backend.release.is_set())
        backend.release.set()
        inbox.put(ControlEvent(clock.now(), ControlKind.SHUTDOWN))

    backend.block = True
    engine.data.put(TypedText(clock.now(), "why does this fail?"))
    thread = threading.Thread(target=user, name="test-user")
    thread.start()
    try:
        stats = asyncio.run(driver.run())
    finally:
        backend.release.set()
        thread.join()
        worker.close()
    assert handled_while_busy == [True, True]
    assert any(isinstance(e, VadEvent) and e.kind == "speech_start" for e in events)
    assert len(stats.control_latency_s) == 2  # the speech start, then the shutdown


def test_the_driver_stops_after_its_duration() -> None:
    worker = ModelWorker()
    worker.start(lambda: ModelSession(FakeBackend(), "system"))
    engine = Engine(worker, PacedTextSpeech(), lambda _: None)
    try:
        stats = asyncio.run(LiveDriver(engine, RealClock(), ControlInbox(), duration=0.5).run())
    finally:
        worker.close()
    assert 1 <= stats.ticks <= 3
