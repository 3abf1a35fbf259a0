"""The vocabulary of the gate: senses, capabilities, risks, decisions, scopes, requests, rules."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from permissions.errors import SettingsError
from permissions.urls import compile_host


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
        command: for ``run_command``: an argv prefix (``"pytest -q"``); matched token by token
            for allow rules, semantically (any part, flags in any order) for deny and ask.
        path: a glob the request's paths must all match (workspace-relative, or absolute /
            ``~``); a deny rule ``dir/**`` also covers ``dir`` itself.
        host: for network requests: an exact host (``api.example.com``, ``127.0.0.1``,
            ``[::1]:8080``) or ``*.example.com``; a rule without one covers public hosts only.
        app: glob on the focused app id (case-insensitive).
        title: glob on the focused window title (case-insensitive).
        workspace: glob on the workspace's resolved path.
        scope: once, session or always.
        builtin: shipped with Tandem (presets) rather than added by the user.
        matcher: a preset's built-in semantic check (``destructive:rm-recursive-critical``);
            never read from or written to the settings file.
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
    host: str = ""
    matcher: str = ""

    def to_json(self) -> dict[str, Any]:
        """Settings-file shape (defaults left out)."""
        out: dict[str, Any] = {"id": self.id, "decision": self.decision.value}
        for name in _STRING_FIELDS:
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
        """Parse a settings-file rule.

        Raises:
            SettingsError: a key this version does not know (see ``validate_rule_keys``).
            ValueError: a bad value, naming the field.
        """
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise ValueError("rule needs a non-empty string 'id'")
        validate_rule_keys(obj)
        strings: dict[str, str] = {}
        for name in _STRING_FIELDS:
            value = obj.get(name, "")
            if not isinstance(value, str):
                raise ValueError(f"rule {obj['id']!r}: {name!r} must be a string")
            strings[name] = value
        sense = Sense(obj["sense"]) if obj.get("sense") is not None else None
        if not strings["tool"] and sense is None:
            raise ValueError(f"rule {obj['id']!r}: needs 'tool' or 'sense'")
        if strings["host"]:
            try:
                compile_host(strings["host"])
            except ValueError as e:
                raise ValueError(f"rule {obj['id']!r}: {e}") from e
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
            host=strings["host"],
        )


_STRING_FIELDS = ("tool", "command", "path", "host", "app", "title", "workspace")
RULE_KEYS = frozenset({"id", "decision", "sense", "scope", *_STRING_FIELDS})
"""Every key a settings-file rule may have."""


def validate_rule_keys(obj: Mapping[str, Any]) -> None:
    """Reject a settings-file rule with keys this version does not know.

    A silently dropped key changes what a rule means (a ``host`` ignored would make a network
    rule cover every host), so an unknown key is an error, never a default.

    Raises:
        SettingsError: naming the rule and the unknown keys.
    """
    unknown = sorted(str(k)[:40] for k in obj if k not in RULE_KEYS)
    if unknown:
        rid = obj.get("id")
        who = f"rule {rid[:80]!r}" if isinstance(rid, str) and rid else "rule"
        raise SettingsError(
            f"{who}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} (known: {', '.join(sorted(RULE_KEYS))})"
        )
