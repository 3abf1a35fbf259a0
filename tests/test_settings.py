"""Persisted settings: round trip, atomic writes, corrupt files give safe defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from permissions import settings
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Scope, Sense, ToolRequest

RULES = (
    Rule("u:pytest", Decision.ALLOW, tool="run_command", command="pytest", scope=Scope.SESSION),
    Rule("u:no-slack", Decision.DENY, sense=Sense.SCREEN, app="slack*"),
    Rule("u:docs", Decision.ALLOW, tool="write_file", path="docs/*", workspace="/home/*/proj"),
)


def test_round_trip(tmp_path: Path) -> None:
    path = settings.save(settings.Settings(RULES), tmp_path / "p.json")
    loaded = settings.load(path)
    assert loaded.problem is None
    assert loaded.settings.rules == RULES
    assert json.loads(path.read_text())["schema"] == settings.SCHEMA


def test_the_config_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.ENV_CONFIG_DIR, str(tmp_path))
    settings.save(settings.Settings(RULES))
    assert (tmp_path / settings.FILE_NAME).exists()
    assert settings.load().settings.rules == RULES


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"rules": []}', "schema"),
        (b'{"schema": 99, "rules": []}', "newer than this Tandem"),
        (b'{"schema": 1, "rules": {}}', "'rules' must be a list"),
        (b'{"schema": 1, "rules": [{"id": "x", "decision": "maybe", "tool": "a"}]}', "rule 0"),
        (b'{"schema": 1, "rules": [{"id": "x", "decision": "allow"}]}', "needs 'tool' or 'sense'"),
        (
            b'{"schema": 1, "rules": [{"id": "preset:x", "decision": "allow", "tool": "*"}]}',
            "reserved",
        ),
        (
            b'{"schema": 1, "rules": [{"id": "x", "decision": "allow", "tool": 5}]}',
            "must be a string",
        ),
    ],
)
def test_a_corrupt_file_gives_safe_defaults_and_says_why(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    loaded = settings.load(path)
    assert loaded.problem is not None and problem in loaded.problem
    assert "\n" not in loaded.problem  # one line
    assert loaded.settings.rules == ()
    gate = Gate(loaded.settings.rules)  # safe defaults: nothing is silently allowed
    assert (
        gate.explain_tool(ToolRequest("write_file", {"path": "a"}, tmp_path)).decision
        is Decision.ASK
    )
    assert gate.explain_sense(Sense.SCREEN, AppContext("code")).decision is Decision.ASK


def test_a_broken_allow_rule_is_dropped_and_every_readable_deny_rule_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.json"
    deny = {"id": "u:no-secrets", "decision": "deny", "tool": "*", "path": "secrets/**"}
    broken = {"id": "u:all", "decision": "allow", "tool": "*", "hots": "example.com"}
    path.write_text(json.dumps({"schema": 1, "rules": [broken, deny]}))
    loaded = settings.load(path)
    assert [r.id for r in loaded.settings.rules] == ["u:no-secrets"]
    assert loaded.problem is not None and "unknown key 'hots'" in loaded.problem
    assert "\n" not in loaded.problem


def test_an_unparsable_file_keeps_the_deny_rules_of_the_last_good_copy(tmp_path: Path) -> None:
    path = settings.save(settings.Settings(RULES), tmp_path / "p.json")
    assert settings.load(path).problem is None  # refreshes p.json.last-good
    path.write_bytes(b"{not json")
    loaded = settings.load(path)
    assert loaded.settings.rules == (RULES[1],)  # the one deny rule, none of the allows
    assert loaded.problem is not None and "kept the 1 deny rules" in loaded.problem


def test_size_and_rule_count_caps(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b" " * (settings.MAX_BYTES + 1))
    assert "larger than" in (settings.load(path).problem or "")
    rule = {"id": "x", "decision": "allow", "tool": "read_file"}
    path.write_text(json.dumps({"schema": 1, "rules": [rule] * (settings.MAX_RULES + 1)}))
    loaded = settings.load(path)
    assert loaded.settings.rules == () and "more than" in (loaded.problem or "")


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = settings.save(settings.Settings(RULES), tmp_path / "p.json")
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        settings.save(settings.Settings(()), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no temp file left


def test_older_schemas_are_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "SCHEMA", 2)

    def v1_to_v2(doc: dict[str, object]) -> dict[str, object]:
        return {**doc, "schema": 2, "migrated": True}

    monkeypatch.setitem(settings.MIGRATIONS, 1, v1_to_v2)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema": 1, "rules": [RULES[0].to_json()]}))
    loaded = settings.load(path)
    assert loaded.problem is None and loaded.settings.rules == RULES[:1]
    assert loaded.settings.extra == {"migrated": True}
