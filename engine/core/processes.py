"""Child processes (the only subprocess importer in the project's packages).

Arguments are always a list (never a shell string), the environment is passed explicitly,
output is captured, and every call has a timeout, so a hung or hostile program cannot hang
Tandem. The background agent's command tool will run through here too, and ``Child`` keeps
helpers that are too slow to start per call (espeak-ng) running for the whole session.
``spawn`` starts a long-running program with pipes (the live evaluation's sound server,
recorder and the ``tandem`` it measures); its handle always ends the child on ``stop``.
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
from pathlib import Path
from typing import IO, Any, Literal

from engine.errors import EngineError


class ProcessError(EngineError):
    """A child process could not start, failed, or ran past its timeout."""


def run(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    timeout_s: float = 10.0,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run ``argv`` to completion and return its standard output (``env``: the whole
    environment of the child; None inherits this process's)."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError as e:
        raise ProcessError(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise ProcessError(f"{argv[0]} ran past {timeout_s:.0f} s") from e
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[:200]
        raise ProcessError(f"{argv[0]} failed with status {done.returncode}: {err}")
    return done.stdout


class Spawned:
    """A running child started by ``spawn``: write to its stdin, read its stdout, stop it."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str) -> None:
        self._proc, self.name = proc, name
        self._reading = False  # once read from, the reader closes stdout at its end

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self._proc.poll()

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for it to exit; its status, or None if it still runs."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def read(self, n: int = 1 << 16) -> bytes:
        """Up to ``n`` bytes of its stdout as soon as some arrive; b"" once it closed
        (blocking: call it from one reader thread, until b""). Needs ``stdout="pipe"``.

        The reader owns the pipe from its first read: it closes it at the end (``stop``
        does not, so the descriptor cannot be closed, and reused, under a blocked read).
        """
        out = self._proc.stdout
        if out is None:
            raise ProcessError(f"{self.name}: its stdout is not a pipe")
        self._reading = True
        try:
            chunk = os.read(out.fileno(), n)
        except (OSError, ValueError):  # closed by stop() before the first read
            chunk = b""
        if not chunk:
            with contextlib.suppress(OSError):
                out.close()
        return chunk

    def write(self, data: bytes) -> bool:
        """Write to its stdin and flush; False when the child no longer reads it."""
        pipe = self._proc.stdin
        if pipe is None:
            raise ProcessError(f"{self.name}: its stdin is not a pipe")
        try:
            pipe.write(data)
            pipe.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        return True

    def close_stdin(self) -> None:
        """Close its stdin (end of input)."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def terminate(self) -> None:
        """Ask it to end (SIGTERM) without waiting; ``stop`` still has to be called."""
        if self._proc.poll() is None:
            self._proc.terminate()

    def stop(self, timeout_s: float = 2.0) -> int:
        """End it: SIGTERM, then SIGKILL after ``timeout_s``; returns its exit status.
        Its pipes are closed, except a stdout being read (its reader sees the end)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.close_stdin()
        if self._proc.stdout is not None and not self._reading:
            with contextlib.suppress(OSError):
                self._proc.stdout.close()
        return self._proc.returncode


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    name: str | None = None,
    stdin: bool = False,
    stdout: Path | Literal["pipe"] | None = None,
    stderr: Path | None = None,
) -> Spawned:
    """Start ``argv`` running in the background with exactly the environment ``env``.

    ``stdin``: a pipe to write to (else /dev/null). ``stdout``: ``"pipe"`` to read from, a
    file to write to, or None (/dev/null). ``stderr``: a file, or None (/dev/null). The
    caller owns the handle and must ``stop`` it.

    Raises:
        ProcessError: the program is not installed or could not start.
    """
    label = name or Path(argv[0]).name
    out_file = err_file = None
    try:
        if isinstance(stdout, Path):
            out_file = stdout.open("wb")
        if stderr is not None:
            err_file = stderr.open("wb")
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=(
                subprocess.PIPE
                if stdout == "pipe"
                else (out_file if out_file is not None else subprocess.DEVNULL)
            ),
            stderr=err_file if err_file is not None else subprocess.DEVNULL,
            env=dict(env),
        )
    except FileNotFoundError as e:
        raise ProcessError(f"{argv[0]} is not installed") from e
    except OSError as e:
        raise ProcessError(f"{label} could not start: {e}") from e
    finally:  # the child holds its own copies of the files
        for f in (out_file, err_file):
            if f is not None:
                f.close()
    return Spawned(proc, label)


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
