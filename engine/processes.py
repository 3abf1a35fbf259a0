"""Child processes (the only subprocess importer in the project's packages).

Arguments are always a list (never a shell string), the environment is passed explicitly,
output is captured, and every call has a timeout, so a hung or hostile program cannot hang
Tandem. The background agent's command tool will run through here too, and ``Child`` keeps
helpers that are too slow to start per call (espeak-ng) running for the whole session.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

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


class Child:
    """A long-lived helper program that answers JSON lines, one answer per request.

    Some helpers cost too much to start per call (espeak-ng loads its voice data once), so
    they run for the whole session. The helper's first line is its greeting: a JSON object,
    ``{"error": ...}`` when it could not start. Every request has a timeout; a helper that
    runs past it is killed (its state is unknown) and started again on the next request. One
    that died is started again once and the request retried; dying twice in a row is an
    error. Requests are serialised, so one helper can serve several threads.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.argv, self.name, self.env = list(argv), name, dict(env or {})
        self.start_timeout_s = start_timeout_s
        self.greeting: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buf = b""
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running helper's process id (None when it is not running)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> dict[str, Any]:
        """Start the helper (if it is not running) and return its greeting."""
        with self._lock:
            self._ensure()
            return self.greeting

    def request(self, message: Mapping[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """Send one request and return the answer; ``{"error": ...}`` answers raise."""
        line = json.dumps(message).encode() + b"\n"
        with self._lock:
            try:
                return self._ask(line, timeout_s)
            except _DiedError:
                self._stop()  # killed, crashed or out of memory: one fresh start
            try:
                return self._ask(line, timeout_s)
            except _DiedError as e:
                self._stop()
                raise ProcessError(f"{self.name} died twice in a row ({e})") from None

    def close(self) -> None:
        """Stop the helper (closing its stdin lets it finish on its own)."""
        with self._lock:
            self._stop()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=self.env,
            )
        except OSError as e:
            self._stop()
            raise ProcessError(f"{self.name} could not start: {e}") from e
        try:
            greeting = self._read_line(self.start_timeout_s)
        except _DiedError as e:
            self._stop()
            raise ProcessError(f"{self.name} exited while starting ({e})") from None
        if "error" in greeting:
            self._stop()
            raise ProcessError(f"{self.name} could not start: {greeting['error']}")
        self.greeting = greeting

    def _ask(self, line: bytes, timeout_s: float) -> dict[str, Any]:
        self._ensure()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise _DiedError(self._why()) from e
        answer = self._read_line(timeout_s)
        if "error" in answer:
            raise ProcessError(f"{self.name}: {answer['error']}")
        return answer

    def _read_line(self, timeout_s: float) -> dict[str, Any]:
        """The next line as JSON, read straight from the pipe so the timeout holds."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        done, last = [], self._buf  # newlines are looked for in the newest chunk only
        while b"\n" not in last:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._stop(kill=True)
                raise ProcessError(f"{self.name} did not answer within {timeout_s:g} s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise _DiedError(self._why())
            done.append(last)
            last = chunk
        end, _, self._buf = last.partition(b"\n")
        line = b"".join([*done, end])
        try:
            answer = json.loads(line)
        except ValueError as e:
            self._stop(kill=True)
            raise ProcessError(f"{self.name} answered something that is not JSON") from e
        if not isinstance(answer, dict):
            self._stop(kill=True)
            raise ProcessError(f"{self.name} answered something that is not a JSON object")
        return answer

    def _why(self) -> str:
        """How the helper ended: its status and the end of what it wrote to stderr."""
        assert self._proc is not None
        try:
            status = self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            status = None
        err = b""
        if self._stderr is not None:
            self._stderr.seek(0)
            err = self._stderr.read()[-200:]
        tail = err.decode("utf-8", "replace").strip()
        return f"status {status}" + (f": {tail}" if tail else "")

    def _stop(self, *, kill: bool = False) -> None:
        """End the helper: politely (close its stdin, wait 1 s), or at once with ``kill``."""
        proc, self._proc, self._buf = self._proc, None, b""
        if proc is not None:
            if kill:
                proc.kill()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class _DiedError(Exception):
    """The helper's pipe closed (it exited or was killed)."""
