"""Visual cues: failures and risks in terminals and editors, found in screen text.

Each detector reads the OCR lines of what changed and raises a typed ``Cue`` with a short
summary, a stable ``key`` (the same failure on later frames is the same cue) and where it is
on screen. Detectors run on redacted text, so a cue never carries a secret.

Covered: pytest, unittest, go test, cargo test and jest failures; Python tracebacks; compiler
errors (gcc/clang, rustc and cargo, go, javac), npm/yarn/pnpm and make failures; type checkers
(mypy, pyright, tsc); destructive commands typed at a prompt, read with the permission gate's
own shell parser (``permissions.commands``: wrappers such as ``sudo`` unwrapped, flags in any
order or spelling) -- ``rm`` recursive and forced, ``git push`` forced (``-f``, ``--force``,
``+refspec``), ``git reset --hard``, ``git clean -f``; and SQL ``DROP``/``TRUNCATE``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.seeing.ocr import OcrLine
from engine.seeing.regions import Box
from permissions import commands

MAX_SUMMARY = 100
"""A cue's summary is a few words, not the screen."""


class CueKind(enum.Enum):
    """What a cue is about (the timeline's ``what``)."""

    TEST_FAILURE = "test_failure"
    TRACEBACK = "traceback"
    BUILD_ERROR = "build_error"
    TYPE_ERROR = "type_error"
    DESTRUCTIVE_COMMAND = "destructive_command"


@dataclass(frozen=True, slots=True)
class Cue:
    """One failure or risk seen on screen."""

    kind: CueKind
    summary: str
    key: str
    box: Box


_PYTEST_FAILED = re.compile(r"^FAILED\s+(\S+?)(?:\s+-\s+(.*))?$")
_PYTEST_HEADER = re.compile(r"^_{3,}\s*(?:\w+\.)?(test\w*)(?:\[.*\])?\s*_{3,}$")
_UNITTEST = re.compile(r"^(?:FAIL|ERROR):\s+(test\w*)\s+\(([\w.]+)\)")
_GO_FAIL = re.compile(r"^\s*--- FAIL:\s+(Test\w*)")
_CARGO_FAIL = re.compile(r"^test\s+([\w:]+)\s+\.\.\.\s+FAILED$")
_JEST_FAIL = re.compile(r"^(?:FAIL\s+(\S+\.(?:[jt]sx?|mjs))|[✕×]\s+(.+?)(?:\s+\(\d+\s*ms\))?)$")
_SUITE_FAILED = re.compile(
    r"(\d+)\s+failed\b|FAILED\s+\((?:failures|errors)=\d+|test result: FAILED"
)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
_EXC_LINE = re.compile(
    r"^((?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Fault|Warning))"
    r"(?::\s*(.*))?$"
)
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')
_GCC = re.compile(
    r"^(\S+\.(?:c|cc|cpp|cxx|h|hpp|m|java|go|zig)):(\d+)(?::\d+)?:\s*(?:fatal\s+)?error:?\s*(.*)"
)
_RUSTC = re.compile(r"^error(?:\[(E\d{4})\])?:\s*(.+)")
_NPM = re.compile(
    r"^(?:npm\s+(?:ERR!|error)|yarn\s+error|ERR_PNPM_\w+|error\s+Command failed)\s*(.*)"
)
_MAKE = re.compile(r"^(?:g?make)(?:\[\d+\])?:\s*\*\*\*\s*(.*)")
_GO_BUILD = re.compile(r"^(\.?/?\S+\.go):(\d+):\d+:\s*(.+)")
_MYPY = re.compile(r"^(\S+\.pyi?):(\d+)(?::\d+)?:\s*error:\s*(.+?)(?:\s+\[[\w-]+\])?$")
_PYRIGHT = re.compile(r"^\s*(\S+\.pyi?):(\d+):\d+\s+-\s+error:\s*(.+)")
_TSC = re.compile(r"^(\S+\.tsx?)(?:\((\d+),\d+\)|:(\d+):\d+)\s*-?\s*:?\s*error\s+(TS\d+):\s*(.+)")
_SQL = re.compile(
    r"\b(DROP\s+(?:TABLE|DATABASE|SCHEMA)|TRUNCATE\s+TABLE)\s+(?:IF\s+EXISTS\s+)?([\w.`\"]+)",
    re.I,
)
_PROMPT = re.compile(r"(?:^|\s)(?:[\w.-]+@[\w.-]+(?::\S*)?\s*)?(?:[$#%❯➜»]|>>>|PS [^>]*>)\s+(?=\S)")


def detect(lines: Sequence[OcrLine]) -> list[Cue]:
    """Every cue in these lines (in screen order, one per key)."""
    found: dict[str, Cue] = {}
    tb_start: OcrLine | None = None
    tb_where = ""
    for line in lines:
        text = line.text.strip()
        for cue in _line_cues(text, line.box):
            found.setdefault(cue.key, cue)
        if _TRACEBACK.search(text):
            tb_start, tb_where = line, ""
            continue
        if tb_start is not None:
            where = _FILE_LINE.search(text)
            if where:
                tb_where = f"{_short(where.group(1))} line {where.group(2)}"
                continue
            exc = _EXC_LINE.match(text)
            if exc:
                name = exc.group(1).rsplit(".", 1)[-1]
                detail = (exc.group(2) or "").strip()
                summary = f"{name}: {detail}" if detail else name
                if tb_where:
                    summary += f" ({tb_where})"
                key = f"traceback:{name}:{detail}:{tb_where}"
                box = tb_start.box.union(line.box)
                found.setdefault(key, Cue(CueKind.TRACEBACK, _cap(summary), key, box))
                tb_start = None
    return list(found.values())


def _line_cues(text: str, box: Box) -> list[Cue]:
    out: list[Cue] = []
    m = _PYTEST_FAILED.match(text)
    if m:
        test = m.group(1).rsplit("::", 1)[-1]
        why = (m.group(2) or "").strip()
        out.append(_test_failure(test, why, box))
    for rx in (_PYTEST_HEADER, _GO_FAIL, _CARGO_FAIL):
        m = rx.match(text)
        if m:
            out.append(_test_failure(m.group(1).rsplit("::", 1)[-1], "", box))
    m = _UNITTEST.match(text)
    if m:
        out.append(_test_failure(m.group(1), "", box))
    m = _JEST_FAIL.match(text)
    if m:
        out.append(_test_failure(m.group(1) or m.group(2), "", box))
    m = _SUITE_FAILED.search(text)
    if m and not out:
        out.append(Cue(CueKind.TEST_FAILURE, _cap(text), f"test_failure:suite:{text}", box))
    out.extend(_build_cues(text, box))
    out.extend(_destructive_cues(text, box))
    return out


def _test_failure(test: str, why: str, box: Box) -> Cue:
    exc = why.split(":", 1)[0].strip() if why else ""
    summary = f"{test} fails with {exc}" if exc else f"{test} fails"
    return Cue(CueKind.TEST_FAILURE, _cap(summary), f"test_failure:{test}", box)


def _build_cues(text: str, box: Box) -> list[Cue]:
    for rx, kind in ((_MYPY, CueKind.TYPE_ERROR), (_PYRIGHT, CueKind.TYPE_ERROR)):
        m = rx.match(text)
        if m:
            summary = f"{_short(m.group(1))} line {m.group(2)}: {m.group(3)}"
            return [Cue(kind, _cap(summary), f"{kind.value}:{m.group(1)}:{m.group(2)}", box)]
    m = _TSC.match(text)
    if m:
        line_no = m.group(2) or m.group(3)
        summary = f"{_short(m.group(1))} line {line_no}: {m.group(4)} {m.group(5)}"
        key = f"type_error:{m.group(1)}:{line_no}:{m.group(4)}"
        return [Cue(CueKind.TYPE_ERROR, _cap(summary), key, box)]
    for rx in (_GCC, _GO_BUILD):
        m = rx.match(text)
        if m:
            summary = f"{_short(m.group(1))} line {m.group(2)}: {m.group(3)}"
            key = f"build_error:{m.group(1)}:{m.group(2)}"
            return [Cue(CueKind.BUILD_ERROR, _cap(summary), key, box)]
    m = _RUSTC.match(text)
    if m:
        summary = f"error{f' {m.group(1)}' if m.group(1) else ''}: {m.group(2)}"
        return [Cue(CueKind.BUILD_ERROR, _cap(summary), f"build_error:{text}", box)]
    for rx in (_NPM, _MAKE):
        m = rx.match(text)
        if m:
            return [Cue(CueKind.BUILD_ERROR, _cap(text), f"build_error:{text}", box)]
    return []


def _destructive_cues(text: str, box: Box) -> list[Cue]:
    out: list[Cue] = []
    m = _SQL.search(text)
    if m:
        what = f"{' '.join(m.group(1).upper().split())} {m.group(2)}"
        out.append(Cue(CueKind.DESTRUCTIVE_COMMAND, _cap(what), f"destructive:{what}", box))
    command = _after_prompt(text)
    if command is None:
        return out
    hazard = destructive_command(command)
    if hazard:
        out.append(Cue(CueKind.DESTRUCTIVE_COMMAND, _cap(command), f"destructive:{command}", box))
    return out


def _after_prompt(text: str) -> str | None:
    """The command typed after a shell prompt on this line, or None when there is no prompt."""
    last = None
    for m in _PROMPT.finditer(text):
        last = m
    if last is None:
        return None
    return text[last.end() :].strip() or None


def destructive_command(command: str) -> str:
    """Which risk a shell command carries (``""`` when none): the gate's shell parser reads it.

    Wider than the gate's deny list on purpose: a cue warns about any forced recursive ``rm``,
    not only of critical paths.
    """
    parsed = commands.parse(command)
    for part in parsed.parts:
        argv = _unwrapped(part)
        if not argv:
            continue
        name = commands.basename(argv[0])
        flags = _flags(argv[1:])
        if name in ("rm", "srm", "grm") and {"r", "f"} <= flags:
            return "rm-recursive-force"
        if name == "git":
            sub, i = commands.git_subcommand(argv)
            rest = argv[i + 1 :]
            if sub == "push" and (
                flags & {"f", "force", "force-with-lease", "force-if-includes"}
                or any(w.startswith("+") and len(w) > 1 for w in rest)
            ):
                return "git-push-force"
            if sub == "reset" and "hard" in flags:
                return "git-reset-hard"
            if sub == "clean" and "f" in _flags(rest):
                return "git-clean-force"
    return ""


def _unwrapped(argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` without leading wrappers (``sudo``, ``env``, ``nice``, ...) and their flags."""
    i = 0
    while i < len(argv) and (commands.is_wrapper(argv[i]) or argv[i].startswith("-")):
        i += 1
    return tuple(argv[i:])


def _flags(args: Sequence[str]) -> set[str]:
    """Short flags as letters (``-rf`` -> r, f; ``-R`` counts as r) and long ones as words."""
    out: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("--"):
            word = a[2:].split("=", 1)[0]
            out.add({"recursive": "r", "force": "force"}.get(word, word))
            if word == "force":
                out.add("f")
        elif a.startswith("-") and len(a) > 1:
            out.update(ch.lower() if ch == "R" else ch for ch in a[1:])
    return out


def _short(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _cap(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_SUMMARY else flat[: MAX_SUMMARY - 1] + "…"
