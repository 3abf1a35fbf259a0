"""Barge-in: stop at once when the user talks over the assistant, resume after a backchannel.

The moment the first window sounds like the user during playback (``VOICE_ONSET``) the
assistant *pauses* (queued audio is flushed): the stop time is bounded by voice detection, not
by the 200 ms tick. An onset the VAD does not confirm resumes once it fades (a click).
What happens next depends on what the overlap turns out to be:

- the user keeps talking past ``BACKCHANNEL_MAX_S``, or says real words -> the stop is final
  and the user has the floor;
- the user stops quickly and the transcript is a backchannel ("mm-hmm", "yeah", "right") or
  nothing at all (a cough, a knock) -> the assistant resumes where it paused.

Pure decisions on small values; the engine owns the speech handles and emits the events.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

BACKCHANNEL_MAX_S = 1.0
"""Longest overlap (pause to detected end of the user's speech) still taken as a backchannel."""
ONSET_GIVE_UP_S = 2.0
"""A safety net only: a pause on a bare voice onset resumes when hearing reports that the onset
faded (``VOICE_FADED``), or after this long if no word of it ever comes (a microphone that
vanished mid-onset)."""
TRANSCRIPT_WAIT_S = 2.5
"""A safety net only: hearing always delivers a final for an utterance (an empty one when it
had no words), and that final decides. Live, recognition on a busy 2-core machine can take
over a second; resuming before it arrives spoke over users who had only paused for breath."""

BACKCHANNEL_WORDS = frozenset(
    {
        "mm",
        "mhm",
        "mmhmm",
        "hmm",
        "hm",
        "uh",
        "huh",
        "uhhuh",
        "um",
        "ah",
        "oh",
        "yeah",
        "yep",
        "yes",
        "yup",
        "ok",
        "okay",
        "right",
        "sure",
        "alright",
        "i",
        "see",
        "got",
        "it",
        "cool",
        "nice",
        "great",
        "true",
        "exactly",
        "indeed",
        "really",
        "wow",
        "go",
        "on",
    }
)
_WORD = re.compile(r"[a-z']+")
_ANY_WORD = re.compile(r"\w")
END_LAG_S = 0.25
"""The VAD says the user stopped only after this much quiet (``VadStream.min_silence_s``):
while the user is reported as speaking, the voice may have stopped this long ago."""


def is_backchannel(text: str) -> bool:
    """True for a short acknowledgement ("Mm-hmm.", "Yeah, right.", "I see") or nothing.

    "Nothing" is no word characters at all (a cough gives an empty transcript); "7." or
    "3 4" are words, not a backchannel."""
    words = _WORD.findall(text.lower().replace("-", ""))
    if not words:
        return _ANY_WORD.search(text) is None
    return len(words) <= 3 and all(w in BACKCHANNEL_WORDS for w in words)


class Verdict(enum.Enum):
    """What to do with a paused utterance."""

    WAIT = "wait"
    RESUME = "resume"
    STOP = "stop"


@dataclass(slots=True)
class Overlap:
    """The user started talking over the assistant at ``paused_t``."""

    paused_t: float
    confirmed: bool = True
    """The VAD confirmed speech (a pause on a bare onset is not, yet: it may be a click)."""
    user_stopped_t: float | None = None

    def on_tick(self, t: float, user_speaking: bool) -> Verdict:
        """Decide on time alone: a long overlap stops; silence with no transcript resumes."""
        if not self.confirmed and not user_speaking and t - self.paused_t > ONSET_GIVE_UP_S:
            return Verdict.RESUME
        if user_speaking and t - self.paused_t > BACKCHANNEL_MAX_S + END_LAG_S:
            return Verdict.STOP
        if self.user_stopped_t is not None and t - self.user_stopped_t > TRANSCRIPT_WAIT_S:
            return Verdict.RESUME
        return Verdict.WAIT

    def on_voice_faded(self) -> Verdict:
        """The onset went quiet before the VAD confirmed it: a click or a breath."""
        return Verdict.WAIT if self.confirmed else Verdict.RESUME

    def on_user_started(self) -> None:
        """The user talks again: whatever ended before was a breath, not the end."""
        self.confirmed, self.user_stopped_t = True, None

    def on_user_stopped(self, t: float) -> Verdict:
        """The user's voice stopped at ``t`` (when it stopped, not when the VAD was sure): too
        long is an interruption, else wait for words."""
        self.user_stopped_t = t
        return Verdict.STOP if t - self.paused_t > BACKCHANNEL_MAX_S else Verdict.WAIT

    def on_transcript(self, text: str) -> Verdict:
        """What the user said decides it (only once they have stopped)."""
        if self.user_stopped_t is None:
            return Verdict.WAIT if is_backchannel(text) else Verdict.STOP
        return Verdict.RESUME if is_backchannel(text) else Verdict.STOP
