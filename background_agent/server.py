"""The embedded agent model behind a ``llama_cpp.server`` on 127.0.0.1 that Tandem starts.

The agent never shares the realtime session's ``Llama`` object: it talks HTTP to its own
server process (``python -m llama_cpp.server``, the ``server`` extra), started on a free
loopback port with an explicit thread count and stopped with the agent. The model is
Qwen2.5-Coder-1.5B-Instruct when installed (``make models-large``), else the 0.5B.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from background_agent.errors import ModelServerError
from engine.core.processes import ProcessError, Spawned, spawn
from engine.errors import ModelFileError
from engine.model.registry import ModelSpec, resolve

log = logging.getLogger(__name__)

AGENT_MODELS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
"""The embedded models the agent uses, best first."""
START_TIMEOUT_S = 180.0


def agent_model(path: str | None = None) -> ModelSpec:
    """The agent's model: ``path`` if given, else the first installed of ``AGENT_MODELS``.

    Raises:
        ModelServerError: none is installed (the message says what to install).
    """
    if path is not None:
        try:
            return resolve(path)
        except ModelFileError as e:
            raise ModelServerError(str(e)) from e
    problems = []
    for name in AGENT_MODELS:
        try:
            return resolve(name)
        except ModelFileError as e:
            problems.append(f"{name}: {' '.join(str(e).split())}")
    raise ModelServerError("no agent model installed: " + "; ".join(problems))


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One ``llama_cpp.server`` child serving one GGUF on 127.0.0.1."""

    def __init__(self, model: Path, *, n_threads: int, n_ctx: int = 8192) -> None:
        self.model, self.n_threads, self.n_ctx = model, n_threads, n_ctx
        self.port = 0
        self._child: Spawned | None = None
        self._log = Path(tempfile.gettempdir()) / f"tandem-agent-server-{os.getpid()}.log"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it answers; its base URL.

        Raises:
            ModelServerError: it could not start or did not come up in time.
        """
        self.port = free_port()
        argv = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_threads", str(self.n_threads), "--n_ctx", str(self.n_ctx),
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home())}
        try:
            self._child = spawn(argv, env=env, name="llama_cpp.server", stderr=self._log)
        except ProcessError as e:
            raise ModelServerError(f"could not start llama_cpp.server: {e}") from e
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self._child.poll() is not None:
                    tail = self._log.read_text(errors="replace")[-300:].strip()
                    self.stop()
                    raise ModelServerError(f"llama_cpp.server exited: {tail}")
                try:
                    if http.get(f"{self.url}/models").status_code == 200:
                        log.info("agent model server up on port %d", self.port)
                        return self.url
                except httpx.TransportError:
                    pass
                self._child.wait(0.25)
        self.stop()
        raise ModelServerError(f"llama_cpp.server did not come up in {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the server (a no-op when it is not running)."""
        if self._child is not None:
            self._child.stop(timeout_s=5.0)
            self._child = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
