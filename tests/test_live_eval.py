"""Live measurement: the speaker-audio detector and scoring, the control bench, provenance,
and one real `tandem eval duplex --live` run on a private PulseAudio."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.core import audio
from engine.eval import provenance as prov
from engine.eval.bench_control import (
    BusyBackend,
    SlowBackend,
    latency_run,
    percentiles_ms,
    silent_after,
)
from engine.eval.duplex import LONG_SAY, _speech_bounds
from engine.eval.live_duplex import (
    Printed,
    align,
    find_scenarios,
    parse_printed,
    score_live,
    speech_segments,
    stdin_inputs,
    summarise_live,
)
from engine.model.backend import SessionBackend
from engine.model.load import ModelConfig
from engine.model.registry import DEFAULT_MODEL
from tests.vaudio import needs_pulseaudio, spoken, tandem

RATE = 16000


def track(bursts: list[tuple[float, float]], seconds: float, level: float = 0.3) -> np.ndarray:
    """A speaker recording: 300 Hz tone bursts at known times, digital silence elsewhere."""
    x = np.zeros(int(seconds * RATE), dtype=np.float32)
    for a, b in bursts:
        i, j = int(a * RATE), int(b * RATE)
        t = np.arange(j - i) / RATE
        x[i:j] = level * np.sin(2 * np.pi * 300 * t)
    return x


def segs(bursts: list[tuple[float, float]], seconds: float = 12.0) -> list[tuple[float, float]]:
    return speech_segments(track(bursts, seconds), RATE)


# --- the detector and the alignment --------------------------------------------------------


def test_segments_start_and_end_where_the_bursts_do() -> None:
    found = segs([(0.5, 1.5), (3.0, 4.25)])
    assert len(found) == 2
    for (s, e), (a, b) in zip(found, [(0.5, 1.5), (3.0, 4.25)], strict=True):
        assert abs(s - a) <= 0.01 and abs(e - b) <= 0.01


def test_gaps_between_words_are_bridged_and_longer_silences_are_not() -> None:
    assert len(segs([(1.0, 1.4), (1.6, 2.0)])) == 1  # 0.2 s < the 0.3 s hangover
    assert len(segs([(1.0, 1.4), (1.9, 2.3)])) == 2  # 0.5 s is a pause


def test_quiet_sounds_and_clicks_are_not_speech() -> None:
    assert speech_segments(track([(1.0, 2.0)], 4.0, level=0.002), RATE) == []  # -57 dBFS
    assert segs([(1.0, 1.02)]) == []  # 20 ms: a click


def test_origin_shifts_every_time() -> None:
    found = speech_segments(track([(1.0, 2.0)], 3.0), RATE, origin=-0.5)
    assert abs(found[0][0] - 0.5) <= 0.01


def test_the_labelled_voice_starts_and_ends_with_the_voice_not_the_room_tone() -> None:
    # A recording whose room tone is only 34 dB under its voice, as the LibriVox clips are: the
    # turn ends when the voice does, not when the file does.
    rng = np.random.default_rng(1)
    t = np.arange(int(1.0 * audio.RATE)) / audio.RATE
    voice = (0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(np.pi * t) ** 0.2).astype(np.float32)
    room = rng.normal(0.0, 0.006, int(0.4 * audio.RATE)).astype(np.float32)
    clip = np.concatenate([room, voice + rng.normal(0.0, 0.006, len(voice)), room])
    start, end = _speech_bounds(clip.astype(np.float32))
    assert 0.4 <= start <= 0.45 and 1.35 <= end <= 1.41, (start, end)
    quiet = np.concatenate([np.zeros(6400), voice, np.zeros(6400)]).astype(np.float32)
    start, end = _speech_bounds(quiet)  # digital silence around it: the voice's own edges
    assert 0.4 <= start <= 0.42 and 1.38 <= end <= 1.41, (start, end)


def test_alignment_finds_the_scenario_inside_the_recording() -> None:
    rng = np.random.default_rng(1)
    reference = np.concatenate([np.zeros(RATE), rng.normal(0, 0.1, 2 * RATE)]).astype(np.float32)
    heard = np.concatenate([np.zeros(4321), reference, np.zeros(RATE)]).astype(np.float32)
    heard += rng.normal(0, 0.001, len(heard)).astype(np.float32)
    lag, quality = align(heard, reference)
    assert lag == 4321 and quality > 0.95
    _, unrelated = align(rng.normal(0, 0.1, 3 * RATE).astype(np.float32), reference)
    assert unrelated < 0.5


def test_printed_lines_keep_their_arrival_time_and_decision() -> None:
    lines = [
        (10.0, "microphone: listening (virtmic, 44100 Hz)"),
        (12.5, "    8.1  decide  speak (turn_end)"),
        (12.7, "    8.6  tandem  Here is the answer."),
        (13.0, "    9.0  stop    interrupted"),
    ]
    printed = parse_printed(lines, t0=10.0)
    assert [p.kind for p in printed] == ["decide", "tandem", "stop"]
    assert [p.t for p in printed] == pytest.approx([2.5, 2.7, 3.0])
    assert printed[0].decision == "speak" and printed[1].text == "Here is the answer."
    assert printed[1].decision is None


# --- scoring per task ----------------------------------------------------------------------


def test_pause_takeover_counts_audio_in_the_pause() -> None:
    labels = {"task": "pause", "pause": [3.0, 4.0], "user_speech": [[1, 3], [4, 6]]}
    got = score_live(labels, segs([(3.5, 5.0)]))
    assert got["takeover"] and got["takeover_audio"] and not got["takeover_decision"]
    assert not score_live(labels, segs([(6.5, 8.0)]))["takeover"]


def test_pause_takeover_counts_a_printed_decision_even_when_the_audio_came_late() -> None:
    labels = {"task": "pause", "pause": [3.0, 4.0], "user_speech": [[1, 3], [4, 6]]}
    decided = [Printed(3.6, "decide", "speak (turn_end)")]
    got = score_live(labels, segs([(4.3, 5.0)]), decided)
    assert got["takeover"] and got["takeover_decision"] and not got["takeover_audio"]
    silent = [Printed(3.6, "decide", "backchannel (model)")]
    assert not score_live(labels, [], silent)["takeover"]
    late = [Printed(4.2, "decide", "speak (turn_end)")]
    assert not score_live(labels, [], late)["takeover"]


def test_turn_latency_is_first_audio_after_the_turn_end_and_late_audio_is_a_miss() -> None:
    labels = {"task": "turn", "turn_end": 4.0, "user_speech": [[1.0, 4.0]]}
    printed = [Printed(4.6, "decide", "speak (turn_end)"), Printed(4.7, "tandem", "Sure.")]
    got = score_live(labels, segs([(5.2, 6.5)]), printed)
    assert got["takeover"] and got["latency"] == pytest.approx(1.2, abs=0.011)
    assert got["decision_latency"] == pytest.approx(0.6)
    assert got["printed_to_audio"] == pytest.approx(0.5, abs=0.011)
    assert not got["early"]
    missed = score_live(labels, segs([(7.5, 8.5)]))
    assert not missed["takeover"] and missed["latency"] is None
    assert score_live(labels, segs([(2.5, 3.0), (5.2, 6.5)]))["early"]  # over the user


def test_interruption_stop_time_and_strict_success() -> None:
    labels = {"task": "interrupt", "interrupt_start": 2.6, "user_speech": [[2.6, 6.0]]}
    clean = score_live(labels, segs([(0.8, 2.85), (7.0, 8.0)]))
    assert clean["stop_time"] == pytest.approx(0.25, abs=0.011)
    assert clean["success"] and clean["strict_success"] and clean["speaking"]
    assert clean["next_audio_after_user_s"] == pytest.approx(1.0, abs=0.011)
    # It stopped in time, but spoke again while the user was still talking.
    over = score_live(labels, segs([(0.8, 2.85), (4.0, 4.5)]))
    assert over["success"] and not over["strict_success"]
    assert over["spoke_over_user_s"] == pytest.approx(0.5, abs=0.011)
    slow = score_live(labels, segs([(0.8, 4.0)]))
    assert slow["stop_time"] == pytest.approx(1.4, abs=0.011) and not slow["success"]
    # On the breath before the voice reached the label's level: an answer, with a negative time.
    early = score_live(labels, segs([(0.8, 2.45), (7.0, 8.0)]))
    assert early["strict_success"] and early["stop_time"] == pytest.approx(-0.15, abs=0.011)
    assert not score_live(labels, segs([(0.8, 2.0), (3.0, 8.0)]))["success"]  # long before


def test_an_interrupted_reply_said_again_is_flagged() -> None:
    labels = {"task": "interrupt", "interrupt_start": 2.6, "user_speech": [[2.6, 4.0]]}
    again = [Printed(5.0, "tandem", LONG_SAY)]
    assert score_live(labels, segs([(0.8, 2.8)]), again, said=LONG_SAY)["repeated"]
    other = [Printed(5.0, "tandem", "Which test fails?")]
    assert not score_live(labels, segs([(0.8, 2.8)]), other, said=LONG_SAY)["repeated"]


BC = {"task": "backchannel", "backchannel": [3.0, 3.5], "user_speech": [[3.0, 3.5]]}


def test_backchannel_talking_through_or_resuming_soon_is_not_a_false_stop() -> None:
    through = score_live(BC, segs([(0.8, 9.0)]))
    assert not through["false_stop"] and not through["paused"]
    resumed = score_live(BC, segs([(0.8, 3.3), (4.2, 9.0)]))
    assert resumed["paused"] and not resumed["false_stop"]
    assert resumed["resume_gap_s"] == pytest.approx(0.9, abs=0.011)


def test_backchannel_stop_that_does_not_continue_is_a_false_stop() -> None:
    assert score_live(BC, segs([(0.8, 3.3)]))["false_stop"]
    assert score_live(BC, segs([(0.8, 3.3), (6.0, 9.0)]))["false_stop"]  # 2.7 s later


def test_restarted_reply_is_found_in_the_printed_lines() -> None:
    resumed_line = [Printed(4.1, "tandem", "and when it sees an opening bracket ...")]
    restart_line = [Printed(4.1, "tandem", LONG_SAY)]
    bursts = segs([(0.8, 3.3), (4.2, 9.0)])
    assert not score_live(BC, bursts, resumed_line, said=LONG_SAY)["restarted"]
    assert score_live(BC, bursts, restart_line, said=LONG_SAY)["restarted"]


def test_restarted_reply_is_found_in_the_audio() -> None:
    # 2.5 s heard before the backchannel of an utterance that takes 8 s in full.
    went_on = score_live(BC, segs([(0.8, 3.3), (4.2, 9.7)]), said=LONG_SAY, full_s=8.0)
    assert went_on["restarted_audio"] is False and not went_on["restarted"]
    over = score_live(BC, segs([(0.8, 3.3), (4.2, 12.2)], 14.0), said=LONG_SAY, full_s=8.0)
    assert over["restarted_audio"] is True and over["restarted"]  # nothing printed: audio


def test_a_backchannel_while_the_assistant_is_silent_tests_nothing() -> None:
    got = score_live(BC, segs([(4.0, 9.0)]))
    assert not got["speaking"] and not got["false_stop"]
    summary = summarise_live([{"scenario": "b", **got}])
    assert summary["backchannel"]["not_speaking"] == 1
    assert summary["backchannel"]["false_stop_rate"] is None


def test_summary_per_task_counts_failures_apart() -> None:
    labels = {"task": "turn", "turn_end": 4.0, "user_speech": [[1.0, 4.0]]}
    outcomes: list[dict[str, Any]] = [
        {"scenario": "t0", **score_live(labels, segs([(5.0, 6.0)]))},
        {"scenario": "t1", **score_live(labels, segs([(5.5, 6.0)]))},
        {"scenario": "t2", **score_live(labels, [])},
        {"scenario": "t3", "task": "turn", "failed": True, "error": "tandem exited"},
    ]
    turn = summarise_live(outcomes)["turn"]
    assert turn["n"] == 3 and turn["failed"] == 1 and turn["missed"] == 1
    assert turn["takeover_rate"] == pytest.approx(0.667)
    assert turn["latency_mean_s"] == pytest.approx(1.25, abs=0.011)


def scenario(root: Path, name: str, labels: dict[str, Any], script: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(labels))
    audio.write_wav(folder / "mic.wav", np.zeros(RATE, dtype=np.float32))
    if script:
        (folder / "script.jsonl").write_text(script)
    return folder


def test_limit_takes_scenarios_in_turn_from_each_task(tmp_path: Path) -> None:
    for task in ("pause", "turn", "interrupt"):
        for k in range(3):
            scenario(tmp_path, f"{task}-{k}", {"task": task})
    picked = [p.name for p in find_scenarios(tmp_path, limit=4)]
    assert picked == ["interrupt-0", "interrupt-1", "pause-0", "turn-0"]
    assert len(find_scenarios(tmp_path)) == 9


def test_scripted_inputs_become_the_lines_a_user_types(tmp_path: Path) -> None:
    script = (
        '{"t": 0.5, "kind": "assistant_say", "text": "Let me\\nexplain."}\n'
        '{"t": 1.0, "kind": "type", "text": "why?"}\n'
        '{"t": 2.0, "kind": "mute", "on": true}\n'
        '{"t": 3.0, "kind": "mute", "on": false}\n'
    )
    folder = scenario(tmp_path, "s", {"task": "turn"}, script)
    assert stdin_inputs(folder) == [
        (0.5, "/say Let me explain."),
        (1.0, "why?"),
        (2.0, "/mute"),
        (3.0, "/unmute"),
    ]


# --- the control bench -----------------------------------------------------------------------


def test_slow_backend_is_a_session_backend_and_takes_its_time() -> None:
    backend: SessionBackend = BusyBackend(SlowBackend(call_s=0.01))
    backend.reset("system prompt")
    backend.append('1.0 typed "why?" =>')
    logits = backend.label_logits([" silent", " speak"])
    assert logits[1] > logits[0]
    backend.spec_begin(' speak "')
    assert backend.spec_step(4, ['"'])[0]
    assert isinstance(backend, BusyBackend) and backend.busy_s >= 0.02


def test_control_latency_run_records_every_event_while_the_model_is_busy() -> None:
    result = latency_run(lambda: SlowBackend(call_s=0.05), seconds=1.5, seed=3)
    handled = result["event_to_handled"]
    assert handled["n"] >= sum(result["posted"].values()) > 3  # every posted event, + shutdown
    assert 0 <= handled["p50_ms"] <= handled["p99_ms"] <= handled["max_ms"]
    assert result["ticks"] > 0 and result["model_busy_share"] > 0
    assert set(result["posted"]) <= {
        "voice_onset",
        "user_started_speaking",
        "user_stopped_speaking",
        "stop_speaking",
        "mute",
        "unmute",
    }


def test_percentiles_and_the_speaker_going_silent() -> None:
    assert percentiles_ms([0.001] * 99 + [0.5])["p99_ms"] == 1.0
    assert percentiles_ms([])["n"] == 0
    x = track([(1.0, 2.0)], 3.0)
    end = silent_after(x, RATE, int(1.5 * RATE))
    assert end is not None and abs(end / RATE - 2.0) < 0.002
    assert silent_after(x, RATE, int(2.5 * RATE)) is None  # nothing was playing


# --- provenance ------------------------------------------------------------------------------


def test_commit_is_read_from_the_git_folder(tmp_path: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert prov.git_commit(tmp_path) == "unknown"  # the branch has no commit yet
    (git / "packed-refs").write_text(f"# pack-refs\n{sha} refs/heads/main\n")
    assert prov.git_commit(tmp_path) == sha
    (git / "refs" / "heads" / "main").write_text(sha.replace("0", "f") + "\n")
    assert prov.git_commit(tmp_path) == sha.replace("0", "f")
    (git / "HEAD").write_text(sha + "\n")  # detached
    assert prov.git_commit(tmp_path) == sha
    assert prov.git_commit(tmp_path / "nowhere") == "unknown"


def test_provenance_records_commit_mode_machine_config_and_date() -> None:
    cfg = ModelConfig(n_ctx=1024, n_threads=2, server_url="http://user:pw@example.org:8080/v1")
    p = prov.provenance("live", {"scenarios": 3}, cfg=cfg)
    assert set(p) >= {"commit", "dirty", "mode", "machine", "config", "date"}
    assert p["mode"] == "live" and p["commit"] != ""
    assert p["machine"]["cpu_count"] == os.cpu_count() and p["machine"]["ram_total_mb"] > 0
    assert p["machine"]["python"].count(".") == 2
    config = p["config"]
    assert config["n_ctx"] == 1024 and config["threads"] == 2 and config["scenarios"] == 3
    assert config["eagerness"] == 0.5 and config["model"] == DEFAULT_MODEL
    assert config["server"] == "example.org:8080" and "pw" not in json.dumps(p)
    assert p["date"].endswith("+00:00")


# --- the command, end to end -----------------------------------------------------------------


def test_live_eval_needs_pulseaudio_and_says_so(tmp_path: Path) -> None:
    folder = scenario(tmp_path / "root", "turn-0", {"task": "turn", "turn_end": 0.5})
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    proc = tandem(env, "eval", "duplex", "--live", str(folder.parent), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "PulseAudio" in proc.stderr, proc.stderr


def test_also_replay_goes_with_live(tmp_path: Path) -> None:
    proc = tandem(dict(os.environ), "eval", "duplex", str(tmp_path), "--also-replay")
    assert proc.returncode == 2 and "--live" in proc.stderr


@pytest.mark.slow
@needs_pulseaudio
def test_live_duplex_eval_on_one_scenario(tmp_path: Path) -> None:
    # An interruption: the assistant is made to talk at 0.5 s, the user talks over it at 2.5 s.
    user = audio.load_mono16k(spoken(tmp_path / "user.wav", "Wait, stop, that is not right."))
    mic = np.zeros(int((2.5 + len(user) / RATE + 1.5) * RATE), dtype=np.float32)
    mic[int(2.5 * RATE) : int(2.5 * RATE) + len(user)] = user
    start, end = 2.5, 2.5 + len(user) / RATE
    folder = tmp_path / "root" / "interrupt-0"
    folder.mkdir(parents=True)
    audio.write_wav(folder / "mic.wav", mic)
    labels = {"task": "interrupt", "interrupt_start": start, "user_speech": [[start, end]]}
    (folder / "labels.json").write_text(json.dumps(labels))
    say = {"t": 0.5, "kind": "assistant_say", "text": LONG_SAY}
    (folder / "script.jsonl").write_text(json.dumps(say) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = tandem(
        env,
        "eval",
        "duplex",
        "--live",
        str(folder.parent),
        "--json",
        "--threads",
        "2",
        "--keep",
        str(tmp_path / "keep"),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (outcome,) = result["scenarios"]
    assert not outcome.get("failed"), outcome
    assert outcome["align_quality"] > 0.9
    assert outcome["typed_at"] and abs(outcome["typed_at"][0] - 0.5) < 0.1
    # The forced utterance reached the virtual speaker and was recorded from it.
    first = outcome["assistant_audio"][0]
    assert 0.5 < first[0] < 2.5 and first[1] > 1.5, outcome
    assert outcome["stop_time"] is not None and result["interrupt"]["n"] == 1
    assert result["provenance"]["mode"] == "live"
    kept = tmp_path / "keep" / "interrupt-0"
    assert (kept / "recording.wav").exists() and "/say" in (kept / "stdout.txt").read_text()


class _Stub:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


@pytest.mark.parametrize(
    ("argv", "patches", "mode"),
    [
        (["eval", "asr", "DIR", "--json"], {"engine.hearing.asr.Recognizer": _Stub}, "replay"),
        (["eval", "vad", "DIR", "--json"], {"engine.hearing.vad.SileroVad": _Stub}, "replay"),
        (["eval", "duplex", "DIR", "--json"], {}, "replay"),
        (["bench", "session", "--json"], {}, "bench"),
        (["bench", "tts", "--json"], {}, "bench"),
        (["bench", "control", "--json", "--no-onset"], {}, "live"),
    ],
)
def test_every_measurement_json_carries_its_provenance(
    argv: list[str],
    patches: dict[str, Any],
    mode: str,
    *,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands' own figures are stubbed; what is checked is the wiring: every JSON
    keeps its fields and gains one ``provenance`` object."""
    import app.cli
    from engine.eval import asr_vad, bench, bench_control, bench_tts

    figures = {"figure": 1.0, "n_threads": 2, "scenarios": []}
    monkeypatch.setattr(asr_vad, "eval_asr", lambda *a, **k: figures)
    monkeypatch.setattr(asr_vad, "eval_vad", lambda *a, **k: figures)
    monkeypatch.setattr(bench, "bench_session", lambda *a, **k: figures)
    monkeypatch.setattr(bench_tts, "bench_tts", lambda *a, **k: figures)
    monkeypatch.setattr(bench_control, "bench_control", lambda *a, **k: figures)
    monkeypatch.setattr(app.cli, "_replay_duplex", lambda *a, **k: figures)
    for target, value in patches.items():
        monkeypatch.setattr(target, value)
    scenario(tmp_path, "turn-0", {"task": "turn"})
    assert app.cli.main([str(tmp_path) if x == "DIR" else x for x in argv]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["figure"] == 1.0  # the command's own fields, unchanged
    assert out["provenance"]["mode"] == mode and out["provenance"]["commit"]
