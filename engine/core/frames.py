"""Typed frames: the only values that cross a stage boundary.

Every frame is a small frozen, slotted dataclass. Inputs arrive on the data lane (bounded
channels) or the control lane (never dropped, handled at once); the engine cuts the data
that arrived in one 200 ms tick into a ``MicroTurn`` and answers with a ``Decision``.
Times are seconds on the engine's clock (scenario time in replay, monotonic time live).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

TICK_S = 0.2
"""The micro-turn period: input and output are cut into 200 ms slices."""


class DecisionKind(enum.Enum):
    """What the engine does at the end of a micro-turn."""

    SILENT = "silent"
    BACKCHANNEL = "backchannel"
    SPEAK = "speak"
    INTERJECT = "interject"
    STOP = "stop"
    HANDOFF = "handoff"


# --- data lane -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypedText:
    """Text the user typed into Tandem's own box (a direct request)."""

    t: float
    text: str


@dataclass(frozen=True, slots=True)
class FocusChange:
    """The focused application changed (``app`` is a WM_CLASS-like id)."""

    t: float
    app: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """New words from speech recognition; ``final`` closes the user's utterance."""

    t: float
    text: str
    final: bool
    prosody_complete: float | None = None
    """A final's P(turn complete) from how the utterance sounded (Smart Turn), if scored in
    time; the policy fuses it with the words (``hearing.endpoint.fuse``)."""
    confidence: float | None = None
    """How sure the recogniser was of these words (Whisper: the geometric mean of its token
    probabilities), if it says; words it was unsure of cannot end a turn on their own."""


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """A background-agent task reported something (``background_agent.tasks.TaskEvent``)."""

    t: float
    task: str
    """The task id."""
    summary: str
    done: bool = False
    """The task ended (done, failed or cancelled)."""
    kind: str = ""
    """``started``, ``progress``, ``needs_permission``, ``done``, ``failed`` or ``cancelled``."""


@dataclass(frozen=True, slots=True)
class ScreenText:
    """What is new on screen, already redacted and summarised to a few words (not the screen:
    the full redacted text stays in ``engine.seeing.ScreenState``)."""

    t: float
    app: str
    summary: str
    new_lines: int = 0
    looked: bool = False
    """The user asked about the screen: ``summary`` is the latest screen text itself."""


@dataclass(frozen=True, slots=True)
class ScreenCue:
    """A failure or risk seen on screen (``engine.seeing.cues``): ``what`` is its kind
    (``test_failure``, ``traceback``, ...), ``key`` identifies it across frames, ``box`` is
    where it is on screen (x, y, w, h in pixels of the grabbed monitor)."""

    t: float
    what: str
    summary: str
    key: str
    box: tuple[int, int, int, int] | None = None
    app: str = ""


DataFrame = TypedText | FocusChange | TranscriptDelta | TaskUpdate | ScreenText | ScreenCue


# --- control lane --------------------------------------------------------------------------


class ControlKind(enum.Enum):
    """Control events outrank data and are never dropped."""

    VOICE_ONSET = "voice_onset"
    """The first window that sounds like the user: barge-in pauses on it, unconfirmed."""
    VOICE_FADED = "voice_faded"
    """An onset the VAD never confirmed went quiet again (a click, a breath): resume."""
    USER_STARTED_SPEAKING = "user_started_speaking"
    USER_STOPPED_SPEAKING = "user_stopped_speaking"
    MUTE = "mute"
    UNMUTE = "unmute"
    LEASE_OPENED = "lease_opened"
    """A sense got a lease from the gate (``text`` names the sense): put on the timeline."""
    LEASE_REVOKED = "lease_revoked"
    """A sense's lease was revoked (mute, kill switch, focus): it stopped capturing."""
    STOP_SPEAKING = "stop_speaking"
    FORCE_SAY = "force_say"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A control event; ``text`` is the words of ``FORCE_SAY`` or the sense of ``LEASE_*``."""

    t: float
    kind: ControlKind
    text: str = ""
    voice_t: float | None = None
    """``USER_STOPPED_SPEAKING``: when the voice really stopped (the VAD knows it only after
    some quiet, at ``t``); the user's silence is counted from here."""


# --- the micro-turn and its answer ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MicroTurn:
    """Everything that arrived during one tick ``(t - TICK_S, t]``.

    ``quiet`` ticks carry nothing new; the session does not pay tokens for them except an
    occasional time marker (see ``engine.core.microturn``).
    """

    index: int
    t: float
    typed: tuple[str, ...] = ()
    transcript: tuple[TranscriptDelta, ...] = ()
    focus: FocusChange | None = None
    tasks: tuple[TaskUpdate, ...] = ()
    said: tuple[str, ...] = ()
    cut_off: tuple[str, ...] = ()
    user_speaking: bool = False
    assistant_speaking: bool = False
    screen: tuple[ScreenText, ...] = ()
    cues: tuple[ScreenCue, ...] = ()

    @property
    def quiet(self) -> bool:
        """True when nothing new arrived in this tick."""
        return not (
            self.typed
            or self.transcript
            or self.focus
            or self.tasks
            or self.said
            or self.cut_off
            or self.screen
            or self.cues
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """The model's view: a probability per decision label, read from first-token logits."""

    probs: dict[DecisionKind, float] = field(default_factory=dict)

    def best(self) -> DecisionKind:
        """The most probable label (SILENT when the model was not consulted)."""
        if not self.probs:
            return DecisionKind.SILENT
        return max(self.probs, key=lambda k: self.probs[k])

    def p(self, kind: DecisionKind) -> float:
        """Probability of one label (0 when absent)."""
        return self.probs.get(kind, 0.0)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy disposed for one tick, and why (a short, content-free reason)."""

    t: float
    index: int
    kind: DecisionKind
    reason: str
    consulted: bool
