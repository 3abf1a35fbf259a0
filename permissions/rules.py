"""Rule evaluation: pure functions from (request, rules) to a verdict.

Order: deny rules, then ask rules, then allow rules, first match wins within a level; when no
rule matches, a default by risk. Paths are resolved (symlinks, ``..``) before any rule sees
them. Dangerous requests (running commands, network, writes outside the workspace, anything
touching ``.git`` internals, unknown tools) are *explicit-only*: an allow rule covers them only
if its scope is ``once`` or ``session`` and it names the tool exactly (no wildcard) and, for
commands, a concrete program; a rule with scope ``always`` or a blanket rule never does.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from permissions import catalog, commands
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
from permissions.paths import ResolvedPath, resolve


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gate established about a tool request before matching rules."""

    spec: catalog.ToolSpec | None
    paths: tuple[ResolvedPath, ...]
    command: commands.ParsedCommand | None
    risk: Risk
    problem: str
    command_paths: tuple[ResolvedPath, ...] = ()
    """Path-like words of the command (``/x``, ``./x``, ``a/b``): deny rules see them too."""


def facts(req: ToolRequest) -> Facts:
    """Resolve paths, parse the command and rate the risk of ``req``."""
    spec = catalog.lookup(req.tool)
    if not isinstance(req.args, dict):
        return Facts(spec, (), None, Risk.DANGEROUS, "arguments must be a JSON object")
    if spec is None:
        return Facts(None, (), None, Risk.DANGEROUS, "")
    paths: list[ResolvedPath] = []
    for name in spec.path_args:
        if name not in req.args:
            if name == "cwd":
                continue  # defaults to the workspace root
            return Facts(spec, (), None, Risk.DANGEROUS, f"missing path argument {name!r}")
        rp = resolve(req.args[name], req.workspace)
        if rp.problem:
            return Facts(spec, (), None, Risk.DANGEROUS, f"{name}: {rp.problem}")
        paths.append(rp)
    parsed = None
    if spec.command_arg is not None:
        raw = req.args.get(spec.command_arg)
        if not isinstance(raw, str) or not raw.strip():
            return Facts(spec, tuple(paths), None, Risk.DANGEROUS, "missing command")
        parsed = commands.parse(raw)
        words = [w for part in parsed.parts for w in part]
        cpaths = tuple(
            resolve(w, req.workspace) for w in words if "/" in w or w.startswith((".", "~"))
        )
        return Facts(spec, tuple(paths), parsed, _risk(spec, paths), "", cpaths)
    return Facts(spec, tuple(paths), parsed, _risk(spec, paths), "")


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


def evaluate_tool(req: ToolRequest, rules: Iterable[Rule]) -> Verdict:
    """Decide a tool request from the rules (no prompts, no side effects)."""
    f = facts(req)
    if f.problem:
        return Verdict(Decision.DENY, None, f"malformed request: {f.problem}", f.risk)
    matching = [r for r in rules if r.tool and _tool_rule_matches(r, req, f)]
    for level in (Decision.DENY, Decision.ASK):
        for rule in matching:
            if rule.decision is level:
                return Verdict(level, rule.id, f"rule {rule.id!r}", f.risk)
    for rule in matching:
        if rule.decision is Decision.ALLOW:
            if f.risk is Risk.DANGEROUS and not _explicit(rule, f):
                continue
            return Verdict(Decision.ALLOW, rule.id, f"rule {rule.id!r}", f.risk)
    return _default(req, f)


def _default(req: ToolRequest, f: Facts) -> Verdict:
    if f.spec is None:
        return Verdict(Decision.ASK, None, f"unknown tool {req.tool!r}: risk unknown", f.risk)
    cap = f.spec.capability
    if cap is Capability.NETWORK:
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
        words = rule.command.split()
        return bool(words) and commands.basename(words[0]) not in commands.WRAPPERS
    return True


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _tool_rule_matches(rule: Rule, req: ToolRequest, f: Facts) -> bool:
    if not fnmatch.fnmatchcase(req.tool, rule.tool):
        return False
    if not _context_matches(rule, req.app, str(os.path.realpath(req.workspace))):
        return False
    if rule.path:
        if rule.decision is Decision.DENY:  # deny if any path the request touches matches
            if not any(_path_matches(rule.path, p) for p in (*f.paths, *f.command_paths)):
                return False
        elif not (f.paths and all(_path_matches(rule.path, p) for p in f.paths)):
            return False
    if rule.command:
        if f.command is None:
            return False
        if rule.decision is Decision.DENY:
            return commands.any_part_matches(rule.command, f.command)
        return f.command.simple and commands.prefix_matches(rule.command, f.command.argv)
    # An allow/ask rule without a command prefix still needs a simple command.
    return rule.decision is Decision.DENY or f.command is None or f.command.simple


def _path_matches(pattern: str, p: ResolvedPath) -> bool:
    if pattern.startswith(("/", "~")):
        full = os.path.expanduser(pattern)
        return fnmatch.fnmatchcase(str(p.resolved), full) or fnmatch.fnmatchcase(
            str(p.resolved), full.rstrip("/") + "/*"
        )
    return p.inside and fnmatch.fnmatchcase(p.relative, pattern)


def _context_matches(rule: Rule, app: AppContext, workspace: str) -> bool:
    if rule.app and not fnmatch.fnmatch(app.app_id.lower(), rule.app.lower()):
        return False
    if rule.title and not fnmatch.fnmatch(app.title.lower(), rule.title.lower()):
        return False
    return not rule.workspace or fnmatch.fnmatchcase(workspace, os.path.expanduser(rule.workspace))


def evaluate_sense(
    sense: Sense, app: AppContext, rules: Iterable[Rule], workspace: str = ""
) -> Verdict:
    """Decide whether ``sense`` may capture while ``app`` is focused."""
    matching = [r for r in rules if r.sense is sense and _context_matches(r, app, workspace)]
    for level in (Decision.DENY, Decision.ASK, Decision.ALLOW):
        for rule in matching:
            if rule.decision is level:
                return Verdict(level, rule.id, f"rule {rule.id!r}")
    if sense is Sense.CAMERA:
        return Verdict(Decision.DENY, None, "the camera is off by default")
    return Verdict(Decision.ASK, None, f"{sense.value} has not been switched on")
