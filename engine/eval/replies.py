"""Are the replies answers? Coding questions through the real engine, scored for facts and
for copying (``tandem eval replies QUESTIONS.jsonl``).

QUESTIONS.jsonl holds one JSON object a line (format in docs/EVAL_FORMATS.md)::

    {"question": "why would git rebase mess up my branch", "facts": [["replay"], ["commit"]]}

Each fact is a list of alternative keywords; a fact is found when any alternative appears in
the reply, matched word by word on simple stems ("replays" and "replayed" find "replay";
"git stash" finds the two words in a row). Each question is typed to a fresh session of the
real engine (the pinned prefix comes back from its snapshot, as in replay) on a virtual clock
with the deterministic voice; the reply is what the assistant starts to say first, within
``WINDOW_S`` of virtual time. ``first_audio_s`` is replay time (the clock stands still while
the model computes; synthesis is modelled), not what a user would wait live.

Copies are judged with ``engine.core.copying``: a reply copies the prompt when it is mostly
one of its instruction sentences or example lines, or says one of its quoted examples word for
word; it copies the user when it is mostly the question itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import audio
from engine.core.copying import PromptText, copies
from engine.core.engine import BACKCHANNEL_TEXT
from engine.core.events import AsrEvent, DecisionEvent, SpeechStart, TimelineEvent
from engine.core.frames import TypedText
from engine.errors import EngineError
from engine.eval.replay import Ears, Scenario, ScriptItem, replay
from engine.hearing.pipeline import hear
from engine.model.worker import ModelWorker
from engine.voice.handles import SpeechOut
from engine.voice.synthesis import Synthesizer

TYPED_AT_S = 1.0
"""When the question is typed, on the virtual clock (a few quiet ticks come first)."""
WINDOW_S = 8.0
"""How long after typing the assistant has to start speaking; silence after it is no reply."""
MAX_LINE_CHARS = 10_000
"""A QUESTIONS.jsonl line longer than this is refused (a question is a sentence or two)."""
ANSWER_DECISIONS = ("speak", "interject", "handoff")


class QuestionsError(EngineError):
    """A QUESTIONS.jsonl file that cannot be read: the message names the line."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question and the facts a good answer contains (each a tuple of alternatives)."""

    question: str
    facts: tuple[tuple[str, ...], ...]


# --- the questions file ------------------------------------------------------------------


def load_questions(path: Path, limit: int | None = None) -> list[Question]:
    """Read and validate QUESTIONS.jsonl (blank lines are skipped).

    Raises:
        QuestionsError: one line saying which line is wrong and how.
    """
    out: list[Question] = []
    try:
        with path.open(encoding="utf-8") as f:
            n = 0
            while raw := f.readline(MAX_LINE_CHARS + 1):
                n += 1
                if len(raw) > MAX_LINE_CHARS and not raw.endswith("\n"):
                    raise QuestionsError(
                        f"{path}:{n}: line longer than {MAX_LINE_CHARS} characters"
                    )
                if raw.strip():
                    out.append(parse_question(raw, f"{path}:{n}"))
                if limit is not None and len(out) >= limit:
                    break
    except FileNotFoundError:
        raise QuestionsError(f"questions file not found: {path}") from None
    except IsADirectoryError:
        raise QuestionsError(f"{path}: is a folder, not a QUESTIONS.jsonl file") from None
    except UnicodeDecodeError as e:
        raise QuestionsError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise QuestionsError(f"{path}: cannot be read ({e.strerror})") from None
    if not out:
        raise QuestionsError(f"{path}: no questions in it")
    return out


def parse_question(raw: str, where: str) -> Question:
    """One line of QUESTIONS.jsonl; ``where`` (file:line) starts every error message."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise QuestionsError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise QuestionsError(f"{where}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise QuestionsError(f"{where}: expected a JSON object with 'question' and 'facts'")
    question, facts = obj.get("question"), obj.get("facts")
    if not isinstance(question, str) or not question.strip():
        raise QuestionsError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(facts, list) or not facts:
        raise QuestionsError(f"{where}: 'facts' must be a non-empty list of keyword lists")
    parsed: list[tuple[str, ...]] = []
    for i, fact in enumerate(facts, start=1):
        if (
            not isinstance(fact, list)
            or not fact
            or not all(isinstance(k, str) and stems(k) for k in fact)
        ):
            raise QuestionsError(
                f"{where}: fact {i} must be a non-empty list of keywords (strings with a word)"
            )
        parsed.append(tuple(k.lower() for k in fact))
    return Question(question=" ".join(question.split()), facts=tuple(parsed))


# --- facts -------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+")
_DOUBLE = re.compile(r"([^aeiouylsz])\1$")
_VOWEL = re.compile(r"[aeiouy]")


def stem(word: str) -> str:
    """A crude stem: plural and -ing/-ed/-ies endings off, a final e off ("rebasing" ->
    "rebas", "applied" -> "apply")."""
    w = word.lower()
    if w.endswith(("ies", "ied")) and len(w) > 4:
        return w[:-3] + "y"  # copies, applied -> copy, apply
    for suffix in ("ing", "ed", "es", "s"):
        if not w.endswith(suffix) or len(w) - len(suffix) < 2:
            continue
        if suffix == "s" and w.endswith(("ss", "us", "is")):
            continue
        if suffix in ("ing", "ed") and (not _VOWEL.search(w[: -len(suffix)]) or w.endswith("eed")):
            continue  # string, thing, red, need: not an ending
        w = w[: -len(suffix)]
        if suffix in ("ing", "ed") and _DOUBLE.search(w):
            w = w[:-1]  # committed -> commit, running -> run
        break
    return w[:-1] if len(w) > 2 and w.endswith("e") else w


def stems(text: str) -> list[str]:
    """The stems of the words of ``text`` (punctuation and symbols split words)."""
    return [stem(t) for t in _TOKEN.findall(text.lower())]


def fact_found(reply: str, alternatives: Sequence[str]) -> bool:
    """True when any alternative's words appear, in a row, among the reply's words."""
    said = stems(reply)
    for alt in alternatives:
        want = stems(alt)
        if want and any(said[i : i + len(want)] == want for i in range(len(said) - len(want) + 1)):
            return True
    return False


def facts_found(reply: str, facts: Sequence[Sequence[str]]) -> int:
    """How many of ``facts`` the reply contains."""
    return sum(fact_found(reply, alts) for alts in facts)


# --- asking ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """What happened after one question was typed."""

    reply: str
    first_audio_s: float | None
    decision: str
    """The first answering decision (speak, interject, handoff), or "silent"."""
    heard: str | None = None
    """Spoken questions: what the recogniser heard (the final transcripts)."""


def first_reply(events: Sequence[TimelineEvent], typed_at: float) -> Asked:
    """The first thing the assistant started to say after ``typed_at`` (not a backchannel),
    with the clauses that continued it (a reply is spoken while it is decoded)."""
    ordered = sorted(events, key=lambda e: e.t)
    decision = next(
        (
            e.decision
            for e in ordered
            if isinstance(e, DecisionEvent) and e.decision in ANSWER_DECISIONS
        ),
        "silent",
    )
    starts = [
        e
        for e in ordered
        if isinstance(e, SpeechStart) and not e.resume and e.text != BACKCHANNEL_TEXT
    ]
    if not starts:
        return Asked("", None, decision)
    parts = [starts[0].text]
    for e in starts[1:]:
        if not e.continues:
            break  # a new utterance: not this reply
        parts.append(e.text)
    return Asked(" ".join(parts), round(starts[0].t - typed_at, 3), decision)


def ask(
    worker: ModelWorker,
    question: str,
    speech: SpeechOut,
    *,
    typed_at: float = TYPED_AT_S,
    window_s: float = WINDOW_S,
) -> Asked:
    """Type ``question`` to the engine on a fresh session; what it answered, and when."""
    worker.call_sync(lambda s: s.start())  # a fresh timeline (the prefix comes from a snapshot)
    scenario = Scenario(
        root=Path("."),
        duration=typed_at + window_s,
        items=(ScriptItem(t=typed_at, frame=TypedText(t=typed_at, text=question)),),
        mic_rate=None,
    )
    events: list[TimelineEvent] = []
    asyncio.run(replay(scenario, worker, events.append, None, speech))
    return first_reply(events, typed_at)


@dataclass(frozen=True, slots=True)
class Spoken:
    """``--spoken``: the voice that says each question and the ears that hear it."""

    voice: Synthesizer
    ears: Ears


def ask_spoken(
    worker: ModelWorker,
    question: str,
    speech: SpeechOut,
    spoken: Spoken,
    *,
    lead_s: float = TYPED_AT_S,
    window_s: float = WINDOW_S,
) -> Asked:
    """Say ``question`` with the voice into a microphone track, hear it as replay does, and
    let the engine answer; ``first_audio_s`` counts from the end of the spoken question."""
    said = spoken.voice.synthesize(question).astype(np.float32)
    quiet = np.zeros(int(lead_s * audio.RATE), dtype=np.float32)
    after = np.zeros(int(window_s * audio.RATE), dtype=np.float32)
    mic = np.concatenate([quiet, said, after])
    ended = lead_s + len(said) / audio.RATE
    heard = [
        ScriptItem(t=h.t, frame=h.transcript, control=h.control)
        for h in hear(mic, spoken.ears.vad, spoken.ears.asr)
    ]
    worker.call_sync(lambda s: s.start())
    scenario = Scenario(
        root=Path("."), duration=len(mic) / audio.RATE, items=(), mic_rate=audio.RATE
    )
    events: list[TimelineEvent] = []
    asyncio.run(replay(scenario, worker, events.append, heard, speech))
    asked = first_reply(events, ended)
    finals = [e.text for e in events if isinstance(e, AsrEvent) and e.kind == "final"]
    return Asked(asked.reply, asked.first_audio_s, asked.decision, " ".join(finals).strip())


def score(q: Question, asked: Asked, prompt: PromptText) -> dict[str, Any]:
    """One entry of the ``replies`` list."""
    reply = asked.reply
    copied = prompt.copied_by(reply) if reply else None
    out: dict[str, Any] = {
        "question": q.question,
        "reply": reply,
        "facts_found": facts_found(reply, q.facts),
        "facts_total": len(q.facts),
        "copies_prompt": copied is not None,
        "copies_user": bool(reply) and copies(reply, q.question),
        "first_audio_s": asked.first_audio_s,
        "decision": asked.decision,
    }
    if copied is not None:
        out["copied"] = copied
    if asked.heard is not None:
        out["heard"] = asked.heard
    return out


def summarise(
    model: str, rows: list[dict[str, Any]], *, spoken: bool = False, window_s: float = WINDOW_S
) -> dict[str, Any]:
    """The report: coverage and copy rate over every question (a question with no reply
    counts as a reply that copies nothing), and the rows."""
    found = sum(r["facts_found"] for r in rows)
    total = sum(r["facts_total"] for r in rows)
    copied = sum(1 for r in rows if r["copies_prompt"] or r["copies_user"])
    latencies = [r["first_audio_s"] for r in rows if r["first_audio_s"] is not None]
    return {
        "model": model,
        "mode": "replay",
        "input": "spoken" if spoken else "typed",
        "fact_coverage": round(found / total, 4) if total else 0.0,
        "copy_rate": round(copied / len(rows), 4) if rows else 0.0,
        "facts_found": found,
        "facts_total": total,
        "questions": len(rows),
        "answered": len(latencies),
        "copies_prompt": sum(1 for r in rows if r["copies_prompt"]),
        "copies_user": sum(1 for r in rows if r["copies_user"]),
        "first_audio_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "window_s": window_s,
        "replies": rows,
    }


def eval_replies(
    questions: Sequence[Question],
    worker: ModelWorker,
    speech: Callable[[], SpeechOut],
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    spoken: Spoken | None = None,
) -> dict[str, Any]:
    """Ask every question on a started worker; ``speech`` makes a fresh voice per question.
    With ``spoken``, each question is said and heard instead of typed."""
    model = worker.call_sync(lambda s: s.backend.name)
    prompt = PromptText.parse(worker.call_sync(lambda s: s.prompt))
    rows: list[dict[str, Any]] = []
    for i, q in enumerate(questions, start=1):
        if spoken is None:
            asked = ask(worker, q.question, speech())
        else:
            asked = ask_spoken(worker, q.question, speech(), spoken)
        row = score(q, asked, prompt)
        rows.append(row)
        if progress is not None:
            progress(i, row)
    return summarise(model, rows, spoken=spoken is not None)
