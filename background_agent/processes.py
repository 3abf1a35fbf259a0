"""The agent's child processes (the background agent's only subprocess importer).

One call, ``run``: argv as a list (never a shell string), exactly the environment given, its
own process group (a timeout or a cancel kills the whole group, grandchildren included),
standard output and error merged into a temporary file and read back truncated, so a chatty
or hostile program costs at most ``max_output`` bytes of memory. Files a child writes are
capped by ``RLIMIT_FSIZE``. Used for sandboxed commands and for git.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from background_agent.errors import AgentError

MAX_FILE_BYTES = 256 << 20
"""No file a child writes may grow past this (RLIMIT_FSIZE)."""


@dataclass(frozen=True, slots=True)
class Completed:
    """How a child ended and what it printed (stdout and stderr merged, maybe truncated)."""

    returncode: int
    output: str
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False


def _limit_files() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    max_output: int = 20_000,
    cancel: threading.Event | None = None,
    stdin: bytes = b"",
) -> Completed:
    """Run ``argv`` to completion, a timeout or a cancel.

    Raises:
        AgentError: the program is not installed or could not start.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as inp:
        inp.write(stdin)
        inp.seek(0)
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=inp,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limit_files,  # noqa: PLW1509 - only setrlimit, async-signal-safe enough
            )
        except FileNotFoundError as e:
            raise AgentError(f"{argv[0]} is not installed") from e
        except OSError as e:
            raise AgentError(f"{argv[0]} could not start: {e.strerror}") from e
        deadline = time.monotonic() + timeout_s
        timed_out = cancelled = False
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif time.monotonic() >= deadline:
                    timed_out = True
                else:
                    continue
                _kill_group(proc)
                break
        out.seek(0)
        data = out.read(max_output + 1)
    truncated = len(data) > max_output
    text = data[:max_output].decode("utf-8", "replace")
    return Completed(proc.returncode, text, timed_out, cancelled, truncated)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
