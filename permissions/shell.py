"""Bash syntax as bash reads it: the one module that imports tree-sitter.

Two readers, both conservative, and a command is *plain* only when both agree:

- ``tree-sitter-bash`` (MIT; the grammar Codex uses to decide which commands are plain) gives
  the structure: every command anywhere in the script (lists, pipelines, subshells, function
  bodies, command and process substitutions, heredocs), so deny rules see all of them.
- A strict word scanner written here decodes quoting exactly as bash does (single quotes,
  double quotes, backslash escapes, line continuations) and refuses everything else it does
  not model: ``$`` in any form (parameters, ``$(...)``, ``$((...))``, ``$'...'``, ``$"..."``),
  backticks, operators, redirections, globs, brace expansion, ``~`` expansion, comments,
  assignments before the command, reserved words and control characters.

If tree-sitter cannot be imported, nothing is plain (the gate fails closed) and deny rules fall
back to a crude split that over-approximates what bash would run.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

try:  # the parser is a compiled wheel; without it every command is "not plain" (asks)
    import tree_sitter
    import tree_sitter_bash

    _LANGUAGE: tree_sitter.Language | None = tree_sitter.Language(tree_sitter_bash.language())
    UNAVAILABLE = ""
except (ImportError, OSError, ValueError) as e:  # a missing or broken wheel: fail closed
    _LANGUAGE = None
    UNAVAILABLE = (
        f"the shell parser is unavailable ({e}); install it with "
        "`pip install 'tree-sitter>=0.26,<0.27' 'tree-sitter-bash>=0.25,<0.26'`"
    )

MAX_SOURCE = 65_536
"""Longest command analysed (characters); a longer one is a malformed request."""
MAX_NODES = 200_000
"""Syntax-tree nodes visited at most; a script with more is refused as too complex."""
MAX_DECODED = 1_000_000
"""Characters of words decoded at most (nested substitutions re-read their inner text)."""

_RESERVED = frozenset(
    {
        "!",
        "{",
        "}",
        "[[",
        "]]",
        "case",
        "coproc",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "function",
        "if",
        "in",
        "select",
        "then",
        "time",
        "until",
        "while",
    }
)
_OPERATORS = frozenset("|&;<>()\n")
_QUOTED = "\x01"  # mask character for a quoted (literal) character
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_BRACE = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}|\{[^}]*\{")
_REDIRECTS = frozenset({"file_redirect", "heredoc_redirect", "herestring_redirect"})
_ANSI_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


@dataclass(frozen=True, slots=True)
class Command:
    """One command the script would run (words decoded as far as they can be known).

    Attributes:
        words: the program and its arguments; quotes removed, ``$'...'`` decoded, expansions
            and substitutions left as written.
        redirects: the targets of its redirections (``> f``, ``< f``), decoded the same way.
    """

    words: tuple[str, ...]
    redirects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    """What bash would do with a command line, without running it.

    Attributes:
        source: the command line.
        argv: the words, set only when the line is one plain command (see the module doc).
        problem: why it is not plain (``""`` when it is).
        commands: every command anywhere in it, for deny rules.
        texts: heredoc bodies and here-strings (text a program reads as its input).
        recursive_functions: functions that call themselves (``:(){ :|:& };:``).
        assigned: the values of variable assignments (``KEY=/path cmd``, ``export X=...``).
        complete: False when the analysis stopped early (too many nodes): deny cannot be sure.
    """

    source: str
    argv: tuple[str, ...] | None
    problem: str
    commands: tuple[Command, ...]
    texts: tuple[str, ...] = ()
    recursive_functions: tuple[str, ...] = ()
    complete: bool = True
    assigned: tuple[str, ...] = ()


_local = threading.local()


def _parser() -> tree_sitter.Parser:
    """One parser per thread (a tree-sitter parser is not thread-safe), created once."""
    parser: tree_sitter.Parser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = tree_sitter.Parser(_LANGUAGE)
        _local.parser = parser
    return parser


def parse(source: str) -> Script:
    """Analyse ``source`` as bash would read it (nothing is run)."""
    if len(source) > MAX_SOURCE:
        return Script(source, None, f"longer than {MAX_SOURCE} characters", (), complete=False)
    words, problem = split_plain(source)
    if _LANGUAGE is None:
        return Script(source, None, UNAVAILABLE, crude_commands(source))
    data = source.encode("utf-8", "surrogatepass")
    tree = _parser().parse(data)
    root = tree.root_node
    walk = _Walk(data)
    walk.run(root)
    commands = walk.commands
    if root.has_error:
        problem = problem or "bash would not parse it (syntax error)"
        commands = [*commands, *crude_commands(source)]
    elif not walk.complete:
        problem = problem or "too complex to analyse"
    elif not problem:
        problem = _structure_problem(root, len(words))
    return Script(
        source,
        tuple(words) if not problem else None,
        problem,
        tuple(commands),
        tuple(walk.texts),
        tuple(walk.recursive),
        walk.complete,
        tuple(walk.assigned),
    )


def _structure_problem(root: tree_sitter.Node, n_words: int) -> str:
    """Does tree-sitter agree that ``root`` is one command with ``n_words`` plain words?"""
    if root.child_count != 1 or root.children[0].type != "command":
        return "more than one command, or a compound command"
    cmd = root.children[0]
    groups = 0
    last_end = -1
    for child in cmd.children:
        if child.type == "variable_assignment":
            return "environment assignment before the command"
        if child.type in _REDIRECTS:
            return "redirection"
        if child.start_byte != last_end:
            groups += 1
        last_end = child.end_byte
    if groups != n_words:
        return "the two shell readers disagree on the words"
    return ""


class _Walk:
    """An iterative walk of the syntax tree collecting every command (no recursion)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.commands: list[Command] = []
        self.texts: list[str] = []
        self.recursive: list[str] = []
        self.assigned: list[str] = []
        self.complete = True
        self._budget = MAX_DECODED
        self._extra: dict[int, tuple[list[str], list[str]]] = {}

    def text(self, node: tree_sitter.Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "surrogatepass")

    def run(self, root: tree_sitter.Node) -> None:
        stack = [root]
        seen = 0
        while stack:
            node = stack.pop()
            seen += 1
            if seen > MAX_NODES or not self.complete:
                self.complete = False
                return
            kind = node.type
            if kind == "command":
                self.commands.append(self._command(node))
            elif kind == "redirected_statement":
                self._redirected(node)
            elif kind == "function_definition":
                self._function(node)
            elif kind == "variable_assignment":
                value = node.child_by_field_name("value")
                if value is not None:
                    self.assigned.append(decode_loose(self.text(value)))
            elif kind == "heredoc_body":
                self.texts.append(self.text(node))
            elif kind == "herestring_redirect":
                self.texts.append(" ".join(decode_loose(self.text(c)) for c in node.named_children))
            stack.extend(reversed(node.children))

    def _command(self, node: tree_sitter.Node) -> Command:
        words: list[str] = []
        redirects: list[str] = []
        raw: list[str] = []
        last_end = -1
        for child in node.children:
            if child.type == "variable_assignment":
                continue
            if child.type in _REDIRECTS:
                target, extra = self._redirect(child)
                redirects.extend(target)
                words.extend(extra)
                continue
            text = self.text(child)
            if child.start_byte == last_end and raw:
                raw[-1] += text  # adjacent nodes with no space are one bash word: $"x", a"b"
            else:
                raw.append(text)
            last_end = child.end_byte
        extra_words, extra_redirects = self._extra.pop(node.id, ([], []))
        self._budget -= sum(len(w) for w in raw)
        if self._budget < 0:
            self.complete = False  # deny cannot be sure it saw every word
        words = [decode_loose(w) for w in raw] + words + extra_words
        return Command(tuple(words), tuple(redirects + extra_redirects))

    def _redirect(self, node: tree_sitter.Node) -> tuple[list[str], list[str]]:
        """A redirection's target, and the words tree-sitter folded into it (``2>&1 -rf /``)."""
        targets: list[str] = []
        extra: list[str] = []
        for child in node.named_children:
            if child.type in ("file_descriptor", "heredoc_start", "heredoc_body", "heredoc_end"):
                continue
            (extra if targets else targets).append(decode_loose(self.text(child)))
        return targets, extra

    def _redirected(self, node: tree_sitter.Node) -> None:
        body = node.child_by_field_name("body")
        if body is None or body.type != "command":
            body = None
        words: list[str] = []
        redirects: list[str] = []
        for child in node.children:
            if child.type in _REDIRECTS:
                target, extra = self._redirect(child)
                redirects.extend(target)
                words.extend(extra)
        if body is not None:
            self._extra[body.id] = (words, redirects)
        else:  # redirections on a pipeline or a compound: a command of their own for deny
            self.commands.append(Command(tuple(words), tuple(redirects)))

    def _function(self, node: tree_sitter.Node) -> None:
        name_node = node.child_by_field_name("name")
        if name_node is None:
            return
        name = decode_loose(self.text(name_node))
        stack = [c for c in node.children if c.id != name_node.id]
        seen = 0
        while stack:
            seen += 1
            self._budget -= 1
            if self._budget < 0:
                self.complete = False
                return
            sub = stack.pop()
            if sub.type == "command_name" and decode_loose(self.text(sub)) == name:
                self.recursive.append(name)
                return
            stack.extend(sub.children)


def split_plain(source: str) -> tuple[list[str], str]:
    """Split a plain command into words exactly as bash would, or say why it is not plain."""
    words: list[str] = []
    masks: list[str] = []
    cur: list[str] = []
    mask: list[str] = []
    in_word = False
    src = source.strip(" \t\n")
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t":
            if in_word:
                words.append("".join(cur))
                masks.append("".join(mask))
                cur, mask, in_word = [], [], False
            i += 1
            continue
        if c in _OPERATORS:
            return [], f"shell operator {c!r}"
        if c == "\\":
            if i + 1 >= n:
                return [], "a trailing backslash"
            nxt = src[i + 1]
            i += 2
            if nxt == "\n":
                continue  # a line continuation joins the lines
            cur.append(nxt)
            mask.append(_QUOTED)
            in_word = True
            continue
        if c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                return [], "an unbalanced single quote"
            cur.append(src[i + 1 : j])
            mask.append(_QUOTED * (j - i - 1))
            in_word, i = True, j + 1
            continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                ch = src[j]
                if ch in "$`!":
                    return [], "expansion or substitution inside double quotes"
                if ch == "\\" and j + 1 < n and src[j + 1] in '$`"\\\n':
                    if src[j + 1] != "\n":
                        cur.append(src[j + 1])
                        mask.append(_QUOTED)
                    j += 2
                    continue
                cur.append(ch)
                mask.append(_QUOTED)
                j += 1
            if j >= n:
                return [], "an unbalanced double quote"
            in_word, i = True, j + 1
            continue
        if c == "$":
            return [], "parameter expansion, substitution or $'...' quoting"
        if c == "`":
            return [], "command substitution"
        if c == "#" and not in_word:
            return [], "a comment"
        if c == "!":
            return [], "history expansion ('!' outside single quotes)"
        if ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF:
            return [], "a control character"
        cur.append(c)
        mask.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
        masks.append("".join(mask))
    if not words:
        return [], "empty command"
    for k, m in enumerate(masks):
        if any(ch in m for ch in "*?["):
            return [], "glob patterns expand"
        if "{" in m and _BRACE.search(m):
            return [], "brace expansion"
        if m.startswith("~") or "=~" in m or ":~" in m:
            return [], "home-directory expansion"
        if k == 0 and _ASSIGNMENT.match(m):
            return [], "environment assignment before the command"
    if masks[0] in _RESERVED:
        return [], f"shell keyword {masks[0]!r}"
    return words, ""


def decode_loose(raw: str) -> str:
    """One bash word with its quotes removed and ``$'...'`` decoded; expansions left as written.

    For deny rules only: the result is what the word is *likely* to be, never proof of safety.
    """
    if not any(ch in raw for ch in "\\'\"$"):
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\\" and i + 1 < n:
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
        elif c == "'":
            j = raw.find("'", i + 1)
            j = n if j < 0 else j
            out.append(raw[i + 1 : j])
            i = j + 1
        elif c == "$" and i + 1 < n and raw[i + 1] == "'":
            text, i = _ansi_c(raw, i + 2)
            out.append(text)
        elif c == '"' or (c == "$" and i + 1 < n and raw[i + 1] == '"'):
            j = i + (2 if c == "$" else 1)
            while j < n and raw[j] != '"':
                if raw[j] == "\\" and j + 1 < n and raw[j + 1] in '$`"\\\n':
                    if raw[j + 1] != "\n":
                        out.append(raw[j + 1])
                    j += 2
                    continue
                out.append(raw[j])
                j += 1
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ansi_c(raw: str, i: int) -> tuple[str, int]:
    """Decode ``$'...'`` from just after the opening quote; bash stops the string at a NUL."""
    out: list[str] = []
    n = len(raw)
    while i < n and raw[i] != "'":
        c = raw[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = raw[i + 1]
        i += 2
        if e in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[e])
        elif e in "01234567":
            m = re.match(r"[0-7]{0,2}", raw[i:])
            digits = e + (m.group(0) if m else "")
            i += len(digits) - 1
            out.append(chr(int(digits, 8) & 0xFF))
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            m = re.match(f"[0-9A-Fa-f]{{1,{width}}}", raw[i:])
            if m is None:
                out.append("\\" + e)
                continue
            i += len(m.group(0))
            code = int(m.group(0), 16)
            out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
        elif e == "c" and i < n:
            out.append(chr(ord(raw[i]) & 0x1F))
            i += 1
        else:
            out.append("\\" + e)
    text = "".join(out)
    return text.split("\x00", 1)[0], i + 1


_CRUDE_SPLIT = re.compile(r"\$\(|\$\{|<\(|>\(|[;&|()\n\r<>`{}]")


def crude_commands(source: str) -> tuple[Command, ...]:
    """Over-approximate the commands in ``source`` by cutting at every operator (deny only)."""
    out = []
    for piece in _CRUDE_SPLIT.split(source[:MAX_SOURCE]):
        words = tuple(decode_loose(w) for w in _crude_words(piece))
        if words:
            out.append(Command(words))
    return tuple(out)


def _crude_words(piece: str) -> Iterator[str]:
    """Words cut at unquoted blanks; an unbalanced quote runs to the end of the piece."""
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(piece):
        c = piece[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = ""
        elif c in " \t":
            if cur:
                yield "".join(cur)
                cur = []
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c == "\\" and i + 1 < len(piece):
            cur.append(piece[i : i + 2])
            i += 1
        else:
            cur.append(c)
        i += 1
    if cur:
        yield "".join(cur)


def expand_braces(word: str, limit: int = 64) -> list[str]:
    """Bash brace expansion (``a{b,c}``, ``{1..3}``), for deny checks; at most ``limit`` words.

    Words longer than 1,024 characters are left as they are (the scan is quadratic).
    """
    if "{" not in word or len(word) > 1024:
        return [word]
    out: list[str] = []
    todo = [word]
    while todo and len(out) < limit:
        w = todo.pop(0)
        alts = _first_brace(w)
        if alts is None:
            out.append(w)
        else:
            todo[:0] = alts
            del todo[4 * limit :]
    return out


def _first_brace(w: str) -> list[str] | None:
    """The words of the first expandable ``{...}`` in ``w``, or None."""
    start = w.find("{")
    while start >= 0:
        depth, j = 0, start
        commas: list[int] = []
        while j < len(w):
            if w[j] == "{":
                depth += 1
            elif w[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            elif w[j] == "," and depth == 1:
                commas.append(j)
            j += 1
        if j >= len(w):
            return None
        head, body, tail = w[:start], w[start + 1 : j], w[j + 1 :]
        if commas:
            cuts = [start, *commas, j]
            return [head + w[a + 1 : b] + tail for a, b in itertools.pairwise(cuts)]
        seq = _sequence(body)
        if seq is not None:
            return [head + s + tail for s in seq]
        start = w.find("{", start + 1)
    return None


def _sequence(body: str) -> list[str] | None:
    m = re.fullmatch(r"(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?", body)
    if m is None:
        return None
    a, b, step = m.group(1), m.group(2), abs(int(m.group(3) or 1)) or 1
    if a.lstrip("-").isdigit() and b.lstrip("-").isdigit():
        lo, hi = int(a), int(b)
        rng = range(lo, hi + 1, step) if lo <= hi else range(lo, hi - 1, -step)
        return [str(x) for x in list(rng)[:64]]
    if len(a) == 1 and len(b) == 1 and not a.isdigit() and not b.isdigit():
        lo, hi = ord(a), ord(b)
        rng = range(lo, hi + 1, step) if lo <= hi else range(lo, hi - 1, -step)
        return [chr(x) for x in list(rng)[:64]]
    return None
