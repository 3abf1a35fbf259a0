"""Tandem's realtime engine: 200 ms micro-turns on one timeline, one model session, no Qt.

The public surface is below; the layout (``docs/architecture.md``) is

- ``engine.core``     frames, clock, channels, assembler, policy, typed events, the Engine;
- ``engine.hearing``  VAD, ASR, echo gate, end of turn, the barge-in arbiter, the hearing thread;
- ``engine.voice``    synthesis (piper, the espeak-ng child) and playback as speech handles;
- ``engine.senses``   the devices: microphone and speaker (next: screen and focus);
- ``engine.model``    the persistent model session, its owner thread, backends, the registry;
- ``engine.live``     the live driver (real clock, a control lane that never waits);
- ``engine.eval``     replay, benches and evaluations: off the runtime path.
"""

from engine.core.engine import Engine, ReplyBudget
from engine.core.events import (
    AsrEvent,
    DecisionEvent,
    PermissionEvent,
    SpeechStart,
    SpeechStop,
    TickEvent,
    TimelineEvent,
    VadEvent,
    from_json,
    to_json,
)
from engine.core.frames import ControlEvent, ControlKind, DecisionKind, TypedText
from engine.live import LiveDriver, LiveStats

__all__ = [
    "AsrEvent",
    "ControlEvent",
    "ControlKind",
    "DecisionEvent",
    "DecisionKind",
    "Engine",
    "LiveDriver",
    "LiveStats",
    "PermissionEvent",
    "ReplyBudget",
    "SpeechStart",
    "SpeechStop",
    "TickEvent",
    "TimelineEvent",
    "TypedText",
    "VadEvent",
    "from_json",
    "to_json",
]
