"""A real third-party MCP server (the reference filesystem server from npm, on stdio) as the
agent's tools: each call named ``mcp__fs__<tool>``, decided by the gate and audited."""

from __future__ import annotations

from pathlib import Path

from background_agent.client import ChatClient
from background_agent.mcp_tools import McpServer
from background_agent.tasks import TaskEvent, TaskManager
from engine.core.handoff import HandoffPackage
from permissions.audit import AuditLog
from permissions.broker import Answer, Prompt, PromptBroker
from permissions.gate import Gate
from permissions.model import Decision
from tests.agent_server import call, finish, scripted

REPO = Path(__file__).resolve().parents[1]
FS_SERVER = REPO / ".tandem-npm" / "node_modules" / ".bin" / "mcp-server-filesystem"


def test_the_reference_filesystem_server_is_gated_and_audited(tmp_path: Path) -> None:
    assert FS_SERVER.exists(), "run `make install` (it installs the MCP server into .tandem-npm)"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("remember the milk\n")
    outside = tmp_path / "outside.txt"
    audit = AuditLog(tmp_path / "audit.sqlite3")
    broker = PromptBroker()
    asked: list[str] = []

    def user(prompt: Prompt) -> None:  # reads yes, writes no
        asked.append(prompt.subject)
        ok = prompt.subject in ("mcp__fs__read_text_file", "mcp__fs__list_directory")
        broker.answer(prompt.id, Answer(Decision.ALLOW if ok else Decision.DENY))

    broker.attach(user)
    gate = Gate(workspace=ws, audit=audit, broker=broker, timeout_s=5.0)
    server = McpServer("fs", str(FS_SERVER), [str(ws)])
    tools = server.start()
    events: list[TaskEvent] = []
    try:
        names = {t.name for t in tools}
        assert {"mcp__fs__read_text_file", "mcp__fs__list_directory"} <= names
        script = [
            call("mcp__fs__list_directory", path=str(ws)),
            call("mcp__fs__read_text_file", path=str(ws / "notes.txt")),
            call("mcp__fs__write_file", path=str(outside), content="escaped"),
            finish("read the notes"),
        ]
        with scripted(script) as llm:
            mgr = TaskManager(
                gate, ws, ChatClient(llm.url, retries=0), events.append, extra_tools=tools
            )
            try:
                final = mgr.wait(mgr.start(HandoffPackage("read my notes", 0.0)), 60.0)
            finally:
                mgr.close()
            told = [str(r["messages"][-1]["content"]) for r in llm.requests[1:4]]
    finally:
        server.close()
    assert final is not None and final.kind == "done"
    assert "notes.txt" in told[0]
    assert "remember the milk" in told[1]
    assert "denied by the permission gate" in told[2]
    assert not outside.exists()
    assert asked == ["mcp__fs__list_directory", "mcp__fs__read_text_file", "mcp__fs__write_file"]
    decisions = [(r["subject"], r["decision"]) for r in audit.rows() if r["kind"] == "decision"]
    assert decisions == [
        ("mcp__fs__list_directory", "allow"),
        ("mcp__fs__read_text_file", "allow"),
        ("mcp__fs__write_file", "deny"),
    ]
    audit.close()
