"""`tandem permissions explain` and `tandem audit` as the user runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.cli import main
from permissions import settings
from permissions.audit import AuditLog
from permissions.model import Decision, Rule, Scope


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    out = {"config": tmp_path / "cfg", "data": tmp_path / "data", "ws": tmp_path / "ws"}
    for p in out.values():
        p.mkdir()
    monkeypatch.setenv(settings.ENV_CONFIG_DIR, str(out["config"]))
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(out["data"]))
    return out


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["permissions", "explain", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_explain_a_tool_with_the_current_settings(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(dirs["ws"])
    out = explain(
        capsys, "--tool", "run_command", "--args", '{"command": "pytest -q"}', "--workspace", ws
    )
    assert out == {"decision": "ask", "rule": None, "reason": "default: run_command needs approval"}
    rule = Rule("u:docs", Decision.ALLOW, tool="write_file", path="docs/*")
    settings.save(
        settings.Settings(
            (
                rule,
                Rule(
                    "u:t", Decision.ALLOW, tool="run_command", command="pytest", scope=Scope.SESSION
                ),
            )
        )
    )
    out = explain(
        capsys, "--tool", "write_file", "--args", '{"path": "docs/a.md"}', "--workspace", ws
    )
    assert out["decision"] == "allow" and out["rule"] == "u:docs"
    out = explain(
        capsys, "--tool", "write_file", "--args", '{"path": "../../etc/x"}', "--workspace", ws
    )
    assert out["decision"] == "ask"
    out = explain(
        capsys,
        "--tool",
        "read_file",
        "--args",
        json.dumps({"path": str(dirs["config"] / "permissions.json")}),
        "--workspace",
        "/",
    )
    assert out["decision"] == "deny" and str(out["rule"]).startswith("preset:protect:")


def test_explain_a_sense(dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, "--sense", "screen", "--app", "KeePassXC")
    assert out["decision"] == "deny" and out["rule"] == "preset:screen-password-manager:keepassxc"
    out = explain(capsys, "--sense", "screen", "--app", "code")
    assert out["decision"] == "ask"


def test_a_corrupt_settings_file_warns_and_stays_safe(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (dirs["config"] / settings.FILE_NAME).write_text(
        '{"schema": 1, "rules": [{"id": "x", "decision": "allow", "tool": "*"'
    )
    assert (
        main(
            [
                "permissions",
                "explain",
                "--tool",
                "read_file",
                "--args",
                '{"path": "/etc/passwd"}',
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["decision"] == "ask"
    assert "safe defaults" in captured.err


def test_bad_args_json_is_a_usage_error(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["permissions", "explain", "--tool", "read_file", "--args", "{oops"]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_audit_tail_export_verify(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = AuditLog(dirs["data"] / "audit.sqlite3")
    for i in range(5):
        log.append("decision", "read_file", "allow", f"r{i}", args={"path": f"{i}.py"})
    log.close()
    assert main(["audit", "verify", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["entries"] == 5 and verified["intact"] is True
    # No keyring in this test: the command says the chain is a plain one, and what that means.
    assert verified["note"].startswith("plain hash chain")
    assert main(["audit", "tail", "-n", "2", "--json"]) == 0
    assert [r["seq"] for r in json.loads(capsys.readouterr().out)] == [4, 5]
    out = tmp_path / "export.jsonl"
    assert main(["audit", "export", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5
    con = sqlite3.connect(dirs["data"] / "audit.sqlite3")
    con.execute("UPDATE entries SET reason='nothing to see' WHERE seq=2")
    con.commit()
    con.close()
    assert main(["audit", "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["intact"] is False
