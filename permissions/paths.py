"""Path confinement: every path argument is resolved before any rule sees it.

Resolution follows symlinks and ``..`` (``os.path.realpath``) for the whole path, including a
file that does not exist yet (its existing parents are resolved). A path is *inside* the
workspace only when its resolved form is the workspace or below it. Anything naming ``.git``
internals is flagged: tools must go through the git capability, never edit the repository's
database by hand.

What resolution cannot promise: a symlink swapped in *after* the decision, or a hard link to a
file outside, is invisible here; only the sandbox that runs the tool can stop those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_PATH = 4096
"""Longest path argument accepted (PATH_MAX on Linux)."""
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A path argument after resolution.

    Attributes:
        given: the argument as written.
        real: the real path as a string (for a glob, the real path of its fixed directory
            joined with the pattern that follows it); ``resolved`` is the same as a ``Path``.
        inside: resolved is the workspace or below it.
        relative: workspace-relative POSIX path (``""`` when outside).
        git_internal: names something in a ``.git`` directory.
        problem: why the argument is malformed (``""`` when it is not).
        glob: ``resolved`` is a pattern (deny checks see what it could expand to).
    """

    given: str
    real: str
    inside: bool
    relative: str
    git_internal: bool
    problem: str = ""
    glob: bool = False

    @property
    def resolved(self) -> Path:
        """The real path (see ``real``)."""
        return Path(self.real)


def realpath(path: str | os.PathLike[str]) -> str | None:
    """``os.path.realpath``, or None when the path cannot be resolved (``/proc/1/root`` as a
    user: the kernel refuses to read the link)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def workspace_root(workspace: Path | str) -> str:
    """The workspace's resolved path (its absolute form if it cannot be resolved)."""
    return realpath(workspace) or os.path.abspath(workspace)


def resolve(
    arg: object, workspace: Path, base: Path | str | None = None, *, root: str | None = None
) -> ResolvedPath:
    """Resolve one path argument against ``base`` (default: the workspace).

    ``root`` is the workspace already resolved (``workspace_root``), to resolve it once per
    request. A path that cannot be resolved counts as outside the workspace (deny rules still
    see its absolute form): it can never be allowed as if it were inside.
    """
    top = root if root is not None else workspace_root(workspace)
    if not isinstance(arg, str) or not arg:
        return ResolvedPath(str(arg)[:80], top, False, "", False, "path must be a non-empty string")
    if "\x00" in arg:
        return ResolvedPath(arg, top, False, "", False, "NUL byte in path")
    if len(arg) > MAX_PATH:
        return ResolvedPath(arg[:80], top, False, "", False, f"path longer than {MAX_PATH}")
    raw = os.path.expanduser(arg) if arg.startswith("~") else arg
    joined = os.path.join(top if base is None else base, raw)  # an absolute `raw` wins
    real = realpath(joined)
    if real is None:
        return ResolvedPath(arg, os.path.abspath(joined), False, "", False)
    return _placed(arg, real, top)


def resolve_glob(
    arg: str, workspace: Path, base: Path | str | None = None, *, root: str | None = None
) -> ResolvedPath:
    """Resolve the fixed directory of a glob word; the pattern part is kept as written."""
    top = root if root is not None else workspace_root(workspace)
    raw = os.path.expanduser(arg) if arg.startswith("~") else arg
    parts = raw.split("/")
    cut = next((i for i, p in enumerate(parts) if GLOB_CHARS.intersection(p)), len(parts))
    head = "/".join(parts[:cut]) or ("/" if raw.startswith("/") else ".")
    fixed = resolve(head, workspace, base, root=top)
    if fixed.problem:
        return fixed
    tail = "/".join(parts[cut:])
    pattern = os.path.join(fixed.real, tail) if tail else fixed.real
    placed = _placed(arg, pattern, top)
    return ResolvedPath(
        arg, placed.real, placed.inside, placed.relative, placed.git_internal, glob=bool(tail)
    )


def _placed(arg: str, real: str, root: str) -> ResolvedPath:
    if real == root:
        return ResolvedPath(arg, real, True, ".", _is_git_internal(()))
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not real.startswith(prefix):
        return ResolvedPath(arg, real, False, "", _is_git_internal(real.split(os.sep)))
    parts = real[len(prefix) :].split(os.sep)
    return ResolvedPath(arg, real, True, "/".join(parts), _is_git_internal(parts))


def _is_git_internal(parts: tuple[str, ...] | list[str]) -> bool:
    return any(p.lower() == ".git" for p in parts)
