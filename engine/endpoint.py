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
