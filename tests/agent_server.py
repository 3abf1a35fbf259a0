"""A scripted OpenAI-compatible chat server on 127.0.0.1 (real HTTP, streamed SSE).

Each request to ``/v1/chat/completions`` takes the next step of the script: an action dict
(sent as ``json``-mode content), a raw string (content exactly as written, malformed or
not), ``Native(calls)`` (streamed ``tool_calls`` fragments), ``Status(code)``, or ``Hold``
(the reply waits for one ``release()``; used to act on a task mid-step). Requests are kept
for assertions. The server thread is joined by ``close``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Native:
    calls: tuple[tuple[str, dict[str, Any]], ...]


@dataclass(frozen=True)
class Status:
    code: int


@dataclass(frozen=True)
class Hold:
    """The reply to this request waits for ``ScriptedServer.release``, then is ``then``."""

    then: dict[str, Any] | None = None


Step = dict[str, Any] | str | Native | Status | Hold


class ScriptedServer:
    def __init__(self, script: Sequence[Step]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.held = threading.Event()
        self._release = threading.Semaphore(0)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    step = server.script.pop(0) if server.script else {"tool": "finish",
                        "arguments": {"summary": "script ended"}}  # fmt: skip
                if isinstance(step, Status):
                    self.send_response(step.code)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                if isinstance(step, Hold):
                    server.held.set()
                    server._release.acquire(timeout=30)
                    step = step.then or {"tool": "finish", "arguments": {"summary": "released"}}
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in _chunks(step):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="scripted-llm")
        self._thread.start()

    def release(self) -> None:
        """Let the one held reply go."""
        self._release.release()

    def close(self) -> None:
        self._release.release(100)
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


def _chunks(step: Step) -> Iterator[dict[str, Any]]:
    if isinstance(step, Native):
        for k, (name, args) in enumerate(step.calls):
            text = json.dumps(args)
            half = len(text) // 2
            first = {
                "index": k,
                "id": f"c{k}",
                "function": {"name": name, "arguments": text[:half]},
            }
            yield {"choices": [{"delta": {"tool_calls": [first]}}]}
            rest = {"index": k, "function": {"arguments": text[half:]}}
            yield {"choices": [{"delta": {"tool_calls": [rest]}}]}
        yield {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}
        return
    text = step if isinstance(step, str) else json.dumps(step)
    for i in range(0, len(text), 7):
        yield {"choices": [{"delta": {"content": text[i : i + 7]}}]}
    yield {
        "choices": [{"delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": max(1, len(text) // 4)},
    }


@contextmanager
def scripted(script: Sequence[Step]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script)
    try:
        yield server
    finally:
        server.close()


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool": tool, "arguments": arguments}


def finish(summary: str) -> dict[str, Any]:
    return call("finish", summary=summary)


def python_in_sandbox() -> bool:
    """Can this interpreter run inside the sandbox? (Not as nobody on the development machine:
    the venv's python links into /root, which only the real root may traverse.)"""
    from pathlib import Path

    from background_agent.sandbox import Sandbox

    probe = Sandbox(Path("/tmp")).run(
        [sys.executable, "-c", "pass"], cwd=Path("/tmp"), timeout_s=30
    )
    return probe.returncode == 0
