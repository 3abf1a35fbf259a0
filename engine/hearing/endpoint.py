"""How finished the user's words sound: the text side of end-of-turn detection.

A silence timer cannot tell "...and then I ran the tests." from "...and then I ran the"; the
words can. ``completeness`` scores the final transcript of the user's last utterance from 0
(certainly mid-sentence) to 1 (certainly finished) with signals that cost nothing:

- Whisper marks speech it hears cut off with a trailing ellipsis or dash ("And so my fellow
  Americans ask..."), and ends finished sentences with "." or "?";
- a sentence cannot end on an article, a preposition, a conjunction, a possessive or a filler.

The policy combines it with the silence so far and the session's own logits (``policy.py``).
Pure functions; table-tested in ``tests/test_endpoint.py``.
"""

from __future__ import annotations

import math
import re

_CONTINUING = """a an the this that these those my your our their his her its
    of to in on at for with from by about into onto over under than as like
    and or but so because if when while although unless until whether then
    is are was were be been am do does did have has had will would can could should
    um uh er erm"""
CONTINUES = frozenset(_CONTINUING.split())
"""Words after which an English sentence is not finished."""
_WORD = re.compile(r"[a-z']+")


def completeness(text: str) -> float:
    """0 (mid-sentence) .. 1 (finished) for the user's last words."""
    flat = text.strip()
    words = _WORD.findall(flat.lower())
    if not words:
        return 0.0
    if flat.endswith(("...", "…", "-", "—", ",")):
        return 0.1  # the recogniser heard the sentence break off
    if words[-1] in CONTINUES:
        return 0.2
    if flat.endswith("?"):
        return 1.0
    if flat.endswith((".", "!")):
        return 0.9
    return 0.6  # no punctuation: a short command ("ten of clubs") or a fragment


WORDS_WEIGHT = 0.5
PROSODY_WEIGHT = 1.0
LM_WEIGHT = 0.5
"""Weights of ``fuse``. Whisper closes almost any cut with a period, so words that look
finished (0.9) say little; prosody, calibrated (``PROSODY_SURE``), carries the decision."""
BROKEN_OFF = 0.3
"""Words at or below this completeness ("... of the", Whisper's "...") hold the turn whatever
the prosody says: the words' low values are reliable, their high ones are not."""
PROSODY_UNSURE, PROSODY_SURE = 0.9, 0.98
"""Smart Turn's P(complete) is mapped linearly from this range onto 0..1. Measured on the
scenarios of ``tandem eval build-duplex`` (2026-12-02): finished turns scored 0.97-0.99
(two truly unfinished ones 0.15 and 0.81), pauses cut after content words and in five other
languages 0.82-0.99 (median 0.9). With the raw score averaged in, 12 of 21 pauses were taken
over in replay (0.571); with this calibration 5 of 21 (0.238, ``tandem eval duplex`` on the
44 scenarios of ``tests/test_hearing.py``). Held-out data may differ: re-measure."""


LM_UNSURE, LM_SURE = 0.05, 0.15
"""The model's end-of-words probability (``ModelSession.step_probing``) is mapped linearly from
this range onto 0..1. Measured with Qwen2.5-Coder-0.5B on the scenarios of ``tandem eval
build-duplex`` (2026-12-02, Whisper's transcript of the speech before each pause or turn end):
finished turns 0.16-0.69, English pauses after content words 0.001-0.78 (median 0.02: "He
was not" 0.001, "...had then measured" 0.02), pauses in other languages 0.05-0.51 (Whisper
tiny.en writes English there); AUC 0.79-0.80, as Smart Turn's. ``LM_SURE`` sits under the
lowest finished turn, so the model holds only words it finds unlikely to end (with 0.3, live,
"7 of clubs" at 0.17 was held past a pause, 2026-12-04)."""


HEARD_CLEARLY = 0.5
"""The recogniser's confidence (``TranscriptDelta.confidence``) under which its words cannot
end a turn on their own. Measured with Whisper tiny.en on the user speech of ``tandem eval
build-duplex`` (2026-12-02, each labelled stretch transcribed alone): English 0.59-0.93 (one
mid-turn fragment, "Seven of...", 0.40), the five other languages 0.25-0.45, where tiny.en
writes fluent English ("Thank you very much.") that looks finished to the words, to Smart Turn's
calibration and to the model alike."""


def fuse(
    words_complete: float,
    prosody_complete: float | None,
    lm_end_prob: float | None,
    confidence: float | None = None,
) -> float:
    """How finished the user's turn is (0..1), from every signal there is.

    Without prosody and the model this is the words' completeness, unchanged. Words that
    broke off win (``BROKEN_OFF``). Otherwise a weighted mean of the words and Smart Turn's
    score calibrated to ``PROSODY_UNSURE..PROSODY_SURE``. The model's end-of-words probability
    (calibrated to ``LM_UNSURE..LM_SURE``) can only hold the turn, never hand it over: the mean
    with it counts only when it is lower. Measured on the 21 pauses of build-duplex in replay
    (2026-12-02): a symmetric mean took one more English pause (after a comma, where the
    model read 0.78) than no model at all, and moved the turn latency by 11 ms. A missing or
    non-finite signal is left out; inputs are clamped to 0..1. Words the recogniser was
    unsure of (``confidence`` under ``HEARD_CLEARLY``) score 0: the policy's longest wait
    (1.3-1.5 s at the default eagerness) ends such a turn. Pure.

    Args:
        words_complete: ``endpoint.completeness`` of the final transcript.
        prosody_complete: Smart Turn's P(complete) for the same utterance, if scored.
        lm_end_prob: the session's probability that the user's words end where they stop,
            if read.
        confidence: how sure the recogniser was of the words, if it says.
    """
    if confidence is not None and math.isfinite(confidence) and confidence < HEARD_CLEARLY:
        return 0.0

    def ok(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else min(1.0, max(0.0, x))

    def calibrated(x: float | None, lo: float, hi: float) -> float | None:
        return None if x is None else min(1.0, max(0.0, (x - lo) / (hi - lo)))

    words = ok(words_complete)
    words = 0.0 if words is None else words
    prosody = calibrated(ok(prosody_complete), PROSODY_UNSURE, PROSODY_SURE)
    lm = calibrated(ok(lm_end_prob), LM_UNSURE, LM_SURE)
    if prosody is None and lm is None:
        return words
    total, weight = WORDS_WEIGHT * words, WORDS_WEIGHT
    if prosody is not None:
        total, weight = total + PROSODY_WEIGHT * prosody, weight + PROSODY_WEIGHT
    fused = total / weight
    if lm is not None:
        fused = min(fused, (total + LM_WEIGHT * lm) / (weight + LM_WEIGHT))
    return min(fused, words) if words <= BROKEN_OFF else fused
