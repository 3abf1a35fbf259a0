"""The vocabulary of the gate: senses, capabilities, risks, decisions, scopes, requests, rules."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Sense(enum.Enum):
    """Capture sources; each needs a lease from the gate before it takes a sample."""

    MICROPHONE = "microphone"
    SCREEN = "screen"
    CAMERA = "camera"


class Capability(enum.Enum):
    """What a tool does to the world."""

    READ = "read"
    SEARCH = "search"
    WRITE = "write"
    RUN_COMMAND = "run_command"
    NETWORK = "network"
    GIT = "git"
    MCP = "mcp"


class Risk(enum.IntEnum):
    """How much harm a request can do; DANGEROUS requests are explicit-only."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    DANGEROUS = 4


class Decision(enum.Enum):
    """The gate's answer. Precedence when rules disagree: deny > ask > allow."""

    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


class Scope(enum.Enum):
    """How long a rule or an answer holds."""

    ONCE = "once"
    SESSION = "session"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class AppContext:
    """The focused application: a platform id (WM_CLASS on X11, bundle id, exe name) and title."""

    app_id: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A tool call to authorize: its name, JSON arguments, workspace and the focused app."""

    tool: str
    args: Mapping[str, Any]
    workspace: Path
    app: AppContext = field(default_factory=AppContext)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate decided, the rule that decided it (None: the default), and why."""

    decision: Decision
    rule: str | None
    reason: str
    risk: Risk = Risk.LOW

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` shape of ``tandem permissions explain``."""
        return {"decision": self.decision.value, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Rule:
    """One permission rule.

    Attributes:
        id: stable name shown in verdicts and the audit log.
        decision: allow, ask or deny.
        tool: tool-name glob (``run_command``, ``mcp__github__*``) or ``""`` for a sense rule.
        sense: the sense this rule is about (``None`` for a tool rule).
        command: for ``run_command``: an argv prefix (``"pytest -q"``); matched token by token.
        path: a workspace-relative glob the request's paths must all match.
        app: glob on the focused app id (case-insensitive).
        title: glob on the focused window title (case-insensitive).
        workspace: glob on the workspace's resolved path.
        scope: once, session or always.
        builtin: shipped with Tandem (presets) rather than added by the user.
    """

    id: str
    decision: Decision
    tool: str = ""
    sense: Sense | None = None
    command: str = ""
    path: str = ""
    app: str = ""
    title: str = ""
    workspace: str = ""
    scope: Scope = Scope.ALWAYS
    builtin: bool = False

    def to_json(self) -> dict[str, Any]:
        """Settings-file shape (defaults left out)."""
        out: dict[str, Any] = {"id": self.id, "decision": self.decision.value}
        for name in ("tool", "command", "path", "app", "title", "workspace"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.sense is not None:
            out["sense"] = self.sense.value
        if self.scope is not Scope.ALWAYS:
            out["scope"] = self.scope.value
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Rule:
        """Parse a settings-file rule; raises ``ValueError`` naming the bad field."""
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise ValueError("rule needs a non-empty string 'id'")
        strings: dict[str, str] = {}
        for name in ("tool", "command", "path", "app", "title", "workspace"):
            value = obj.get(name, "")
            if not isinstance(value, str):
                raise ValueError(f"rule {obj['id']!r}: {name!r} must be a string")
            strings[name] = value
        sense = Sense(obj["sense"]) if obj.get("sense") is not None else None
        if not strings["tool"] and sense is None:
            raise ValueError(f"rule {obj['id']!r}: needs 'tool' or 'sense'")
        return Rule(
            id=obj["id"],
            decision=Decision(obj.get("decision")),
            tool=strings["tool"],
            sense=sense,
            command=strings["command"],
            path=strings["path"],
            app=strings["app"],
            title=strings["title"],
            workspace=strings["workspace"],
            scope=Scope(obj.get("scope", "always")),
        )
