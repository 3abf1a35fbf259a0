"""What each tool is: its capability and which arguments are paths, commands or URLs.

The background agent registers its tools against this catalog; a tool that is not in it (and
is not an MCP tool ``mcp__server__tool``) has unknown risk and is *asked* about, never allowed
by default. Every tool named here is wrapped by the gate at registration (agent issue).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from permissions.model import Capability, Risk


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A known tool."""

    name: str
    capability: Capability
    path_args: tuple[str, ...] = ()
    command_arg: str | None = None
    url_arg: str | None = None


CATALOG: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("read_file", Capability.READ, ("path",)),
        ToolSpec("list_dir", Capability.READ, ("path",)),
        ToolSpec("search", Capability.SEARCH, ("path",)),
        ToolSpec("write_file", Capability.WRITE, ("path",)),
        ToolSpec("edit_file", Capability.WRITE, ("path",)),
        ToolSpec("apply_patch", Capability.WRITE, ("path",)),
        ToolSpec("delete_file", Capability.WRITE, ("path",)),
        ToolSpec("move_file", Capability.WRITE, ("source", "destination")),
        ToolSpec("run_command", Capability.RUN_COMMAND, ("cwd",), command_arg="command"),
        ToolSpec("fetch_url", Capability.NETWORK, url_arg="url"),
        ToolSpec("git_status", Capability.GIT),
        ToolSpec("git_diff", Capability.GIT),
        ToolSpec("git_log", Capability.GIT),
        ToolSpec("git_commit", Capability.GIT),
        ToolSpec("git_checkpoint", Capability.GIT),
        ToolSpec("git_restore", Capability.GIT),
    )
}

GIT_READ_ONLY = frozenset({"git_status", "git_diff", "git_log"})
_MCP = re.compile(r"^mcp__([A-Za-z0-9_-]+)__([A-Za-z0-9_.-]+)$")

BASE_RISK = {
    Capability.READ: Risk.LOW,
    Capability.SEARCH: Risk.LOW,
    Capability.WRITE: Risk.MEDIUM,
    Capability.GIT: Risk.MEDIUM,
    Capability.MCP: Risk.HIGH,
    Capability.RUN_COMMAND: Risk.DANGEROUS,
    Capability.NETWORK: Risk.DANGEROUS,
}


def lookup(tool: str) -> ToolSpec | None:
    """The spec of a known tool, an MCP tool's generic spec, or None (unknown tool)."""
    spec = CATALOG.get(tool)
    if spec is not None:
        return spec
    if _MCP.match(tool):
        return ToolSpec(tool, Capability.MCP)
    return None
