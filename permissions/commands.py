"""Shell command analysis: what an allow rule for ``pytest`` must never let through.

A command is *simple* when it is one program with literal arguments: no chaining
(``;`` ``&&`` ``||`` ``|`` ``&`` newline), no substitution (`` ` `` ``$(`` ``${`` ``<(``),
no redirection, no variable or environment tricks in front (``FOO=1 cmd``, ``env``, ``sudo``,
``command``, ``exec`` ...). Only simple commands can be allowed by a command-prefix rule;
anything else falls through to *ask*. Deny rules look at every part of a compound command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# Characters that change what the shell runs when they appear outside quotes.
_META = re.compile(r"[;&|<>`\n\r]|\$\(|\$\{|\$[A-Za-z_]|<\(|>\(")
_SPLIT = re.compile(r"\|\||&&|[;&|\n\r]")
_SUBST = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
WRAPPERS = frozenset(
    {
        "env",
        "sudo",
        "doas",
        "su",
        "command",
        "builtin",
        "exec",
        "eval",
        "nohup",
        "time",
        "xargs",
        "nice",
        "ionice",
        "timeout",
        "stdbuf",
        "busybox",
        "sh",
        "bash",
        "zsh",
        "dash",
        "fish",
        "ksh",
        "python",
        "python3",
        "perl",
        "ruby",
        "node",
    }
)
"""Programs that run *another* command: a prefix rule on them would allow anything."""


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """A command line split into parts; ``argv`` is set only for a simple command."""

    raw: str
    simple: bool
    argv: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...]
    problem: str


def parse(command: str) -> ParsedCommand:
    """Analyse ``command`` without running anything."""
    if "\x00" in command:
        return ParsedCommand(command, False, (), (), "NUL byte in command")
    pieces = _SPLIT.split(command)
    for inner in _SUBST.findall(command):  # what `$(...)` and backticks would run, too
        pieces.extend(_SPLIT.split(inner[0] or inner[1]))
    parts = tuple(_words(p) for p in pieces if p.strip())
    try:
        argv = tuple(shlex.split(command, posix=True))
    except ValueError as e:
        return ParsedCommand(command, False, (), parts, f"unparsable ({e})")
    problem = _unsafe(command, argv)
    return ParsedCommand(command, not problem, argv if not problem else (), parts, problem)


def _words(part: str) -> tuple[str, ...]:
    try:
        words = shlex.split(part, posix=True)
    except ValueError:
        words = part.split()
    # Strip leading assignments and wrappers so `FOO=1 sudo rm -rf /` is seen as `rm -rf /`.
    while words and (_ASSIGNMENT.match(words[0]) or basename(words[0]) in WRAPPERS):
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[1:]
    return tuple(words)


def _unsafe(command: str, argv: tuple[str, ...]) -> str:
    if not argv:
        return "empty command"
    outside = _outside_single_quotes(command)
    if _META.search(outside):
        return "shell operators, substitution or redirection"
    if _ASSIGNMENT.match(argv[0]):
        return "environment assignment before the command"
    if basename(argv[0]) in WRAPPERS:
        return f"{basename(argv[0])} runs another command"
    if any(a.startswith("~") for a in argv):
        return "home-directory expansion"
    if any(ch in a for a in argv for ch in "*?["):
        return "glob patterns expand"
    return ""


def _outside_single_quotes(command: str) -> str:
    """The command with single-quoted text blanked (double quotes still expand ``$``)."""
    out, quoted = [], False
    for ch in command:
        if ch == "'":
            quoted = not quoted
            out.append(" ")
        else:
            out.append(" " if quoted else ch)
    return "".join(out)


def basename(word: str) -> str:
    """The program name of a path (``/usr/bin/rm`` -> ``rm``)."""
    return word.rsplit("/", 1)[-1]


def prefix_matches(rule_prefix: str, argv: tuple[str, ...]) -> bool:
    """True when ``argv`` starts with the rule's words (program compared by basename)."""
    try:
        want = shlex.split(rule_prefix)
    except ValueError:
        return False
    if not want or len(argv) < len(want):
        return False
    # The program must be named exactly as the rule names it: `pytest` (found on PATH) is
    # not `/tmp/pytest` or `./pytest`, which could be anything.
    return list(argv[: len(want)]) == want


def any_part_matches(rule_prefix: str, parsed: ParsedCommand) -> bool:
    """For deny rules: does any part of a (possibly compound) command start with the prefix?"""
    if parsed.argv and prefix_matches(rule_prefix, parsed.argv):
        return True
    return any(prefix_matches(rule_prefix, part) for part in parsed.parts if part)
