"""The agent's tools, each wrapped by the permission gate when it is registered.

``Registry.register`` is the only way a tool gets in, and ``Registry.call`` the only way one
runs: parse (repair or reject the model's text), check the arguments against the schema,
ask the gate (``Gate.authorize``, which writes the audit log), and only on ALLOW run it. There
is no other path from a model's output to a tool. On top of the gate, file tools stay inside
the workspace whatever a rule allows (paths are resolved, symlinks included, and ``.git`` is
off limits), every edit is preceded by a git checkpoint (``tandem undo``), and commands run
in the bubblewrap sandbox, or not at all when it is unavailable and the gate rates them
dangerous.

Built-in tools: ``list_dir``, ``read_file``, ``search`` (ripgrep when installed, else Python
``re``), ``write_file``, ``edit_file``, ``apply_patch`` (``git apply``), ``run_command``,
``git_status``, ``git_diff``, ``git_log``, ``git_checkpoint``. MCP tools join through
``background_agent.mcp_tools``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from background_agent import checkpoints, processes
from background_agent.client import RawCall
from background_agent.errors import AgentError
from background_agent.repair import check_arguments, loads_lenient
from background_agent.sandbox import Sandbox
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Risk, ToolRequest

log = logging.getLogger(__name__)

MAX_READ = 40_000
MAX_OUTPUT = 12_000
COMMAND_TIMEOUT_S = 120.0
MAX_COMMAND_TIMEOUT_S = 600.0
EDIT_TOOLS = frozenset({"write_file", "edit_file", "apply_patch", "delete_file", "move_file"})


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool may use: the workspace, the sandbox, the task's cancel flag."""

    workspace: Path
    sandbox: Sandbox
    cancel: threading.Event


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool definition: what the model sees (name, description, JSON schema) and its body."""

    name: str
    description: str
    parameters: dict[str, Any]
    body: Callable[[dict[str, Any], ToolContext], str]

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``function`` object of this tool."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What came of one call: ran (``ok``) or not, its output or why not."""

    name: str
    ok: bool
    output: str
    decision: str
    """``allow``, ``deny``, or ``rejected`` (malformed: the gate never saw it)."""
    edited: bool = False
    exit_code: int | None = None


@dataclass(slots=True)
class _Guarded:
    tool: Tool
    calls: int = 0


@dataclass(slots=True)
class Registry:
    """The tools of one workspace, every one behind the gate."""

    gate: Gate
    workspace: Path
    sandbox: Sandbox | None = None
    app: AppContext = field(default_factory=AppContext)
    on_permission: Callable[[str], None] | None = None
    """Told (one short line) when a call waits for the user's permission."""
    _tools: dict[str, _Guarded] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _asking: list[ToolRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workspace = Path(os.path.realpath(self.workspace))
        if self.sandbox is None:
            self.sandbox = Sandbox(self.workspace)

    def register(self, tool: Tool) -> None:
        """Add a tool; from now on it runs only through ``call`` (gate first)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", tool.name):
            raise AgentError(f"bad tool name {tool.name[:60]!r}")
        with self._lock:
            if tool.name in self._tools:
                raise AgentError(f"tool {tool.name} is registered already")
            self._tools[tool.name] = _Guarded(tool)

    def schemas(self) -> list[dict[str, Any]]:
        """What the model is told about every tool."""
        with self._lock:
            return [g.tool.schema() for g in self._tools.values()]

    def names(self) -> list[str]:
        """The registered tool names."""
        with self._lock:
            return list(self._tools)

    def cancel_prompts(self, reason: str) -> None:
        """Close the permission prompts this registry's calls are waiting on."""
        broker = self.gate.broker
        if broker is None:
            return
        with self._lock:
            mine = list(self._asking)
        for prompt in broker.pending():
            if any(prompt.request is req for req in mine):
                broker.cancel(prompt.id, reason)

    def call(self, raw: RawCall, cancel: threading.Event) -> ToolResult:
        """Repair or reject the call, ask the gate, run it on ALLOW."""
        with self._lock:
            guarded = self._tools.get(raw.name)
        if not raw.name:
            why = "error: malformed call, not run: the reply was not a JSON action with a tool"
            return ToolResult(raw.name, False, why, "rejected")
        if guarded is None:
            known = ", ".join(self.names())
            return ToolResult(
                raw.name, False, f"error: no tool {raw.name[:60]!r} ({known})", "rejected"
            )
        args = loads_lenient(raw.arguments) if raw.arguments.strip() else {}
        problem = check_arguments(args, guarded.tool.parameters)
        if problem is not None:
            log.info("rejected a malformed %s call: %s", raw.name, problem)
            return ToolResult(
                raw.name, False, f"error: malformed call, not run: {problem}", "rejected"
            )
        assert isinstance(args, dict)
        req = ToolRequest(raw.name, args, self.workspace, self.app)
        if self.gate.explain_tool(req).decision is Decision.ASK and self.on_permission:
            self.on_permission(f"{raw.name} needs your permission")
        with self._lock:
            self._asking.append(req)
        try:
            verdict = self.gate.authorize(req)
        finally:
            with self._lock:
                self._asking.remove(req)
        if verdict.decision is not Decision.ALLOW:
            return ToolResult(
                raw.name, False, f"denied by the permission gate: {verdict.reason}", "deny"
            )
        if cancel.is_set():
            return ToolResult(raw.name, False, "cancelled", "allow")
        assert self.sandbox is not None
        ctx = ToolContext(self.workspace, self.sandbox, cancel)
        sandboxed = self.sandbox.probe().available
        if raw.name == "run_command" and not sandboxed and verdict.risk >= Risk.DANGEROUS:
            why = self.sandbox.probe().reason
            return ToolResult(raw.name, False, f"refused: no sandbox here ({why})", "allow")
        guarded.calls += 1
        try:
            if raw.name in EDIT_TOOLS:
                checkpoints.checkpoint(self.workspace, f"before {raw.name} {args.get('path', '')}")
            output = guarded.tool.body(args, ctx)
        except (AgentError, OSError, UnicodeError, ValueError) as e:
            return ToolResult(raw.name, False, f"error: {e}", "allow")
        code = _exit_code(output) if raw.name == "run_command" else None
        return ToolResult(raw.name, True, output, "allow", raw.name in EDIT_TOOLS, code)


def _exit_code(output: str) -> int | None:
    m = re.match(r"exit status (-?\d+)", output)
    return int(m.group(1)) if m else None


# --- confinement -----------------------------------------------------------------------------


def inside(ctx: ToolContext, path: str, *, write: bool = False) -> Path:
    """``path`` resolved (symlinks too) and checked to lie inside the workspace, not in .git.

    Raises:
        AgentError: it does not.
    """
    if "\0" in path:
        raise AgentError("path contains a NUL byte")
    target = Path(os.path.realpath(ctx.workspace / path))
    try:
        rel = target.relative_to(ctx.workspace)
    except ValueError:
        raise AgentError(f"{path[:200]!r} is outside the workspace") from None
    if rel.parts[:1] == (".git",):
        raise AgentError(f"{path[:200]!r} is inside .git (only checkpoints write there)")
    if write and target == ctx.workspace:
        raise AgentError("cannot write the workspace directory itself")
    return target


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_STR = {"type": "string"}
_INT = {"type": "integer"}


# --- the built-in tools ----------------------------------------------------------------------


def _list_dir(args: dict[str, Any], ctx: ToolContext) -> str:
    root = inside(ctx, str(args.get("path", ".")))
    if not root.is_dir():
        raise AgentError(f"{args.get('path')!r} is not a directory")
    names = sorted(
        (p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name != ".git"),
        key=str.lower,
    )
    return "\n".join(names[:500]) or "(empty)"


def _read_file(args: dict[str, Any], ctx: ToolContext) -> str:
    path = inside(ctx, str(args["path"]))
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text) > MAX_READ:
        return text[:MAX_READ] + f"\n[truncated: {len(text)} characters in all]"
    return text


def _search(args: dict[str, Any], ctx: ToolContext) -> str:
    pattern, where = str(args["pattern"]), str(args.get("path", "."))
    root = inside(ctx, where)
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise AgentError(f"bad regular expression: {e}") from e
    rg = shutil.which("rg")
    if rg is not None:
        argv = [rg, "--no-config", "-n", "--no-heading", "--color=never", "-g", "!.git"]
        argv += ["-e", pattern, "--", str(root.relative_to(ctx.workspace) or ".")]
        done = processes.run(
            argv, cwd=ctx.workspace, env={"PATH": "/usr/bin:/bin"}, timeout_s=30,
            max_output=MAX_OUTPUT, cancel=ctx.cancel,
        )  # fmt: skip
        if done.returncode in (0, 1):
            return done.output or "(no matches)"
    hits: list[str] = []
    files = [root] if root.is_file() else sorted(root.rglob("*"))
    for f in files:
        if ".git" in f.relative_to(ctx.workspace).parts or not f.is_file():
            continue
        if not Path(os.path.realpath(f)).is_relative_to(ctx.workspace):
            continue  # a symlink out of the workspace: not followed
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if compiled.search(line):
                hits.append(f"{f.relative_to(ctx.workspace)}:{n}:{line[:300]}")
                if len(hits) >= 200:
                    return "\n".join(hits)
    return "\n".join(hits) or "(no matches)"


def _write_file(args: dict[str, Any], ctx: ToolContext) -> str:
    path = inside(ctx, str(args["path"]), write=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = str(args["content"])
    path.write_text(content, encoding="utf-8")
    return f"wrote {path.relative_to(ctx.workspace)} ({len(content.splitlines())} lines)"


def _edit_file(args: dict[str, Any], ctx: ToolContext) -> str:
    path = inside(ctx, str(args["path"]), write=True)
    text = path.read_text(encoding="utf-8")
    old, new = str(args["old"]), str(args["new"])
    count = text.count(old) if old else 0
    if count != 1:
        raise AgentError(f"'old' must occur exactly once in {args['path']} (found {count})")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return f"edited {path.relative_to(ctx.workspace)}"


_PATCH_FILE = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(\S+)", re.MULTILINE)


def _apply_patch(args: dict[str, Any], ctx: ToolContext) -> str:
    target = inside(ctx, str(args["path"]), write=True)
    rel = str(target.relative_to(ctx.workspace))
    patch = str(args["patch"])
    named = {p for p in _PATCH_FILE.findall(patch) if p != "/dev/null"}
    if named != {rel}:
        raise AgentError(f"the patch must change exactly {rel} (it names {sorted(named)[:5]})")
    if not patch.endswith("\n"):
        patch += "\n"
    try:
        checkpoints.git(ctx.workspace, "apply", "--whitespace=nowarn", "-", stdin=patch.encode())
    except checkpoints.GitError as e:
        raise AgentError(f"patch did not apply: {e}") from None
    return f"patched {rel}"


def _run_command(args: dict[str, Any], ctx: ToolContext) -> str:
    cwd = inside(ctx, str(args.get("cwd", ".")))
    timeout = min(float(args.get("timeout_s", COMMAND_TIMEOUT_S)), MAX_COMMAND_TIMEOUT_S)
    done = ctx.sandbox.run(
        ["bash", "-c", str(args["command"])],
        cwd=cwd, timeout_s=timeout, max_output=MAX_OUTPUT, cancel=ctx.cancel,
    )  # fmt: skip
    head = f"exit status {done.returncode}"
    if done.timed_out:
        head += f" (killed after {timeout:.0f} s)"
    if done.cancelled:
        head += " (cancelled)"
    tail = "\n[output truncated]" if done.truncated else ""
    return f"{head}\n{done.output}{tail}"


def _git_status(args: dict[str, Any], ctx: ToolContext) -> str:
    checkpoints.ensure_repo(ctx.workspace)
    return checkpoints.git(ctx.workspace, "status", "--short") or "(clean)"


def _git_diff(args: dict[str, Any], ctx: ToolContext) -> str:
    checkpoints.ensure_repo(ctx.workspace)
    out = checkpoints.git(ctx.workspace, "diff", "--no-color", max_output=MAX_OUTPUT)
    return out or "(no changes)"


def _git_log(args: dict[str, Any], ctx: ToolContext) -> str:
    checkpoints.ensure_repo(ctx.workspace)
    n = max(1, min(int(args.get("limit", 10)), 50))
    try:
        return checkpoints.git(ctx.workspace, "log", "--oneline", f"-n{n}") or "(no commits)"
    except checkpoints.GitError:
        return "(no commits)"


def _git_checkpoint(args: dict[str, Any], ctx: ToolContext) -> str:
    cp = checkpoints.checkpoint(ctx.workspace, str(args.get("label", "checkpoint")))
    return f"checkpoint {cp.number} saved"


BUILTIN: tuple[Tool, ...] = (
    Tool("list_dir", "List a directory of the workspace.",
         _obj({"path": _STR}, ["path"]), _list_dir),
    Tool("read_file", "Read a text file of the workspace.",
         _obj({"path": _STR}, ["path"]), _read_file),
    Tool("search", "Search files for a regular expression; lines as path:line:text.",
         _obj({"pattern": _STR, "path": _STR}, ["pattern"]), _search),
    Tool("write_file", "Create or replace a whole file with new content.",
         _obj({"path": _STR, "content": _STR}, ["path", "content"]), _write_file),
    Tool("edit_file", "Replace one exact occurrence of 'old' with 'new' in a file.",
         _obj({"path": _STR, "old": _STR, "new": _STR}, ["path", "old", "new"]), _edit_file),
    Tool("apply_patch", "Apply a unified diff that changes the one file 'path'.",
         _obj({"path": _STR, "patch": _STR}, ["path", "patch"]), _apply_patch),
    Tool("run_command", "Run a shell command in the workspace (sandboxed, no network).",
         _obj({"command": _STR, "cwd": _STR, "timeout_s": _INT}, ["command"]), _run_command),
    Tool("git_status", "Show changed files.", _obj({}, []), _git_status),
    Tool("git_diff", "Show the uncommitted diff.", _obj({}, []), _git_diff),
    Tool("git_log", "Show recent commits.", _obj({"limit": _INT}, []), _git_log),
    Tool("git_checkpoint", "Save a checkpoint of the workspace.",
         _obj({"label": _STR}, []), _git_checkpoint),
)  # fmt: skip


def builtin_registry(
    gate: Gate,
    workspace: Path,
    *,
    sandbox: Sandbox | None = None,
    app: AppContext | None = None,
    on_permission: Callable[[str], None] | None = None,
) -> Registry:
    """A registry holding every built-in tool."""
    reg = Registry(gate, workspace, sandbox, app or AppContext(), on_permission)
    for tool in BUILTIN:
        reg.register(tool)
    return reg


def describe(result: ToolResult) -> str:
    """A short, content-free line about a call (for progress events and logs)."""
    return f"{result.name}: {result.decision}{'' if result.ok else ' (not run)'}"


def dumps(value: Mapping[str, Any]) -> str:
    """Compact JSON (tool arguments in the conversation)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
