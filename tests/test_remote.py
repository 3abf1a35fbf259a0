"""The OpenAI-compatible backend: a real llama_cpp.server, and servers that misbehave."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.errors import ModelServerError
from engine.model.remote_backend import RemoteBackend
from engine.model.session import LABELS, ModelSession, load_prompt
from tests.conftest import free_port

Reply = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def fake_server() -> Iterator[Callable[[Reply], str]]:
    """A real HTTP server on 127.0.0.1 whose answer each test scripts."""
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Reply) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                self.server.last_body = json.loads(self.rfile.read(length))  # type: ignore[attr-defined]
                reply(self)

            def log_message(self, *args: object) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "application/json"
) -> None:
    handler.send_response(status)
    handler.send_header("content-type", ctype)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_dead_server_is_a_clear_error() -> None:
    backend = RemoteBackend(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelServerError, match="unreachable"):
        backend.reset("prefix")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"error": "out of memory"}', "HTTP 500"),
        (401, b'{"error": "bad key"}', "HTTP 401"),
        (200, b"<html>proxy login</html>", "not JSON"),
        (200, b"[1, 2, 3]", "not a JSON object"),
        (200, b'{"choices": []}', "malformed completion"),
        (200, b'{"choices": ["text"]}', "malformed completion"),
    ],
)
def test_misbehaving_servers_give_clear_errors(
    fake_server: Callable[[Reply], str], status: int, body: bytes, message: str
) -> None:
    url = fake_server(lambda h: send(h, status, body))
    with pytest.raises(ModelServerError, match=message):
        RemoteBackend(url).reset("prefix")


def test_a_malformed_stream_chunk_is_an_error(fake_server: Callable[[Reply], str]) -> None:
    def reply(h: BaseHTTPRequestHandler) -> None:
        if h.server.last_body.get("stream"):  # type: ignore[attr-defined]
            send(h, 200, b"data: {not json}\n\n", "text/event-stream")
        else:
            send(h, 200, b'{"choices": [{"text": " speak"}]}')

    backend = RemoteBackend(fake_server(reply))
    backend.reset("prefix")
    backend.spec_begin(' speak "')
    with pytest.raises(ModelServerError, match="malformed stream chunk"):
        backend.spec_step(8, ['"'])


def test_a_server_without_logprobs_falls_back_to_the_greedy_token(
    fake_server: Callable[[Reply], str],
) -> None:
    url = fake_server(lambda h: send(h, 200, b'{"choices": [{"text": " speak"}]}'))
    backend = RemoteBackend(url)
    backend.reset("prefix")
    backend.append("0.2 =>")
    scores = backend.label_logits(list(LABELS.values()))
    assert scores[list(LABELS.values()).index(" speak")] == 0.0
    assert sum(s == float("-inf") for s in scores) == len(scores) - 1


def test_the_key_is_sent_and_prompt_caching_is_asked_for(
    fake_server: Callable[[Reply], str],
) -> None:
    seen: dict[str, object] = {}

    def reply(h: BaseHTTPRequestHandler) -> None:
        seen["auth"] = h.headers.get("authorization")
        seen["body"] = h.server.last_body  # type: ignore[attr-defined]
        send(h, 200, b'{"choices": [{"text": " silent"}], "usage": {"prompt_tokens": 7}}')

    backend = RemoteBackend(fake_server(reply), api_key="sk-test", model="m")
    backend.reset("prefix")
    body = seen["body"]
    assert seen["auth"] == "Bearer sk-test"
    assert isinstance(body, dict) and body["cache_prompt"] is True and body["model"] == "m"
    assert backend.n_tokens() == 7


def test_the_real_server_only_evaluates_new_tokens(llama_server: tuple[str, Path]) -> None:
    url, log = llama_server
    backend = RemoteBackend(url, n_ctx=2048)
    s = ModelSession(backend, load_prompt())
    s.start()
    mark = len(log.read_text())
    for k in range(6):
        s.step(f'{0.2 * (k + 1):.1f} app code "file{k}.py" =>')
        s.record(s.proposal().best())
    text = log.read_text()[mark:]
    remaining = [int(m) for m in re.findall(r"remaining (\d+) prompt tokens to eval", text)]
    hits = [int(m) for m in re.findall(r"(\d+) prefix-match hit", text)]
    assert len(remaining) >= 6 and len(hits) >= 6
    assert max(remaining) < 40  # each tick re-evaluates only its own line, not the session
    assert hits[-1] > 200  # the pinned prompt and earlier lines came from the cache
    s.reply_begin(s.proposal().best())
    backend.close()


def test_the_engine_replays_over_a_real_server(
    llama_server: tuple[str, Path], tmp_path: Path
) -> None:
    from app.cli import main

    root = tmp_path / "sc"
    root.mkdir()
    (root / "script.jsonl").write_text(
        '{"t": 0.4, "kind": "type", "text": "what does len() return?"}\n'
    )
    out = tmp_path / "t.jsonl"
    assert main(["replay", str(root), "--out", str(out), "--server", llama_server[0]]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    answers = [e for e in events if e["lane"] == "model" and e["decision"] in ("speak", "handoff")]
    assert answers and answers[0]["t"] == 0.4
    assert any(e["lane"] == "speech" and e["kind"] == "start" and e["text"] for e in events)
