"""``tandem eval agent`` end to end against a scripted model server: the polyglot format in,
one JSON object out, with tool calls audited counted from each task's own audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from background_agent.eval import TasksError, load_tasks
from background_agent.sandbox import Sandbox
from tests.agent_server import call, finish, python_in_sandbox, scripted

TASK = {
    "id": "demo/two-fer",
    "instructions_md": "Return 'One for X, one for me.'",
    "hints_md": "",
    "stub_files": {"two_fer.py": "def two_fer(name='you'):\n    pass\n"},
    "test_files": {
        "two_fer_test.py": "from two_fer import two_fer\n\n\ndef test_it():\n"
        "    assert two_fer('Bob') == 'One for Bob, one for me.'\n"
    },
    "support_files": {},
    "run_tests": "python -m pytest -q two_fer_test.py",
}
SOLUTION = "def two_fer(name='you'):\n    return f'One for {name}, one for me.'\n"


@pytest.mark.skipif(not Sandbox(Path("/")).probe().available, reason="needs bubblewrap")
def test_eval_agent_reports_each_task_and_the_pass_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not python_in_sandbox():
        pytest.skip("this Python cannot run inside the sandbox as this user")
    tasks = tmp_path / "tasks.jsonl"
    cheat = {**TASK, "id": "demo/cheat"}
    tasks.write_text(json.dumps(TASK) + "\n\n" + json.dumps(cheat) + "\n")
    script = [
        call("write_file", path="two_fer.py", content=SOLUTION),
        call("run_command", command="python -m pytest -q -p no:cacheprovider two_fer_test.py"),
        finish("done"),
        # the second task "passes" by emptying the test file: the shipped tests decide
        call("write_file", path="two_fer_test.py", content="def test_ok():\n    pass\n"),
        finish("done"),
    ]
    with scripted(script) as server:
        rc = main(["eval", "agent", str(tasks), "--json", "--server", server.url])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["pass_rate"] == 0.5 and out["passed"] == 1
    first, second = out["tasks"]
    assert first == {
        **first,
        "id": "demo/two-fer",
        "passed": True,
        "status": "done",
        "steps": 3,
        "tool_calls": 2,
        "tool_calls_audited": 2,
    }
    assert first["tokens"] > 0 and first["seconds"] >= 0 and "1 passed" in first["tests"]
    assert "1 failed" in second["tests"]
    assert second["id"] == "demo/cheat" and second["passed"] is False
    assert second["tool_calls_audited"] == 1
    assert out["provenance"]["mode"] == "live"


def test_a_malformed_tasks_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(json.dumps(TASK) + "\n{not json\n")
    assert main(["eval", "agent", str(bad), "--json", "--server", "http://127.0.0.1:9"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"tandem: error: {bad}:2: not JSON (Expecting property name enclosed in double quotes)"
    )
    escape = {**TASK, "stub_files": {"../evil.py": "x"}}
    bad.write_text(json.dumps(escape) + "\n")
    with pytest.raises(TasksError, match="outside the workspace"):
        load_tasks(bad)


def test_the_public_tasks_file_reads() -> None:
    path = Path("/work/shared/evaldata/coding_tasks/aider_polyglot_python.jsonl")
    if not path.exists():
        pytest.skip("the shared evaluation data is not here")
    tasks = load_tasks(path)
    assert len(tasks) == 17 and all(t.tests and t.stubs for t in tasks)


def test_undo_says_what_it_restored_and_errors_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from background_agent import checkpoints

    (tmp_path / "a.py").write_text("one\n")
    checkpoints.checkpoint(tmp_path, "before edit_file a.py")
    (tmp_path / "a.py").write_text("two\n")
    (tmp_path / "new.py").write_text("made by the agent\n")
    assert main(["undo", "--workspace", str(tmp_path)]) == 0
    assert "restored checkpoint 1 (before edit_file a.py): 2 files" in capsys.readouterr().out
    assert (tmp_path / "a.py").read_text() == "one\n" and not (tmp_path / "new.py").exists()
    assert main(["undo", "--workspace", str(tmp_path)]) == 1
    assert "nothing to undo" in capsys.readouterr().err
