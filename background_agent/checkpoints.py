"""Git checkpoints: a snapshot of the workspace before every edit, so any change can be undone.

A checkpoint is a commit of the whole working tree (what ``git add -A`` would take, so ignored
files are not covered) written with a private index file and kept under
``refs/tandem/checkpoints/NNNNNN``: the user's branch, ``HEAD`` and index are never touched.
``undo`` restores the newest checkpoint (files changed since are put back, files created since
are removed) and drops it; ``tandem undo`` calls it. A workspace that is not a repository yet
gets ``git init`` first.

Git runs outside the sandbox with a scrubbed environment, no global or system config, no hooks
and no fsmonitor, so nothing written inside the workspace can make it run code.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from background_agent import processes
from background_agent.errors import AgentError

REF_PREFIX = "refs/tandem/checkpoints/"
GIT_TIMEOUT_S = 30.0
_SAFE = (
    "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
    "-c", "safe.directory=*", "-c", "commit.gpgsign=false",
)  # fmt: skip


class GitError(AgentError):
    """A git command failed (its first line of output says why)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One snapshot: its commit, tree, number and label."""

    number: int
    commit: str
    tree: str
    label: str


def _env(index: Path | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tempfile.gettempdir(),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Tandem",
        "GIT_AUTHOR_EMAIL": "tandem@localhost",
        "GIT_COMMITTER_NAME": "Tandem",
        "GIT_COMMITTER_EMAIL": "tandem@localhost",
        "GIT_TERMINAL_PROMPT": "0",
    }
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    return env


def git(
    workspace: Path,
    *args: str,
    index: Path | None = None,
    max_output: int = 200_000,
    stdin: bytes = b"",
) -> str:
    """Run one git command in ``workspace``; its output.

    Raises:
        GitError: git failed (status and first line of its output).
    """
    done = processes.run(
        ["git", *_SAFE, *args],
        cwd=workspace,
        env=_env(index),
        timeout_s=GIT_TIMEOUT_S,
        max_output=max_output,
        stdin=stdin,
    )
    if done.returncode != 0 or done.timed_out:
        first = (done.output.strip().splitlines() or [f"status {done.returncode}"])[0]
        raise GitError(f"git {args[0]} failed: {first[:200]}")
    return done.output


def ensure_repo(workspace: Path) -> None:
    """Make ``workspace`` a git repository if it is not one."""
    if not (workspace / ".git").exists():
        git(workspace, "init", "-q")


def snapshot_tree(workspace: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="tandem-index-") as tmp:
        index = Path(tmp) / "index"
        git(workspace, "add", "-A", index=index)
        return git(workspace, "write-tree", index=index).strip()


def checkpoints(workspace: Path) -> list[Checkpoint]:
    """Every checkpoint, oldest first."""
    if not (workspace / ".git").exists():
        return []
    fmt = "%(refname) %(objectname) %(tree) %(contents:subject)"
    out = git(workspace, "for-each-ref", f"--format={fmt}", REF_PREFIX)
    found = []
    for line in out.splitlines():
        ref, commit, tree, *label = line.split(" ", 3)
        found.append(Checkpoint(int(ref.removeprefix(REF_PREFIX)), commit, tree, " ".join(label)))
    return sorted(found, key=lambda c: c.number)


def checkpoint(workspace: Path, label: str) -> Checkpoint:
    """Snapshot the workspace as it is now (before an edit)."""
    ensure_repo(workspace)
    tree = snapshot_tree(workspace)
    older = checkpoints(workspace)
    number = older[-1].number + 1 if older else 1
    parent = ["-p", older[-1].commit] if older else []
    commit = git(workspace, "commit-tree", tree, *parent, "-m", label[:120] or "checkpoint").strip()
    git(workspace, "update-ref", f"{REF_PREFIX}{number:06d}", commit)
    return Checkpoint(number, commit, tree, label[:120])


def diff_since(workspace: Path, tree: str, max_output: int = 100_000) -> str:
    """The unified diff from a checkpoint's tree to the workspace now."""
    return git(
        workspace, "diff", "--no-color", tree, snapshot_tree(workspace), max_output=max_output
    )


def restore(workspace: Path, cp: Checkpoint) -> int:
    """Put the workspace back to ``cp``; how many files changed."""
    now = snapshot_tree(workspace)
    changes = git(workspace, "diff-tree", "-r", "--no-renames", "--name-status", "-z", cp.tree, now)
    fields = [f for f in changes.split("\0") if f]
    restore_paths: list[str] = []
    count = 0
    for status, path in zip(fields[::2], fields[1::2], strict=True):
        count += 1
        if status == "A":  # created since the checkpoint
            (workspace / path).unlink(missing_ok=True)
        else:
            restore_paths.append(path)
    if restore_paths:
        with tempfile.TemporaryDirectory(prefix="tandem-index-") as tmp:
            index = Path(tmp) / "index"
            git(workspace, "read-tree", cp.tree, index=index)
            git(workspace, "checkout-index", "-f", "--", *restore_paths, index=index)
    return count


def undo(workspace: Path) -> str:
    """Restore the last checkpoint and drop it; a one-line summary.

    Raises:
        GitError: no checkpoint to restore, or git failed.
    """
    workspace = Path(os.path.realpath(workspace))
    cps = checkpoints(workspace)
    if not cps:
        raise GitError(f"nothing to undo in {workspace}: no Tandem checkpoint")
    last = cps[-1]
    count = restore(workspace, last)
    git(workspace, "update-ref", "-d", f"{REF_PREFIX}{last.number:06d}")
    files = "file" if count == 1 else "files"
    return f"restored checkpoint {last.number} ({last.label}): {count} {files} changed back"


def changed_lines(workspace: Path, tree: str) -> dict[str, int]:
    """Lines added plus removed per file, from ``tree`` to the workspace now."""
    out = git(workspace, "diff", "--numstat", tree, snapshot_tree(workspace))
    counts: dict[str, int] = {}
    for line in out.splitlines():
        added, removed, path = [*line.split("\t", 2), "", ""][:3]
        n = (int(added) if added.isdigit() else 0) + (int(removed) if removed.isdigit() else 0)
        counts[path] = n
    return counts
