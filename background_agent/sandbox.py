"""Commands in a real sandbox: bubblewrap on Linux.

What a sandboxed command gets (``Sandbox.argv``):

- the whole file system read-only (``--ro-bind / /``), a private ``/tmp`` and ``/dev``, its own
  ``/proc``; the user's secret stores (``~/.ssh``, ``~/.gnupg``, cloud credentials, keyrings,
  Tandem's own config and data) hidden under empty tmpfs mounts;
- the workspace writable, and the workspace's ``.git`` read-only again on top (only Tandem's
  own checkpoints, outside the sandbox, write git objects);
- every namespace unshared (``--unshare-all``): no network at all — no interface but a
  loopback of its own — and no view of other processes; it dies with Tandem
  (``--die-with-parent``) and cannot take over the terminal (``--new-session``);
- a scrubbed environment: ``PATH``, ``HOME`` (in the private ``/tmp``), ``LANG``, ``TERM``
  and nothing else (no keys, no tokens, no proxy settings);
- a timeout, and output truncated (``background_agent.processes``).

What it cannot promise: it does not limit CPU or memory beyond the timeout, cannot filter the
network per host (network is simply off; a command that needs it is refused by the gate), and
relies on the kernel allowing unprivileged user namespaces. Where bubblewrap is missing or
cannot create namespaces, ``available`` is False with the reason, and the command tool refuses
every command the gate rates dangerous instead of running it unconfined.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from background_agent import processes
from background_agent.errors import AgentError

log = logging.getLogger(__name__)

SECRET_DIRS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".password-store",
    ".netrc",
    ".config/gcloud",
    ".config/gh",
    ".config/tandem",
    ".local/share/tandem",
    ".local/share/keyrings",
)
"""Home-relative paths hidden from sandboxed commands (when they exist)."""
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether the sandbox works here, and if not, why."""

    available: bool
    reason: str


class Sandbox:
    """Runs commands under bubblewrap, confined to one workspace."""

    def __init__(self, workspace: Path, *, bwrap: str | None = None) -> None:
        self.workspace = Path(os.path.realpath(workspace))
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        self._probe: Probe | None = None
        self._lock = threading.Lock()

    def probe(self) -> Probe:
        """Try bubblewrap once (cached): can it create its namespaces here?"""
        with self._lock:
            if self._probe is None:
                self._probe = self._try()
                if not self._probe.available:
                    log.warning("sandbox unavailable: %s", self._probe.reason)
            return self._probe

    def _try(self) -> Probe:
        if self._bwrap is None:
            return Probe(False, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        argv = [self._bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--unshare-all", "--die-with-parent", "true"]
        try:
            done = processes.run(argv, cwd=Path("/"), env={"PATH": SAFE_PATH}, timeout_s=10)
        except AgentError as e:
            return Probe(False, str(e))
        if done.returncode != 0:
            first = done.output.strip().splitlines()[:1]
            why = first[0][:200] if first else f"status {done.returncode}"
            return Probe(False, f"bubblewrap cannot create namespaces here: {why}")
        return Probe(True, "bubblewrap")

    def argv(self, command: list[str], cwd: Path) -> list[str]:
        """The bubblewrap command line that runs ``command`` in ``cwd`` (inside the workspace)."""
        assert self._bwrap is not None
        ws = str(self.workspace)
        out = [self._bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
        out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        out += ["--dir", "/tmp/home"]
        home = Path.home()
        for rel in SECRET_DIRS:
            hidden = home / rel
            if hidden.is_dir() and not _contains(hidden, self.workspace):
                out += ["--tmpfs", str(hidden)]
            elif hidden.is_file():
                out += ["--ro-bind", "/dev/null", str(hidden)]
        out += ["--bind", ws, ws]
        git = self.workspace / ".git"
        if git.exists():
            out += ["--ro-bind", str(git), str(git)]
        out += ["--chdir", str(cwd), "--clearenv"]
        for name, value in self.environment().items():
            out += ["--setenv", name, value]
        return [*out, "--", *command]

    @staticmethod
    def environment() -> dict[str, str]:
        """The whole environment a sandboxed command sees (nothing inherited)."""
        bindir = str(Path(sys.executable).parent)  # this Python (and its tools) first
        return {
            "PATH": f"{bindir}:{SAFE_PATH}",
            "HOME": "/tmp/home",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def run(
        self,
        command: list[str],
        *,
        cwd: Path,
        timeout_s: float,
        max_output: int = 20_000,
        cancel: threading.Event | None = None,
    ) -> processes.Completed:
        """Run ``command`` confined (the caller checked ``probe().available``)."""
        argv = self.argv(command, cwd)
        return processes.run(
            argv,
            cwd=self.workspace,
            env={"PATH": SAFE_PATH},
            timeout_s=timeout_s,
            max_output=max_output,
            cancel=cancel,
        )


def _contains(outer: Path, inner: Path) -> bool:
    try:
        inner.relative_to(outer)
    except ValueError:
        return False
    return True
