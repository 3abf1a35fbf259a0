"""The `tandem` command as a user runs it: live in a terminal, errors, the benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.model.registry import ModelSpec
from tests.conftest import free_port

TANDEM = [sys.executable, "-m", "app"]


def tandem(
    *args: str, stdin: str = "", timeout: float = 120, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    if home is not None:  # keep the user's own settings and audit log out of the test
        env.update(TANDEM_CONFIG_DIR=str(home / "config"), TANDEM_DATA_DIR=str(home / "data"))
    return subprocess.run(
        [*TANDEM, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_run_live_says_what_it_lacks_and_answers_typed_text(tmp_path: Path) -> None:
    proc = tandem(
        "run",
        "--duration",
        "6",
        "--threads",
        "2",
        stdin="how do I reverse a list in python?\n",
        home=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # Each sense says whether it is there and, when not, why (here: no sound card, no display).
    assert "listening is off" in out or "microphone: found" in out
    assert "no display" in out  # DISPLAY is removed from the environment above
    assert "decide  speak" in out or "decide  handoff" in out
    assert "tandem  " in out  # the reply, printed as it would be spoken
    assert "stopped after" in out
    assert "Traceback" not in proc.stderr


def test_quit_ends_a_live_session_at_once(tmp_path: Path) -> None:
    proc = tandem("run", "--threads", "2", stdin="/quit\n", timeout=60, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stopped after" in proc.stdout


def test_a_corrupt_model_is_refused_with_a_clear_message(
    embedded_spec: ModelSpec, tmp_path: Path
) -> None:
    bad = tmp_path / "model.gguf"
    shutil.copyfile(embedded_spec.path, bad)
    with bad.open("r+b") as f:
        f.truncate(30_000_000)
    sha = embedded_spec.sha256
    assert sha is not None
    scenario = tmp_path / "sc"
    scenario.mkdir()
    (scenario / "script.jsonl").write_text('{"t": 0.2, "kind": "type", "text": "hi"}\n')
    proc = tandem(
        "replay",
        str(scenario),
        "--out",
        str(tmp_path / "t.jsonl"),
        "--model",
        str(bad),
        "--sha256",
        sha,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("tandem: error: model file failed its SHA-256 check")
    assert "Traceback" not in proc.stderr
    proc = tandem("replay", str(scenario), "--out", str(tmp_path / "t.jsonl"), "--model", str(bad))
    assert (
        proc.returncode == 1 and "could not load" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_a_dead_server_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    scenario = tmp_path / "sc"
    scenario.mkdir()
    (scenario / "script.jsonl").write_text('{"t": 0.2, "kind": "type", "text": "hi"}\n')
    url = f"http://127.0.0.1:{free_port()}"
    proc = tandem("replay", str(scenario), "--out", str(tmp_path / "t.jsonl"), "--server", url)
    assert proc.returncode == 1
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2() -> None:
    assert tandem("replay").returncode == 2
    assert tandem("bench", "nothing").returncode == 2


@pytest.mark.slow
def test_bench_session_prints_the_contract() -> None:
    proc = tandem(
        "bench",
        "session",
        "--json",
        "--hours",
        "0.02",
        "--n-ctx",
        "1024",
        "--reps",
        "2",
        "--threads",
        "2",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"model", "n_ctx", "rows", "flatness", "long_session"} <= result.keys()
    rows = result["rows"]
    assert [r["context"] for r in rows] == sorted(r["context"] for r in rows)
    assert rows[-1]["context"] > 400 and rows[0]["context"] < 150
    for r in rows:
        assert r["append_decide_ms"] > 0 and r["reprefill_ms"] > 0
    assert result["flatness"] == pytest.approx(
        rows[-1]["append_decide_ms"] / rows[0]["append_decide_ms"], abs=0.01
    )
    long = result["long_session"]
    assert {
        "simulated_hours",
        "ticks",
        "rss_start_mb",
        "rss_end_mb",
        "max_context_tokens",
        "dropped_ticks",
    } <= long.keys()
    assert long["ticks"] == 360 and long["max_context_tokens"] <= 1024


def test_bench_gate_reports_both_rule_counts(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["bench", "gate", "--json", "--requests", "40"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["n_rules"] for r in out["rows"]] == [10, 1000]
    assert all(r["n_requests"] == 40 and r["p50_us"] > 0 for r in out["rows"])
    # the mix was decided as the ordinary rules say: the read, pytest and the write allowed
    assert out["rows"][0]["decisions"]["read_file:allow"] == 10
