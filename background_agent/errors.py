"""The background agent's errors: one root, each a clear one-line message."""

from __future__ import annotations


class AgentError(Exception):
    """Something in the background agent failed (a tool, the model server, a task)."""


class ModelServerError(AgentError):
    """The model server is unreachable, timed out, or answered with an error."""


class ToolCallError(AgentError):
    """A tool call the model made is malformed and could not be repaired."""


class SandboxError(AgentError):
    """A command cannot be run safely here (no working sandbox)."""


class TaskCancelledError(AgentError):
    """The task was cancelled while this step ran."""
