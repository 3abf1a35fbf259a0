"""Child processes (the only subprocess importer in the project's packages).

Arguments are always a list (never a shell string), the environment is passed explicitly,
output is captured, and every call has a timeout, so a hung or hostile program cannot hang
Tandem. The background agent's command tool will run through here too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from engine.errors import EngineError


class ProcessError(EngineError):
    """A child process could not start, failed, or ran past its timeout."""


def run(argv: Sequence[str], *, stdin: bytes = b"", timeout_s: float = 10.0) -> bytes:
    """Run ``argv`` to completion and return its standard output."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as e:
        raise ProcessError(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise ProcessError(f"{argv[0]} ran past {timeout_s:.0f} s") from e
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[:200]
        raise ProcessError(f"{argv[0]} failed with status {done.returncode}: {err}")
    return done.stdout
