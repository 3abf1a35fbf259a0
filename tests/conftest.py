"""Shared fixtures: the embedded model, a real llama_cpp.server on 127.0.0.1, scenarios."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.model.registry import ModelSpec, resolve

REPO = Path(__file__).resolve().parents[1]
EVALDATA = REPO.parent / "shared" / "evaldata"
THREADS = 2


ABANDONED_BY_DESIGN = frozenset(
    {"tandem-audio-close", "tandem-mic-open", "tandem-mic-reap", "tqdm_monitor"}
)
"""Threads nobody joins, on purpose: the three wrap one PortAudio call that can hang on a
frozen sound server (daemons, named, documented in engine/senses/sound.py); ``tqdm_monitor``
is tqdm's process-wide monitor, started by faster-whisper's model loading, ended at exit."""
LEAK_GRACE_S = 5.0


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running (every thread has an owner who
    joins it). Threads of module- and session-scoped fixtures started before it are theirs."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name not in ABANDONED_BY_DESIGN
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads still running after the test: {sorted(t.name for t in leaked)}"


@pytest.fixture(scope="session")
def embedded_spec() -> ModelSpec:
    """The embedded default model (installed by `make`; a missing one is a failure)."""
    return resolve()


@pytest.fixture(scope="module")
def llama_backend(embedded_spec: ModelSpec) -> Iterator[object]:
    from engine.model.llama_backend import LlamaBackend

    backend = LlamaBackend(embedded_spec, n_ctx=1024, n_threads=THREADS)
    yield backend
    backend.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(
    embedded_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A real OpenAI-compatible server (llama-cpp-python's) serving the embedded model."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(embedded_spec.path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                str(THREADS),
                "--verbose",
                "true",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up in 90 s")
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
