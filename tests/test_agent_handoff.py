"""A handoff from speech, replayed on a virtual clock: the user asks for work, the engine hands
it to the background agent (real TaskManager, real HTTP to a scripted model server, real tools,
gate and git), and the task's result is spoken at the next pause — never over the user."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from background_agent.client import ChatClient
from background_agent.link import AgentLink
from engine.core.clock import VirtualClock
from engine.core.engine import HANDOFF_ACK, TASK_NEWS_QUIET_S, Engine, ReplyBudget
from engine.core.events import TimelineEvent, from_json, to_json
from engine.core.frames import ControlEvent, ControlKind, TaskUpdate, TranscriptDelta
from engine.core.handoff import HandoffPackage
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from permissions.audit import AuditLog
from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope
from tests.agent_server import Hold, call, finish, scripted
from tests.fakes import FakeBackend
from tests.timelines import drive

REQUEST = "please fix the add function in calc.py"
USER_TALKS = (5.0, 7.0)  # the user talks (no words: thinking aloud) while the task finishes


def test_a_spoken_request_runs_as_a_task_and_its_result_is_told_at_the_next_pause(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    audit = AuditLog(tmp_path / "audit.sqlite3")
    gate = Gate(workspace=ws, audit=audit)
    gate.add_rule(Rule("t:edit", Decision.ALLOW, tool="edit_file", scope=Scope.SESSION))
    clock = VirtualClock()
    events: list[TimelineEvent] = []
    packages: list[HandoffPackage] = []
    fake = FakeBackend(rules={"please fix": "handoff"}, reply="fix add in calc.py")
    worker = ModelWorker()
    worker.start(lambda: ModelSession(fake, "system: you are Tandem"))
    engine = Engine(worker, _speech(), events.append, budget=ReplyBudget(8))
    started: list[str] = []
    script = [
        call("read_file", path="calc.py"),
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        finish("Fixed add."),
    ]
    with scripted(script) as server:
        link = AgentLink(engine, gate, ws, clock=clock.now, client=ChatClient(server.url))
        linked = engine.handoff
        assert linked is not None

        def hand_off(package: HandoffPackage) -> None:  # what the engine sent, then on
            packages.append(package)
            linked(package)

        engine.handoff = hand_off
        items: list[Any] = [
            TranscriptDelta(1.0, REQUEST, final=True),
            ControlEvent(USER_TALKS[0], ControlKind.USER_STARTED_SPEAKING),
            ControlEvent(USER_TALKS[1], ControlKind.USER_STOPPED_SPEAKING, voice_t=USER_TALKS[1]),
            TranscriptDelta(USER_TALKS[1] + 0.2, "", final=True),
        ]

        async def task_ends_while_the_user_talks(tick_t: float) -> None:
            if tick_t == USER_TALKS[0] + 0.2:
                (task,) = link.tasks.snapshot()  # handed off before the user spoke again
                started.append(task.task_id)
                done = await asyncio.to_thread(link.tasks.wait, task.task_id, 30.0)
                assert done is not None and done.kind == "done"

        try:
            asyncio.run(
                drive(engine, items, 12.0, before_tick=task_ends_while_the_user_talks, clock=clock)
            )
        finally:
            link.close()
            worker.close()

    timeline = [to_json(e) for e in sorted(events, key=lambda e: e.t)]
    (package,) = packages
    assert package.request == REQUEST and f"user: {REQUEST}" in package.transcript
    agent = [e for e in timeline if e["lane"] == "agent"]
    assert agent[0]["kind"] == "task_started" and agent[-1]["kind"] == "task_done"
    assert agent[-1]["status"] == "done" and {e["task"] for e in agent} == {started[0]}
    assert all(to_json(from_json(e)) == e for e in agent)  # the timeline format reads back
    starts = [e for e in timeline if e["lane"] == "speech" and e["kind"] == "start"]
    assert starts[0]["text"] == HANDOFF_ACK
    told = [e for e in starts if "calc.py" in e["text"]]
    assert len(told) == 1
    assert told[0]["text"] == "I changed 2 lines in calc.py. Fixed add."
    # the task ended while the user talked; the result waited for the pause after it
    assert agent[-1]["t"] < USER_TALKS[1]
    assert told[0]["t"] >= USER_TALKS[1] + TASK_NEWS_QUIET_S
    assert all(not (USER_TALKS[0] <= e["t"] < USER_TALKS[1]) for e in starts)
    assert (ws / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert [r["subject"] for r in audit.rows() if r["kind"] == "decision"] == [
        "read_file",
        "edit_file",
    ]
    audit.close()


def _speech() -> Any:
    from engine.voice.handles import PacedTextSpeech

    return PacedTextSpeech()


def test_the_user_cancels_or_redirects_a_running_task_by_voice_or_typing(tmp_path: Path) -> None:
    worker = ModelWorker()
    worker.start(lambda: ModelSession(FakeBackend(), "system: you are Tandem"))
    engine = Engine(worker, _speech(), lambda ev: None)
    gate = Gate(workspace=tmp_path)
    script = [Hold(call("list_dir", path=".")), Hold(), Hold()]
    with scripted(script) as server:
        link = AgentLink(engine, gate, tmp_path, clock=lambda: 0.0, client=ChatClient(server.url))
        try:
            assert link.hear("cancel the task") is None  # nothing is running
            assert engine.handoff is not None
            engine.handoff(HandoffPackage("look around", 0.0))
            assert server.held.wait(30)
            assert link.hear("how are you today") is None
            assert link.command("/redirect t1 only look at src") == "task t1: redirected"
            assert link.hear("Tell the agent to skip the tests") == "task t1: redirected"
            assert link.command("/tasks") == "t1 progress: redirected"
            server.release()  # the first reply (a list_dir call) arrives; the next step asks
            while len(server.requests) < 2:
                link.tasks.wait("t1", 0.05)
            assert link.hear("please stop the background task now") == "task t1: cancelled"
            server.release()  # its reply comes, and is not acted on
            final = link.tasks.wait("t1", 30)
            assert final is not None and final.kind == "cancelled"
            assert link.command("/cancel") == "no task is running"
            notes = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "user"]
            assert notes[-2:] == [
                "The user changed the request: only look at src",
                "The user changed the request: skip the tests",
            ]
        finally:
            link.close()
            worker.close()
    frames = engine.data.drain()
    assert [f.kind for f in frames if isinstance(f, TaskUpdate)][-1] == "cancelled"
