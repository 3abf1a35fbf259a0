"""Rule evaluation: pure functions from (request, rules) to a verdict.

Order: deny rules, then ask rules, then allow rules, first match wins within a level; when no
rule matches, a default by risk. Paths are resolved (symlinks, ``..``) before any rule sees
them. Dangerous requests (running commands, network, writes outside the workspace, anything
touching ``.git`` internals, unknown tools) are *explicit-only*: an allow rule covers them only
if its scope is ``once`` or ``session`` and it names the tool exactly (no wildcard) and, for
commands, a concrete program that runs nothing else; a rule with scope ``always`` or a blanket
rule never does.

What deny rules see, beyond the declared path arguments: every string anywhere in the
arguments of every tool (MCP included) that could name a path or a ``file:`` URL, every path
word of every part of a command (``--opt=VALUE`` and ``key=VALUE`` values, bare names, which
may be symlinks, redirection targets, globs and brace expansions), and every URL. An allow
rule never covers a command that names a path outside the workspace: that asks.

Cost: each rule is compiled once (cached by identity), and a rule list is indexed by tool
name, then by what each rule needs (its program, its path glob), so a decision with 1,000
rules costs about what one with 10 does (about 0.05 ms for a read, 0.15 ms for a command).
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from permissions import catalog, commands, shell, urls
from permissions.model import (
    AppContext,
    Capability,
    Decision,
    Risk,
    Rule,
    Scope,
    Sense,
    ToolRequest,
    Verdict,
)
from permissions.paths import (
    MAX_PATH,
    ResolvedPath,
    realpath,
    resolve,
    resolve_glob,
    workspace_root,
)
from permissions.urls import Url

MAX_ARG_DEPTH = 64
"""Deepest nesting of JSON arguments accepted."""
MAX_ARG_NODES = 100_000
"""Most JSON values in one request's arguments."""
MAX_ARG_CHARS = 16 * 1024 * 1024
"""Most characters of strings in one request's arguments."""
MAX_CHECKED = 10_000
"""Most distinct path-like strings (or command words) resolved for one request."""

_CASELESS_FS = sys.platform in ("darwin", "win32")
_REMOTE = frozenset({"ssh", "scp", "sftp", "rsync", "mosh", "sshpass"})
_GLOB = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gate established about a tool request before matching rules.

    Attributes:
        spec: the catalog entry (None: unknown tool).
        paths: the declared path arguments, resolved.
        command: the analysed command (``run_command``).
        risk: the request's risk.
        problem: why the request is malformed (then it is denied).
        command_paths: every path word of every part of the command (deny rules see them).
        arg_paths: every other string in the arguments that could name a path (deny only).
        urls: every URL in the request (the ``url`` argument, command words, other strings).
        url: the request's own URL (``fetch_url``).
        blocked: why no allow rule may cover this request (it asks instead).
        destructive: the destructive matchers the command hits.
        file_read: for a ``file:`` URL, the path it reads (decided as a read of that path).
    """

    spec: catalog.ToolSpec | None
    paths: tuple[ResolvedPath, ...]
    command: commands.ParsedCommand | None
    risk: Risk
    problem: str
    command_paths: tuple[ResolvedPath, ...] = ()
    arg_paths: tuple[ResolvedPath, ...] = ()
    urls: tuple[Url, ...] = ()
    url: Url | None = None
    blocked: str = ""
    destructive: tuple[str, ...] = ()
    file_read: ResolvedPath | None = None


def facts(req: ToolRequest) -> Facts:
    """Resolve paths, parse the command and URL, walk the arguments and rate the risk."""
    spec = catalog.lookup(req.tool)
    if not isinstance(req.args, Mapping):
        return Facts(spec, (), None, Risk.DANGEROUS, "arguments must be a JSON object")
    skip = () if spec is None else (*spec.path_args, spec.command_arg, spec.url_arg)
    # a known tool's argument names are its own; an MCP tool's could be anything
    strings, problem = _walk_args(
        req.args,
        frozenset(k for k in skip if k),
        spec is None or (spec.capability is Capability.MCP),
    )
    if problem:
        return Facts(spec, (), None, Risk.DANGEROUS, problem)
    root = workspace_root(req.workspace)
    arg_paths, arg_urls, problem = _string_paths(strings, req.workspace, root)
    if problem:
        return Facts(spec, (), None, Risk.DANGEROUS, problem)
    if spec is None:
        return Facts(None, (), None, Risk.DANGEROUS, "", arg_paths=arg_paths, urls=arg_urls)
    paths: list[ResolvedPath] = []
    for name in spec.path_args:
        if name not in req.args:
            if name == "cwd":
                continue  # defaults to the workspace root
            return Facts(spec, (), None, Risk.DANGEROUS, f"missing path argument {name!r}")
        value = req.args[name]
        rp = resolve(value, req.workspace, root=root)
        if rp.problem:
            return Facts(spec, (), None, Risk.DANGEROUS, f"{name}: {rp.problem}")
        paths.append(rp)
        if isinstance(value, str) and value.strip() != value:  # a tool may strip it
            more, _, _ = _string_paths([value.strip()], req.workspace, root)
            arg_paths = (*arg_paths, *more)
    if spec.command_arg is not None:
        cwd = paths[0].real if paths else root
        return _command_facts(
            req,
            spec=spec,
            paths=tuple(paths),
            cwd=cwd,
            root=root,
            arg_paths=arg_paths,
            arg_urls=arg_urls,
        )
    if spec.url_arg is not None:
        return _url_facts(req, spec, tuple(paths), arg_paths, arg_urls)
    return Facts(
        spec, tuple(paths), None, _risk(spec, paths), "", arg_paths=arg_paths, urls=arg_urls
    )


def _command_facts(
    req: ToolRequest,
    *,
    spec: catalog.ToolSpec,
    paths: tuple[ResolvedPath, ...],
    cwd: str,
    root: str,
    arg_paths: tuple[ResolvedPath, ...],
    arg_urls: tuple[Url, ...],
) -> Facts:
    raw = req.args.get(spec.command_arg or "")
    if not isinstance(raw, str) or not raw.strip():
        return Facts(spec, paths, None, Risk.DANGEROUS, "missing command")
    if "\x00" in raw:
        return Facts(spec, paths, None, Risk.DANGEROUS, "NUL byte in command")
    if len(raw) > shell.MAX_SOURCE:
        return Facts(
            spec,
            paths,
            None,
            Risk.DANGEROUS,
            f"command longer than {shell.MAX_SOURCE} characters",
        )
    parsed = commands.parse(raw)
    if not parsed.complete:
        return Facts(
            spec, paths, parsed, Risk.DANGEROUS, "command too complex to check every part of it"
        )
    home = os.path.expanduser("~")
    words: dict[str, None] = {}
    for part in parsed.parts:
        if part[0].startswith(("~", "$")) or "/" in part[0]:  # a bare name is looked up on PATH
            words[part[0]] = None
        for w in commands.path_candidates(part[1:]):
            words[w] = None
    for w in parsed.redirects:
        words[w] = None
    if len(words) > MAX_CHECKED:
        return Facts(spec, paths, parsed, Risk.DANGEROUS, "command has too many words to check")
    resolved: dict[str, ResolvedPath] = {}
    patterns: list[ResolvedPath] = []
    found_urls: list[Url] = list(arg_urls)
    for w in words:
        for rp in _resolve_word(
            w, req.workspace, cwd=cwd, root=root, home=home, found_urls=found_urls
        ):
            if rp.glob:
                patterns.append(rp)
            else:
                resolved.setdefault(w, rp)
    for part in parsed.parts:
        if commands.is_network_client(part[0]) or commands.program_names(part[0])[-1] in _REMOTE:
            found_urls.extend(_host_words(part[1:]))
    for w in words:  # bash's /dev/tcp/HOST/PORT and /dev/udp/HOST/PORT open connections
        if w.startswith(("/dev/tcp/", "/dev/udp/")):
            found_urls.extend(_host_words([w.split("/")[3]]) if w.count("/") >= 3 else [])
    blocked = ""
    if parsed.simple:
        for w in commands.path_candidates(parsed.argv[1:]):
            hit = resolved.get(w)
            if hit is None:
                continue
            if not hit.inside:
                blocked = f"the command names a path outside the workspace ({w[:200]!r})"
                break
            if hit.git_internal:
                blocked = f"the command names .git internals ({w[:200]!r})"
                break
    return Facts(
        spec,
        paths,
        parsed,
        _risk(spec, paths),
        "",
        command_paths=(*resolved.values(), *patterns),
        arg_paths=arg_paths,
        urls=tuple(found_urls),
        blocked=blocked,
        destructive=commands.destructive(
            parsed, cwd, home, {w: rp.real for w, rp in resolved.items()}
        ),
    )


def _resolve_word(
    w: str, workspace: Path, *, cwd: str, root: str, home: str, found_urls: list[Url]
) -> list[ResolvedPath]:
    """A word as a path: literally (an unmatched glob stays literal in bash) and, for a glob,
    as the pattern it is."""
    if commands.is_url(w):
        url = urls.parse(w)
        if url.scheme == "file" and not url.problem:
            return [resolve(url.path, workspace, cwd, root=root)]
        found_urls.append(url)
        return []
    w = commands.expand_home(w, home)
    if not w or len(w) > MAX_PATH:
        return []
    out = [rp for rp in (resolve(w, workspace, cwd, root=root),) if not rp.problem]
    if _GLOB.intersection(w):
        out.append(resolve_glob(w, workspace, cwd, root=root))
    return out


def _host_words(words: Sequence[str]) -> list[Url]:
    """A network client's arguments read as hosts (``curl 169.254.169.254``, ``nc host 80``,
    ``--resolve name:80:169.254.169.254``, ``ssh user@host``), for deny presets only."""
    out = []
    for w in words:
        value = w.split("=", 1)[1] if w.startswith("-") and "=" in w else w
        if not value or value.startswith("-") or commands.is_url(value):
            continue
        host = value.rsplit("@", 1)[-1].split("/", 1)[0]
        for candidate in {host, *host.split(":")}:
            url = urls.parse(f"http://{candidate}/")
            if not url.problem:
                out.append(url)
    return out


def _url_facts(
    req: ToolRequest,
    spec: catalog.ToolSpec,
    paths: tuple[ResolvedPath, ...],
    arg_paths: tuple[ResolvedPath, ...],
    arg_urls: tuple[Url, ...],
) -> Facts:
    url = urls.parse(req.args.get(spec.url_arg or ""))
    if url.problem:
        return Facts(spec, paths, None, Risk.DANGEROUS, f"url: {url.problem}")
    if url.scheme == "file":
        rp = resolve(url.path, req.workspace)
        if rp.problem:
            return Facts(spec, paths, None, Risk.DANGEROUS, f"url: {rp.problem}")
        risk = Risk.HIGH if not rp.inside or rp.git_internal else Risk.LOW
        return Facts(spec, (rp,), None, risk, "", arg_paths=arg_paths, url=url, file_read=rp)
    return Facts(
        spec,
        paths,
        None,
        _risk(spec, paths),
        "",
        arg_paths=arg_paths,
        urls=(url, *arg_urls),
        url=url,
    )


def _walk_args(
    args: Mapping[str, Any], skip: frozenset[str], top_keys: bool
) -> tuple[list[str], str]:
    """Every string in the arguments (keys too, below the top level unless ``top_keys``),
    iteratively, without recursion; or why the arguments are malformed."""
    if any(not isinstance(k, str) for k in args):
        return [], "argument names must be strings"
    strings: list[str] = list(args) if top_keys else []
    stack: list[tuple[object, int]] = [(v, 1) for k, v in args.items() if k not in skip]
    nodes, chars = 0, 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_ARG_NODES:
            return [], f"arguments have more than {MAX_ARG_NODES} values"
        if depth > MAX_ARG_DEPTH:
            return [], f"arguments nested deeper than {MAX_ARG_DEPTH} levels"
        if isinstance(value, str):
            chars += len(value)
            if chars > MAX_ARG_CHARS:
                return [], f"arguments longer than {MAX_ARG_CHARS} characters"
            strings.append(value)
        elif type(value) is dict or isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    return [], "argument names must be strings"
                strings.append(k)
                stack.append((v, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
        elif value is not None and not isinstance(value, int | float):
            return [], f"an argument of type {type(value).__name__} is not JSON"
    return strings, ""


def _string_paths(
    strings: Iterable[str], workspace: Path, root: str
) -> tuple[tuple[ResolvedPath, ...], tuple[Url, ...], str]:
    """Strings that could name a path (or a ``file:`` URL), resolved; URLs worth a deny."""
    out: list[ResolvedPath] = []
    found: list[Url] = []
    seen: set[str] = set()
    home = os.path.expanduser("~")
    for whole in _variants(strings):
        # C APIs stop at a NUL ("~/.ssh/id_rsa\0junk" is the key); a server may expand $HOME
        s = commands.expand_home(whole.split("\x00", 1)[0], home)
        if not s or len(s) > MAX_PATH or "\n" in s or s in seen:
            continue
        seen.add(s)
        if len(seen) > MAX_CHECKED:
            return (), (), f"arguments have more than {MAX_CHECKED} strings to check"
        if commands.is_url(s):
            url = urls.parse(s)
            if url.problem:
                continue
            if url.scheme == "file":
                rp = resolve(url.path, workspace, root=root)
                if not rp.problem:
                    out.append(rp)
            else:
                found.append(url)
            continue
        rp = resolve(s, workspace, root=root)
        if not rp.problem:
            out.append(rp)
        if _GLOB.intersection(s):
            out.append(resolve_glob(s, workspace, root=root))
    return tuple(out), tuple(found), ""


def _variants(strings: Iterable[str]) -> Iterator[str]:
    """Each string, and its stripped form when a server might strip it ("~/.ssh/id_rsa\n")."""
    for s in strings:
        yield s
        stripped = s.strip()
        if stripped != s and stripped:
            yield stripped


def _risk(spec: catalog.ToolSpec, paths: Sequence[ResolvedPath]) -> Risk:
    cap = spec.capability
    outside = any(not p.inside for p in paths)
    git_internal = any(p.git_internal for p in paths)
    if cap is Capability.WRITE and (outside or git_internal):
        return Risk.DANGEROUS
    if cap in (Capability.READ, Capability.SEARCH) and (outside or git_internal):
        return Risk.HIGH
    if cap is Capability.GIT and spec.name in catalog.GIT_READ_ONLY:
        return Risk.LOW
    return catalog.BASE_RISK[cap]


# --- compiled rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PathMatcher:
    """A rule's ``path``, compiled: a regex on resolved (or relative) paths."""

    absolute: bool
    regex: re.Pattern[str]
    literal: tuple[str, ...] | None  # components of an absolute pattern with no glob in it

    def matches(self, p: ResolvedPath) -> bool:
        if p.glob:
            return self.literal is not None and _glob_overlaps(p.real, self.literal)
        if self.absolute:
            return bool(self.regex.match(p.real))
        return p.inside and bool(self.regex.match(p.relative))


def _compile_path(pattern: str, covering: bool) -> _PathMatcher:
    """``covering`` (deny and ask rules): ``dir/**`` and ``dir/*`` also cover ``dir``."""
    absolute = pattern.startswith(("/", "~"))
    full = os.path.expanduser(pattern) if absolute else pattern
    forms = [full]
    if absolute:
        forms.append(full.rstrip("/") + "/*")
    if covering:
        for suffix in ("/**", "/*"):
            if full.endswith(suffix) and len(full) > len(suffix):
                forms.append(full[: -len(suffix)])
    flags = re.IGNORECASE if _CASELESS_FS else 0
    regex = re.compile("|".join(f"(?:{fnmatch.translate(f)})" for f in forms), flags)
    literal = None
    if absolute and not _has_unescaped_glob(full):
        literal = tuple(c for c in _unescape(full).split("/") if c)
    return _PathMatcher(absolute, regex, literal)


def _has_unescaped_glob(pattern: str) -> bool:
    return bool(_GLOB.intersection(re.sub(r"\[[*?\[]\]", "", pattern)))


def _unescape(pattern: str) -> str:
    return re.sub(r"\[([*?\[])\]", r"\1", pattern)


def _glob_overlaps(word_pattern: str, protected: tuple[str, ...]) -> bool:
    """Could a glob word expand to the protected dir or something in it (bash: ``*`` and ``?``
    do not match a leading dot)?"""
    comps = [c for c in word_pattern.split("/") if c]
    if len(comps) < len(protected):
        return False
    for pat, name in zip(comps, protected, strict=False):
        if name.startswith(".") and not pat.startswith("."):
            return False
        if not fnmatch.fnmatchcase(name, pat):
            return False
    return True


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    tool_regex: re.Pattern[str] | None
    path: _PathMatcher | None
    host: urls.HostPattern | None
    bad_host: bool
    workspace: re.Pattern[str] | None

    def tool_matches(self, tool: str) -> bool:
        if self.tool_regex is None:
            return tool == self.rule.tool
        return bool(self.tool_regex.match(tool))


def _compile(rule: Rule) -> _Compiled:
    covering = rule.decision is not Decision.ALLOW
    host: urls.HostPattern | None = None
    bad_host = False
    if rule.host:
        try:
            host = urls.compile_host(rule.host)
        except ValueError:
            bad_host = True
    ws = None
    if rule.workspace:
        ws = re.compile(fnmatch.translate(os.path.expanduser(rule.workspace)))
    return _Compiled(
        rule,
        re.compile(fnmatch.translate(rule.tool)) if _has_glob(rule.tool) else None,
        _compile_path(rule.path, covering) if rule.path else None,
        host,
        bad_host,
        ws,
    )


@dataclass(frozen=True, slots=True)
class _Level:
    """The rules of one decision level for one tool, indexed by a condition each needs.

    A rule with a command can only match a request running its program (``by_program``); a
    rule with a path (and no command) only one that touches a path its glob matches (all of
    them in one regex per kind, ``path_abs`` and ``path_rel``); the rest (``other``) are
    always tried. The order of the rules, which decides within a level, is kept.
    """

    rules: tuple[_Compiled, ...]
    other: tuple[int, ...]
    by_program: dict[str, tuple[int, ...]]
    path_rules: tuple[int, ...]
    path_abs: re.Pattern[str] | None
    path_rel: re.Pattern[str] | None

    def select(self, f: Facts, programs: frozenset[str], covering: bool) -> list[_Compiled]:
        pos = list(self.other)
        for key in programs:
            pos.extend(self.by_program.get(key, ()))
        if self.path_rules and self._path_hit(f, covering):
            pos.extend(self.path_rules)
        pos.sort()
        return [self.rules[i] for i in pos]

    def _path_hit(self, f: Facts, covering: bool) -> bool:
        every = (*f.paths, *f.command_paths, *f.arg_paths) if covering else f.paths[:1]
        for p in every:
            if p.glob:
                return True
            if self.path_abs is not None and self.path_abs.match(p.real):
                return True
            if self.path_rel is not None and p.inside and self.path_rel.match(p.relative):
                return True
        return False


def _level(compiled: list[_Compiled], covering: bool) -> _Level:
    other: list[int] = []
    by_program: dict[str, list[int]] = {}
    path_rules: list[int] = []
    abs_parts: list[str] = []
    rel_parts: list[str] = []
    for i, c in enumerate(compiled):
        rule = c.rule
        if rule.command:
            if covering:
                pattern = commands.compile_pattern(rule.command)
                keys = sorted(pattern.programs) if pattern is not None else []
            else:
                words = commands.rule_words(rule.command)
                keys = [words[0]] if words else []
            for key in keys:  # no key: the rule names no program and matches nothing
                by_program.setdefault(key, []).append(i)
        elif c.path is not None:
            path_rules.append(i)
            (abs_parts if c.path.absolute else rel_parts).append(c.path.regex.pattern)
        else:
            other.append(i)
    flags = re.IGNORECASE if _CASELESS_FS else 0
    return _Level(
        tuple(compiled),
        tuple(other),
        {k: tuple(v) for k, v in by_program.items()},
        tuple(path_rules),
        re.compile("|".join(abs_parts), flags) if abs_parts else None,
        re.compile("|".join(rel_parts), flags) if rel_parts else None,
    )


@dataclass(slots=True)
class _Index:
    rules: tuple[Rule, ...]  # holds the rules alive: the cache key is their ids
    compiled: list[_Compiled]
    home: str
    by_tool: dict[str, dict[Decision, _Level]] = field(default_factory=dict)

    def for_tool(self, tool: str) -> dict[Decision, _Level]:
        hit = self.by_tool.get(tool)
        if hit is None:
            by: dict[Decision, list[_Compiled]] = {d: [] for d in Decision}
            for c in self.compiled:
                if c.tool_matches(tool):
                    by[c.rule.decision].append(c)
            hit = {d: _level(cs, d is not Decision.ALLOW) for d, cs in by.items()}
            if len(self.by_tool) < 4096:
                self.by_tool[tool] = hit
        return hit


_COMPILED: dict[int, tuple[Rule, str, _Compiled]] = {}


def _compiled(rule: Rule, home: str) -> _Compiled:
    """``_compile(rule)``, once per rule object (an index rebuilt for a new rule list, as the
    gate does when remembered answers join, costs a lookup per rule, not a compile)."""
    hit = _COMPILED.get(id(rule))
    if hit is not None and hit[0] is rule and hit[1] == home:
        return hit[2]
    c = _compile(rule)
    with _INDEX_LOCK:
        if len(_COMPILED) > 100_000:
            _COMPILED.clear()
        _COMPILED[id(rule)] = (rule, home, c)  # holds the rule: its id is not reused
    return c


_INDEXES: OrderedDict[tuple[object, ...], _Index] = OrderedDict()
_BY_OBJECT: dict[int, tuple[tuple[Rule, ...], _Index]] = {}
_INDEX_LOCK = threading.Lock()


def _index(rules: Iterable[Rule]) -> _Index:
    """The compiled rules, cached by the identity of the rule objects (and HOME).

    A tuple passed again (the gate keeps one per tool) is found by its own identity; any
    other sequence by the identities of its rules. Each entry holds its rules alive, so an
    id in a key is never reused by another object while the entry exists.
    """
    home = os.environ.get("HOME", "")
    if isinstance(rules, tuple):
        with _INDEX_LOCK:
            entry = _BY_OBJECT.get(id(rules))
        if entry is not None and entry[0] is rules and entry[1].home == home:
            return entry[1]
    ordered = tuple(rules)
    key = (home, *map(id, ordered))
    with _INDEX_LOCK:
        index = _INDEXES.get(key)
        if index is not None:
            _INDEXES.move_to_end(key)
    if index is None:
        index = _Index(ordered, [_compiled(r, home) for r in ordered if r.tool], home)
        with _INDEX_LOCK:
            _INDEXES[key] = index
            while len(_INDEXES) > 64:
                _INDEXES.popitem(last=False)
    if isinstance(rules, tuple):
        with _INDEX_LOCK:
            if len(_BY_OBJECT) > 64:
                _BY_OBJECT.clear()
            _BY_OBJECT[id(rules)] = (rules, index)
    return index


# --- evaluation -------------------------------------------------------------------------------


def evaluate_tool(req: ToolRequest, rules: Iterable[Rule]) -> Verdict:
    """Decide a tool request from the rules (no prompts, no side effects)."""
    f = facts(req)
    if f.problem:
        return Verdict(Decision.DENY, None, f"malformed request: {f.problem}", f.risk)
    index = _index(rules)
    if f.file_read is not None:
        return _file_read(req, index, f)
    return _decide(req, f, index.for_tool(req.tool))


def _decide(
    req: ToolRequest, f: Facts, cands: dict[Decision, _Level], *, allow: bool = True
) -> Verdict:
    workspace = workspace_root(req.workspace)
    programs: frozenset[str] = frozenset()
    if f.command is not None:
        names = [n for part in f.command.parts for n in commands.program_names(part[0])]
        programs = frozenset(names)
    for level in (Decision.DENY, Decision.ASK):
        for c in cands[level].select(f, programs, covering=True):
            if _matches(c, req, f, workspace):
                return Verdict(level, c.rule.id, f"rule {c.rule.id!r}", f.risk)
    if allow and not f.blocked:
        argv0 = frozenset(f.command.argv[:1]) if f.command is not None else frozenset()
        for c in cands[Decision.ALLOW].select(f, argv0, covering=False):
            if _matches(c, req, f, workspace):
                if f.risk is Risk.DANGEROUS and not _explicit(c.rule, f):
                    continue
                return Verdict(Decision.ALLOW, c.rule.id, f"rule {c.rule.id!r}", f.risk)
    return _default(req, f)


def _file_read(req: ToolRequest, index: _Index, f: Facts) -> Verdict:
    """A ``file:`` URL is a read of its path: the fetch tool's deny/ask rules, then the read's."""
    assert f.file_read is not None and f.url is not None
    verdict = _decide(req, f, index.for_tool(req.tool), allow=False)
    if verdict.rule is not None:
        return verdict
    read = ToolRequest("read_file", {"path": f.url.path}, req.workspace, req.app)
    v = evaluate_tool(read, index.rules)
    return Verdict(
        v.decision, v.rule, f"file: URL read of {f.url.path[:200]!r}: {v.reason}", v.risk
    )


def _default(req: ToolRequest, f: Facts) -> Verdict:
    if f.spec is None:
        return Verdict(Decision.ASK, None, f"unknown tool {req.tool!r}: risk unknown", f.risk)
    cap = f.spec.capability
    if cap is Capability.NETWORK:
        if f.url is not None and urls.classify(f.url) in ("loopback", "private"):
            return Verdict(
                Decision.DENY,
                None,
                f"{f.url.host} is a {urls.classify(f.url)} address: only a rule naming it "
                "exactly allows it",
                f.risk,
            )
        return Verdict(
            Decision.DENY, None, "network is off by default; allow a host for this session", f.risk
        )
    if f.risk is Risk.LOW:
        return Verdict(Decision.ALLOW, None, f"default: {cap.value} inside the workspace", f.risk)
    if any(p.git_internal for p in f.paths):
        return Verdict(
            Decision.ASK, None, "touches .git internals (explicit approval only)", f.risk
        )
    if any(not p.inside for p in f.paths):
        return Verdict(Decision.ASK, None, f"{cap.value} outside the workspace", f.risk)
    if f.blocked:
        return Verdict(Decision.ASK, None, f.blocked, f.risk)
    if f.command is not None and not f.command.simple:
        return Verdict(Decision.ASK, None, f"command is not simple: {f.command.problem}", f.risk)
    return Verdict(Decision.ASK, None, f"default: {cap.value} needs approval", f.risk)


def _explicit(rule: Rule, f: Facts) -> bool:
    """May this allow rule cover a dangerous request?"""
    if rule.scope is Scope.ALWAYS or _has_glob(rule.tool):
        return False
    if any(not p.inside or p.git_internal for p in f.paths) and not rule.path.strip("/*~?"):
        return False  # outside the workspace or in .git: the rule must name where
    if f.command is not None:
        return commands.rule_is_explicit(rule.command)
    return True


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _matches(c: _Compiled, req: ToolRequest, f: Facts, workspace: str) -> bool:
    rule = c.rule
    if not _context_matches(rule, req.app, workspace, c.workspace):
        return False
    covering = rule.decision is not Decision.ALLOW
    if rule.matcher and not _preset_matches(rule.matcher, f):
        return False
    if c.path is not None:
        if covering:  # deny/ask if any path the request touches matches
            every = (*f.paths, *f.command_paths, *f.arg_paths)
            if not any(c.path.matches(p) for p in every):
                return False
        elif not (f.paths and all(c.path.matches(p) for p in f.paths)):
            return False
    if rule.host or c.bad_host:
        if not _host_matches(c, f, covering):
            return False
    elif not covering and f.url is not None and urls.classify(f.url) != "public":
        return False  # loopback and private hosts need a rule that names them
    if rule.command:
        if f.command is None:
            return False
        if covering:
            return commands.any_part_matches(rule.command, f.command)
        return f.command.simple and commands.prefix_matches(rule.command, f.command.argv)
    # An allow/ask rule without a command prefix still needs a simple command.
    return covering or f.command is None or f.command.simple


def _host_matches(c: _Compiled, f: Facts, covering: bool) -> bool:
    if c.bad_host:  # a rule whose host cannot be read: deny every URL, allow none
        return covering and bool(f.urls)
    assert c.host is not None
    if covering:
        return any(not u.problem and c.host.matches(u) for u in f.urls)
    if f.url is None or f.url.scheme not in urls.NETWORK_SCHEMES:
        return False
    if urls.classify(f.url) != "public" and not c.host.names_exactly:
        return False
    return c.host.matches(f.url)


def _preset_matches(matcher: str, f: Facts) -> bool:
    kind, _, name = matcher.partition(":")
    if kind == "destructive":
        return name in f.destructive
    if kind == "network":
        if name == "scheme":  # the fetch tool's own URL (a command naming a URL asks)
            u = f.url
            return u is not None and f.file_read is None and u.scheme not in urls.NETWORK_SCHEMES
        return any(not u.problem and urls.classify(u) == name for u in f.urls)
    return True  # an unknown built-in matcher: fail closed (the preset is a deny)


def _context_matches(
    rule: Rule, app: AppContext, workspace: str, ws_regex: re.Pattern[str] | None = None
) -> bool:
    if rule.app and not fnmatch.fnmatchcase(app.app_id.strip().lower(), rule.app.lower()):
        return False
    if rule.title and not fnmatch.fnmatchcase(app.title.strip().lower(), rule.title.lower()):
        return False
    if not rule.workspace:
        return True
    if not workspace:  # unknown workspace: a scoped deny holds, a scoped allow does not
        return rule.decision is Decision.DENY
    if ws_regex is None:
        return fnmatch.fnmatchcase(workspace, os.path.expanduser(rule.workspace))
    return bool(ws_regex.match(workspace))


def evaluate_sense(
    sense: Sense, app: AppContext, rules: Iterable[Rule], workspace: str = ""
) -> Verdict:
    """Decide whether ``sense`` may capture while ``app`` is focused.

    ``workspace`` is the current workspace's resolved path (``""``: unknown); a rule scoped
    to a workspace matches only there, except that a scoped *deny* holds while it is unknown.
    """
    ws = (realpath(workspace) or os.path.abspath(workspace)) if workspace else ""
    matching = [r for r in rules if r.sense is sense and _context_matches(r, app, ws)]
    for level in (Decision.DENY, Decision.ASK, Decision.ALLOW):
        for rule in matching:
            if rule.decision is level:
                return Verdict(level, rule.id, f"rule {rule.id!r}")
    if sense is Sense.CAMERA:
        return Verdict(Decision.DENY, None, "the camera is off by default")
    return Verdict(Decision.ASK, None, f"{sense.value} has not been switched on")
