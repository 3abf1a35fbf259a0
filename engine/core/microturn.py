"""The micro-turn assembler and the compact rendering of micro-turns into session text.

Every 200 ms the assembler cuts one ``MicroTurn`` from what arrived since the last cut. The
renderer turns it into one short line for the model session::

    12.4 app code "parser.py" | typed "why does this fail?" =>
    15.0 screen "+3 lines, last: KeyError: 'name'" | cue traceback "KeyError: 'name'" =>

and the decision the policy took is written right after ``=>`` (`` speak "..."``) as the
start of the next append, so the session holds the whole timeline, its own choices included.
Quiet ticks render nothing (they cost no tokens and no model call: with no new tokens the
model's answer cannot change); a bare time marker is written every ``heartbeat_s`` of quiet
so the model still knows how much time has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.frames import (
    TICK_S,
    DataFrame,
    FocusChange,
    MicroTurn,
    ScreenCue,
    ScreenText,
    TaskUpdate,
    TranscriptDelta,
    TypedText,
)

MAX_ITEM_CHARS = 300
"""Cap per item and tick: a pasted file must not blow the 200 ms append budget."""

DECISION_CUE = " =>"
SCREEN_CHARS = 100
"""A screen change or cue costs a few tokens: its summary is capped far below an item's."""


class Assembler:
    """Collects data frames between ticks and cuts them into micro-turns."""

    def __init__(self) -> None:
        self._typed: list[str] = []
        self._transcript: list[TranscriptDelta] = []
        self._focus: FocusChange | None = None
        self._tasks: list[TaskUpdate] = []
        self._said: list[str] = []
        self._cut_off: list[str] = []
        self._screen: list[ScreenText] = []
        self._cues: list[ScreenCue] = []
        self.index = 0

    def add(self, frame: DataFrame) -> None:
        """Take one data frame that arrived during the current tick."""
        if isinstance(frame, TypedText):
            self._typed.append(frame.text)
        elif isinstance(frame, TranscriptDelta):
            self._transcript.append(frame)
        elif isinstance(frame, FocusChange):
            self._focus = frame  # latest only: two switches in 200 ms leave the last app
        elif isinstance(frame, ScreenText):
            # latest only: the newest reading supersedes the last (a look the user asked for
            # is kept beside it)
            self._screen[:] = [s for s in self._screen if s.looked != frame.looked] + [frame]
        elif isinstance(frame, ScreenCue):
            self._cues.append(frame)
        else:
            self._tasks.append(frame)

    def add_said(self, text: str) -> None:
        """Record speech the assistant started without a decision of its own (forced)."""
        self._said.append(text)

    def add_cut_off(self, text: str) -> None:
        """Record the words the assistant got out before it was interrupted."""
        self._cut_off.append(text)

    def cut(self, t: float, *, user_speaking: bool, assistant_speaking: bool) -> MicroTurn:
        """Close the current tick at time ``t`` and start the next one."""
        self.index += 1
        turn = MicroTurn(
            index=self.index,
            t=t,
            typed=tuple(self._typed),
            transcript=tuple(self._transcript),
            focus=self._focus,
            tasks=tuple(self._tasks),
            said=tuple(self._said),
            cut_off=tuple(self._cut_off),
            user_speaking=user_speaking,
            assistant_speaking=assistant_speaking,
            screen=tuple(self._screen),
            cues=tuple(self._cues),
        )
        self._screen.clear()
        self._cues.clear()
        self._typed.clear()
        self._transcript.clear()
        self._focus = None
        self._tasks.clear()
        self._said.clear()
        self._cut_off.clear()
        return turn


def quote(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """One-line, length-capped, double-quoted text.

    Quotes inside become single quotes and ``<|`` is broken up, so user content can neither
    close the quote nor spell a chat-template control token for a server that parses them.
    """
    flat = " ".join(text.split()).replace('"', "'").replace("<|", "< |")
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f'"{flat}"'


@dataclass(slots=True)
class Renderer:
    """Renders micro-turns into compact lines; remembers what it last wrote."""

    heartbeat_s: float = 2.0
    _last_line_t: float = 0.0
    _user_speaking: bool = False
    words_end: int | None = None
    """In the last line rendered: the offset right after the user's last final words, before
    their closing punctuation and quote (where the session reads how likely they are over);
    None when the line has no final transcript."""

    def render(self, turn: MicroTurn, heartbeat: bool = True) -> str | None:
        """The line for this turn, or None when it is quiet and no heartbeat is due."""
        self.words_end = None
        parts: list[str] = []
        words_end: tuple[int, int] | None = None  # (part index, offset in the part)
        if turn.focus is not None:
            title = f" {quote(turn.focus.title, 80)}" if turn.focus.title else ""
            parts.append(f"app {turn.focus.app}{title}")
        if turn.user_speaking != self._user_speaking:
            parts.append("user talking" if turn.user_speaking else "user quiet")
            self._user_speaking = turn.user_speaking
        for delta in turn.transcript:
            if delta.final:
                quoted = quote(delta.text)
                words = quoted[1:-1].rstrip(_CLOSING)
                if words:
                    words_end = (len(parts), len('user "') + len(words))
                parts.append(f"user {quoted}")
        parts.extend(f"typed {quote(text)}" for text in turn.typed)
        for task in turn.tasks:
            state = "done" if task.done else "update"
            parts.append(f"task {task.task} {state} {quote(task.summary)}")
        for s in turn.screen:
            if s.looked:
                parts.append(f"screen now {quote(s.summary)}")
            else:
                parts.append(f"screen {quote(s.summary, SCREEN_CHARS)}")
        parts.extend(f"cue {c.what} {quote(c.summary, SCREEN_CHARS)}" for c in turn.cues)
        parts.extend(f"you said {quote(text)}" for text in turn.said)
        parts.extend(f"you stopped after {quote(text)}" for text in turn.cut_off)
        if not parts and (
            not heartbeat or turn.t - self._last_line_t < self.heartbeat_s - TICK_S / 2
        ):
            return None
        self._last_line_t = turn.t
        body = " | ".join(parts)
        if not body:
            return f"{turn.t:.1f}{DECISION_CUE}"
        head = f"{turn.t:.1f} "
        if words_end is not None:
            i, offset = words_end
            self.words_end = len(head) + sum(len(p) + len(" | ") for p in parts[:i]) + offset
        return f"{head}{body}{DECISION_CUE}"


_CLOSING = " .?!…,;:-—"
"""What a recogniser ends words with; the end-of-words probe sits before it."""
