"""The engine's phases: who has the floor, as one value instead of a handful of flags.

``phase_of`` derives the phase from the engine's state (pure, table-tested); ``TRANSITIONS``
lists which phase may follow which. The engine checks every change against the table and
logs one that is not in it, and the timeline tests fail on such a log: a combination of flags
that should not exist (speaking over the user without a pause, say) shows at once.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """Who has the floor right now."""

    LISTENING = "listening"
    """Nobody is talking and nothing is owed: the assistant may interject."""
    USER_SPEAKING = "user_speaking"
    """The user has the floor (the assistant may only backchannel)."""
    ENDPOINTING = "endpointing"
    """The user stopped or typed: waiting until the turn is surely over (a reply may be
    prepared speculatively meanwhile)."""
    PREPARING = "preparing"
    """The engine committed to answer; the reply is being prepared."""
    SPEAKING = "speaking"
    """An utterance of the assistant is queued or playing."""
    PAUSED = "paused"
    """The assistant paused for the user's voice; the barge-in arbiter has not decided yet."""
    MUTED = "muted"
    """The microphone is muted: the assistant hears nothing (it can still be typed to)."""


def phase_of(
    *,
    muted: bool,
    paused: bool,
    user_speaking: bool,
    assistant_speaking: bool,
    reply_committed: bool,
    turn_pending: bool,
) -> Phase:
    """The phase for one combination of the engine's flags (earlier rules win)."""
    if paused:
        return Phase.PAUSED
    if user_speaking:
        return Phase.USER_SPEAKING
    if assistant_speaking:
        return Phase.SPEAKING
    if reply_committed:
        return Phase.PREPARING
    if turn_pending:
        return Phase.ENDPOINTING
    if muted:
        return Phase.MUTED
    return Phase.LISTENING


P = Phase
_ANY = frozenset(Phase)
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # From a quiet floor anything can start: speech, typing, a forced say, mute.
    P.LISTENING: _ANY,
    P.MUTED: _ANY,
    # While the user talks the assistant never starts speaking (its own backchannel is part of
    # listening); the user stopping leaves the turn pending, or nothing (a cough); mute cuts.
    P.USER_SPEAKING: frozenset({P.ENDPOINTING, P.LISTENING, P.MUTED}),
    # The turn end is confirmed (preparing, or speaking at once when the reply was ready),
    # or the user goes on, or it was nothing.
    P.ENDPOINTING: frozenset({P.PREPARING, P.SPEAKING, P.USER_SPEAKING, P.LISTENING, P.MUTED}),
    P.PREPARING: frozenset({P.SPEAKING, P.USER_SPEAKING, P.LISTENING, P.ENDPOINTING, P.MUTED}),
    # Speaking ends, pauses for the user's voice, or is stopped.
    P.SPEAKING: frozenset(
        {P.LISTENING, P.PAUSED, P.USER_SPEAKING, P.ENDPOINTING, P.PREPARING, P.MUTED}
    ),
    # A pause resolves into the user's turn, a resumed utterance, or silence.
    P.PAUSED: frozenset(
        {P.USER_SPEAKING, P.SPEAKING, P.LISTENING, P.ENDPOINTING, P.PREPARING, P.MUTED}
    ),
}
