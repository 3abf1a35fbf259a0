"""Path confinement: every path argument is resolved before any rule sees it.

Resolution follows symlinks and ``..`` (``os.path.realpath``) for the whole path, including a
file that does not exist yet (its existing parents are resolved). A path is *inside* the
workspace only when its resolved form is the workspace or below it. Anything naming ``.git``
internals is flagged: tools must go through the git capability, never edit the repository's
database by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A path argument after resolution."""

    given: str
    resolved: Path
    inside: bool
    relative: str  # workspace-relative POSIX path ("" when outside)
    git_internal: bool
    problem: str = ""


def resolve(arg: object, workspace: Path) -> ResolvedPath:
    """Resolve one path argument against the (resolved) workspace."""
    root = Path(os.path.realpath(workspace))
    if not isinstance(arg, str) or not arg:
        return ResolvedPath(str(arg), root, False, "", False, "path must be a non-empty string")
    if "\x00" in arg:
        return ResolvedPath(arg, root, False, "", False, "NUL byte in path")
    raw = os.path.expanduser(arg) if arg.startswith("~") else arg
    resolved = Path(os.path.realpath(root / raw))  # an absolute `raw` replaces the root
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        return ResolvedPath(arg, resolved, False, "", _is_git_internal(resolved.parts))
    rel_posix = PurePosixPath(*rel.parts).as_posix() if rel.parts else "."
    return ResolvedPath(arg, resolved, True, rel_posix, _is_git_internal(rel.parts))


def _is_git_internal(parts: tuple[str, ...]) -> bool:
    return any(p.lower() == ".git" for p in parts)
