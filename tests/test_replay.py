"""Scenario folders: validation, and the real engine replaying them deterministically."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from app.cli import main
from engine.errors import ScenarioError
from engine.eval.replay import load_scenario


def write_wav(path: Path, seconds: float, rate: int = 48_000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))


def scenario(tmp_path: Path, lines: list[str] | None, seconds: float | None = 3.0) -> Path:
    root = tmp_path / "sc"
    root.mkdir(exist_ok=True)
    if seconds is not None:
        write_wav(root / "mic.wav", seconds)
    if lines is not None:
        (root / "script.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_the_mic_recording_sets_the_length_at_any_sample_rate(tmp_path: Path) -> None:
    sc = load_scenario(scenario(tmp_path, None, seconds=3.0))
    assert sc.duration == pytest.approx(3.0) and sc.mic_rate == 48_000


def test_script_items_become_frames_and_controls(tmp_path: Path) -> None:
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "frames").mkdir()
    (tmp_path / "sc" / "frames" / "0001.png").write_bytes(b"png")  # the screen lane is later
    lines = [
        '{"t": 0.0, "kind": "focus", "app": "code", "title": "a.py"}',
        '{"t": 1.0, "kind": "type", "text": "hi"}',
        '{"t": 1.5, "kind": "screen", "image": "frames/0001.png"}',
        '{"t": 2.0, "kind": "assistant_say", "text": "hello"}',
        '{"t": 2.5, "kind": "mute", "on": true}',
    ]
    sc = load_scenario(scenario(tmp_path, lines))
    kinds = [
        type(i.frame).__name__ if i.frame else (i.control.kind.value if i.control else "screen")
        for i in sc.items
    ]
    assert kinds == ["FocusChange", "TypedText", "screen", "force_say", "mute"]


BAD = [
    (['{"t": 1.0, "kind": "type"'], "not JSON"),
    (["[1, 2]"], "expected a JSON object"),
    (['{"t": 1.0, "kind": "dance"}'], "unknown kind"),
    (['{"t": -1, "kind": "type", "text": "x"}'], "'t' must be"),
    (['{"t": true, "kind": "type", "text": "x"}'], "'t' must be"),
    (['{"t": 1.0, "kind": "type", "text": 5}'], "needs a string 'text'"),
    (['{"t": 1.0, "kind": "mute", "on": "yes"}'], "boolean 'on'"),
    (
        ['{"t": 2.0, "kind": "type", "text": "a"}', '{"t": 1.0, "kind": "type", "text": "b"}'],
        "sorted",
    ),
    (['{"t": 1.0, "kind": "screen", "image": "../../etc/passwd"}'], "inside the scenario folder"),
    (['{"t": 1.0, "kind": "screen", "image": "/etc/passwd"}'], "inside the scenario folder"),
    (['{"t": 1.0, "kind": "screen", "image": "frames/missing.png"}'], "not found"),
]


@pytest.mark.parametrize(("lines", "message"), BAD, ids=[m for _, m in BAD])
def test_malformed_scripts_name_the_problem(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as err:
        load_scenario(scenario(tmp_path, lines))
    if "JSON" in message or "kind" in message:
        assert "script.jsonl:1" in str(err.value)


def test_a_bad_wav_or_an_empty_folder_is_explained(tmp_path: Path) -> None:
    root = scenario(tmp_path, None, seconds=None)
    with pytest.raises(ScenarioError, match=r"needs mic\.wav"):
        load_scenario(root)
    (root / "mic.wav").write_bytes(b"ID3\x04 this is an mp3")
    with pytest.raises(ScenarioError, match="not a PCM WAV"):
        load_scenario(root)
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nowhere")


def test_replay_command_is_deterministic_with_the_real_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = scenario(
        tmp_path,
        [
            '{"t": 0.0, "kind": "focus", "app": "code", "title": "parser.py"}',
            '{"t": 1.0, "kind": "type", "text": "how do I reverse a list in python?"}',
            '{"t": 6.0, "kind": "assistant_say", "text": "Let me walk you through it"}',
            '{"t": 6.5, "kind": "mute", "on": true}',
        ],
        seconds=8.0,
    )
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for out in outs:
        assert main(["replay", str(root), "--out", str(out), "--json", "--threads", "2"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["ticks"] == 40
    a, b = (o.read_text() for o in outs)
    assert a == b
    events = [json.loads(line) for line in a.splitlines()]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert sum(e["lane"] == "tick" for e in events) == 40
    speak = [e for e in events if e["lane"] == "model" and e["decision"] in ("speak", "handoff")]
    assert speak and speak[0]["t"] == 1.0
    starts = [e for e in events if e["lane"] == "speech" and e["kind"] == "start"]
    assert starts[0]["text"] and 1.0 <= starts[0]["t"] <= 2.0
    assert {
        "t": 6.5,
        "lane": "permission",
        "kind": "revoke",
        "sense_or_tool": "microphone",
        "decision": "deny",
    } in events


def test_speech_out_is_the_assistants_track_on_the_timeline(tmp_path: Path) -> None:
    import numpy as np

    from engine.core import audio

    root = scenario(
        tmp_path,
        [
            '{"t": 1.0, "kind": "assistant_say", "text": "Let me walk you through the parser."}',
            '{"t": 2.0, "kind": "mute", "on": true}',
        ],
        seconds=5.0,
    )
    out, wav = tmp_path / "t.jsonl", tmp_path / "speech.wav"
    assert (
        main(["replay", str(root), "--out", str(out), "--speech-out", str(wav), "--threads", "2"])
        == 0
    )
    track = audio.load_mono16k(wav)
    assert len(track) == 5 * audio.RATE  # as long as mic.wav
    events = [json.loads(line) for line in out.read_text().splitlines()]
    start = next(e for e in events if e["lane"] == "speech" and e["kind"] == "start")
    stop = next(e for e in events if e["lane"] == "speech" and e["kind"] == "stop")
    # the first sample waits for the first sentence's (modelled) synthesis
    assert 1.0 < start["t"] < 1.3 and stop["reason"] == "done"
    loud = np.nonzero(np.abs(track) > 0.01)[0] / audio.RATE
    assert loud[0] == pytest.approx(start["t"], abs=0.1)  # audio starts when the timeline says
    assert loud[-1] <= stop["t"] + 0.05  # and is over when it says it stopped
