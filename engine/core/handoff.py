"""The handoff package: what the engine gives the background agent when the policy delegates.

A ``HandoffPackage`` is built by the engine at the moment it takes a HANDOFF decision, from
what it already holds: the request (the user's last words, or the model's task text when it
wrote one), the recent transcript, the focused application, and the workspace. Screen text is
always redacted before it gets here; it is empty until the screen helper supplies it. The
package is plain data: it crosses from the engine's event loop to the agent's task thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_TRANSCRIPT_LINES = 12
"""How many recent conversation lines travel with a request."""


@dataclass(frozen=True, slots=True)
class HandoffPackage:
    """One delegated request and the context the agent needs to act on it."""

    request: str
    """What the user asked for, in their words (or the model's task text)."""
    t: float
    """When the engine handed it off (engine clock seconds)."""
    transcript: tuple[str, ...] = ()
    """Recent conversation lines, oldest first (``user: ...`` / ``assistant: ...``)."""
    screen_text: str = ""
    """Redacted text from the screen (empty until the screen helper supplies it)."""
    focused_app: str = ""
    focused_file: str = ""
    workspace: Path | None = None
    """The workspace the agent works in (None: the agent's own default)."""
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """Further named context (e.g. a redirect note), safe to show the model."""

    def prompt(self) -> str:
        """The package as the user message the agent's model reads first."""
        parts = [f"Request: {self.request.strip()}"]
        if self.transcript:
            parts.append("Recent conversation:\n" + "\n".join(self.transcript))
        if self.focused_app or self.focused_file:
            parts.append(f"Focused: {self.focused_app} {self.focused_file}".rstrip())
        if self.screen_text:
            parts.append("Screen text (redacted):\n" + self.screen_text)
        parts.extend(f"{name}: {value}" for name, value in self.extra)
        return "\n\n".join(parts)
