"""Proactive interjections on scenarios built from real screenshots (``evaldata/screen``).

Replayed through the real engine, gate, change tracking and tesseract OCR, with the fake model
(the remark is the policy's, not the model's). The bar from the screen issue: at least 90 % of
failure cues lead to an interjection within 3 s, at most 10 % of ordinary screen changes cause
one, and none starts while the user speaks (that part is timed in ``test_screen_engine``; the
``speaking`` scenario needs the hearing models and runs in ``tandem eval screen``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.core.events import TimelineEvent, to_json
from engine.eval import screen
from engine.eval.replay import load_scenario, replay
from engine.model.session import ModelSession
from engine.model.worker import ModelWorker
from tests.conftest import EVALDATA
from tests.fakes import FakeBackend

SCREENS = EVALDATA / "screen"
pytestmark = [
    pytest.mark.skipif(not SCREENS.is_dir(), reason=f"no screenshots at {SCREENS}"),
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr"),
    pytest.mark.slow,
]
SUBSET = (
    "failure_pytest",
    "failure_traceback",
    "failure_mypy",
    "failure_go",
    "failure_rm",
    "failure_push",
    "failure_sql",
    "excluded_",
    "ordinary_rich_status",
)
"""A share of what ``tandem eval screen`` runs, to stay fast; the figures are its."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The scenarios, built once for this module."""
    return screen.build_scenarios(EVALDATA, tmp_path_factory.mktemp("screen"))


def replayed(root: Path) -> list[dict[str, Any]]:
    worker = ModelWorker()
    worker.start(lambda: ModelSession(FakeBackend(reply="Sure."), "system: you are Tandem"))
    events: list[TimelineEvent] = []
    try:
        asyncio.run(replay(load_scenario(root), worker, events.append))
    finally:
        worker.close()
    return [to_json(e) for e in sorted(events, key=lambda e: e.t)]


def test_failures_are_offered_and_ordinary_changes_are_not(built: list[Path]) -> None:
    made = built
    names = {p.name for p in made}
    assert {"failure_pytest", "failure_rm", "excluded_password_manager"} <= names
    chosen = [p for p in made if p.name.startswith(SUBSET)]
    result = screen.eval_screen(chosen, replayed)
    assert result["cues"] == 8
    assert result["recall"] >= 0.9, result["per_scenario"]
    assert result["latency_s_max"] <= screen.WINDOW_S
    assert result["ordinary_changes"] >= 20
    assert result["false_rate"] <= 0.1, result["per_scenario"]
    assert result["while_user_speaking"] == 0
    labels = json.loads((made[0].parent / "failure_pytest" / "labels.json").read_text())
    assert labels["task"] == "screen_cue" and labels["source"].endswith(".png")


def test_scoring_counts_hits_misses_and_false_interjections() -> None:
    labels = {
        "user_speech": [[10.0, 12.0]],
        "cues": [
            {"t": 1.0, "expect": "interject"},
            {"t": 5.0, "expect": "silent"},
            {"t": 20.0, "expect": "interject"},
        ],
    }
    events = [
        {"t": 1.6, "lane": "model", "kind": "decision", "decision": "interject"},
        {"t": 6.0, "lane": "model", "kind": "decision", "decision": "interject"},
        {"t": 11.0, "lane": "model", "kind": "decision", "decision": "interject"},
        {"t": 24.0, "lane": "model", "kind": "decision", "decision": "interject"},
    ]
    row = screen.score(labels, events)
    assert row["recalled"] == 1 and row["latencies"] == [0.6] and len(row["missed"]) == 1
    assert row["false"] == 3 and row["ordinary_changes"] == 1
    assert row["while_user_speaking"] == 1


def test_the_command_reports_json_and_refuses_an_empty_root(
    built: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    root = tmp_path / "one"
    shutil.copytree(next(p for p in built if p.name == "failure_rm"), root / "failure_rm")
    assert main(["eval", "screen", str(root), "--json", "--fake-model"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["scenarios"], out["cues"], out["recall"]) == (1, 1, 1.0)
    assert out["false_interjections"] == 0 and out["provenance"]["mode"] == "replay"
    (tmp_path / "empty").mkdir()
    assert main(["eval", "screen", str(tmp_path / "empty"), "--fake-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tandem: error: no screen_cue scenarios under {tmp_path / 'empty'}"]
