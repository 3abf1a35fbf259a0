"""Is a reply a copy? Of the prompt's examples and instructions, or of the user's own words.

A small model parrots: it says the few-shot example's answer again, or reads the user's last
sentence back. ``copies(reply, source)`` says whether ``reply`` is mostly ``source``: case and
punctuation are ignored, and a reply copies when at least ``COPY_SHARE`` of its words appear in
``source`` in the same order, in runs of two or more words (so a shared "the" or "git" is not a
copy). A reply of one or two words copies only a source that says exactly that.
``contains(reply, passage)`` says whether the reply repeats a whole passage (an example
answer) inside something longer. ``opens_with(reply, source)`` judges a reply still being
decoded: it begins the way ``source`` begins, word for word, so it is reading it back.
``PromptText`` cuts a pinned prompt into what a reply must not copy. The engine uses these as
a guard before it speaks; ``tandem eval replies`` measures with them. Pure: the standard
library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher

COPY_SHARE = 0.8
"""The share of a reply's words, in order, that makes it a copy of a source."""
MIN_RUN = 2
"""Shared words count only in runs at least this long (single common words are not copying)."""
SHORT_REPLY = 3
"""Replies shorter than this (in words) copy only a source equal to them."""
MIN_PASSAGE = 4
"""A passage shorter than this (in words) is not looked for inside longer replies."""
OPENING_WORDS = 5
"""A reply whose first this many words are a source's first words reads it back. The full
check waits for a clause; live, the 0.5B read the user back for 6-12 tokens more first
(2026-12-04). Shorter sources are left to it: "7 of clubs is ..." may be an answer."""

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_CHATML = re.compile(r"<\|[^|>]*\|>(?:system|user|assistant)?")
_QUOTED = re.compile(r'"([^"\n]*)"')
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+")


def words(text: str) -> list[str]:
    """The words of ``text``: lower case, punctuation dropped, apostrophes kept inside."""
    return [w.replace("'", "") for w in _WORD.findall(text.lower())]


def overlap(reply: str, source: str) -> float:
    """The share of the reply's words found in ``source`` in order, in runs of ``MIN_RUN``."""
    r, s = words(reply), words(source)
    if not r or not s:
        return 0.0
    blocks = SequenceMatcher(None, r, s, autojunk=False).get_matching_blocks()
    shared = sum(b.size for b in blocks if b.size >= min(MIN_RUN, len(r)))
    return shared / len(r)


def copies(reply: str, source: str, share: float = COPY_SHARE) -> bool:
    """True when ``reply`` is mostly ``source`` (see the module's docstring)."""
    r, s = words(reply), words(source)
    if not r or not s:
        return False
    if len(r) < SHORT_REPLY:
        return r == s
    return overlap(reply, source) >= share


def contains(reply: str, passage: str) -> bool:
    """True when the reply says the whole ``passage`` (``MIN_PASSAGE`` words or more) word for
    word somewhere in it."""
    r, p = words(reply), words(passage)
    if len(p) < MIN_PASSAGE or len(p) > len(r):
        return False
    return any(r[i : i + len(p)] == p for i in range(len(r) - len(p) + 1))


def opens_with(reply: str, source: str, n: int = OPENING_WORDS) -> bool:
    """True when the reply so far begins with the first ``n`` words of ``source``."""
    r, s = words(reply), words(source)
    return len(r) >= n and len(s) >= n and r[:n] == s[:n]


@dataclass(frozen=True, slots=True)
class PromptText:
    """What a reply must not copy from a pinned prompt: its instruction sentences and
    example lines (``sentences``), and every quoted text in it (``quoted``: the example
    answers and the example user turns)."""

    sentences: tuple[str, ...]
    quoted: tuple[str, ...]

    @classmethod
    def parse(cls, prompt: str) -> PromptText:
        """Cut a ChatML prompt (``assets/prompts/interaction.txt``) into its parts."""
        plain = _CHATML.sub("\n", prompt)
        quoted = tuple(q.strip() for q in _QUOTED.findall(plain) if words(q))
        parts = (p.strip() for p in _SENTENCE.split(plain))
        return cls(sentences=tuple(p for p in parts if words(p)), quoted=quoted)

    def copied_by(self, reply: str) -> str | None:
        """The part of the prompt that ``reply`` copies, or None."""
        for q in self.quoted:
            if copies(reply, q) or contains(reply, q):
                return q
        for s in self.sentences:
            if copies(reply, s):
                return s
        return None

    def opened_by(self, reply: str) -> str | None:
        """The part of the prompt that a reply still being decoded begins to say, or None."""
        return next((p for p in (*self.quoted, *self.sentences) if opens_with(reply, p)), None)


def copies_any(reply: str, sources: Iterable[str]) -> bool:
    """True when ``reply`` copies any of ``sources`` (e.g. the user's recent utterances)."""
    return any(copies(reply, s) for s in sources)
