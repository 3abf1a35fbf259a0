"""End to end with the embedded model: Tandem starts its own ``llama_cpp.server`` on
127.0.0.1, the agent's grammar-constrained calls reach real tools through the gate, and the
server is stopped afterwards. Short on purpose: two steps, two tools, two threads."""

from __future__ import annotations

import queue
import socket
import threading
from pathlib import Path

import pytest

from background_agent.agent import Agent
from background_agent.client import ChatClient
from background_agent.server import LlamaServer, agent_model
from background_agent.tools import BUILTIN, Registry
from engine.core.handoff import HandoffPackage
from permissions.audit import AuditLog
from permissions.gate import Gate

THREADS = 2


@pytest.mark.model
@pytest.mark.server
@pytest.mark.slow
def test_the_embedded_model_makes_valid_gated_tool_calls(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("The demo password is swordfish.\n")
    audit = AuditLog(tmp_path / "audit.sqlite3")
    registry = Registry(Gate(workspace=ws, audit=audit), ws)
    for tool in BUILTIN:
        if tool.name in ("read_file", "list_dir"):
            registry.register(tool)
    spec = agent_model()
    server = LlamaServer(spec.path, n_threads=THREADS, n_ctx=2048)
    url = server.start()
    port = server.port
    try:
        client = ChatClient(url, spec.name, max_tokens=96, retries=1)
        try:
            outcome = Agent(client, registry, max_steps=2).run(
                HandoffPackage("Read the file hello.txt and tell me what it says.", 0.0),
                threading.Event(),
                queue.SimpleQueue(),
                lambda kind, summary: None,
            )
        finally:
            client.close()
    finally:
        server.stop()
    decisions = [(r["subject"], r["decision"]) for r in audit.rows() if r["kind"] == "decision"]
    audit.close()
    assert outcome.status in ("done", "failed") and outcome.steps >= 1
    assert outcome.tool_calls >= 1 and len(decisions) == outcome.tool_calls
    assert ("read_file", "allow") in decisions  # a valid call, run through the gate
    with socket.socket() as s, pytest.raises(OSError):
        s.connect(("127.0.0.1", port))  # the server Tandem started is gone
