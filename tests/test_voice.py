"""Speech synthesis and the assistant's audio track; child processes that misbehave."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from engine.core import audio
from engine.core.processes import Child, ProcessError, run
from engine.errors import ModelFileError
from engine.hearing.asr import Recognizer
from engine.model.registry import PIPER_VOICE, embedded_path
from engine.voice import piper
from engine.voice.piper import PiperVoice, chunks, phoneme_ids
from engine.voice.playback import PlayedSpeech, VoicedSpeech
from engine.voice.synthesis import (
    Espeak,
    EspeakSynthesizer,
    PiperSynthesizer,
    Synthesizer,
    default_synthesizer,
    sentences,
)


@pytest.fixture(scope="module")
def espeak_voice() -> Iterator[EspeakSynthesizer]:
    synth = EspeakSynthesizer()
    yield synth
    synth.close()


@pytest.fixture(scope="module")
def piper_voice() -> Iterator[PiperSynthesizer]:
    synth = PiperSynthesizer()
    yield synth
    synth.close()


@pytest.fixture(scope="module")
def asr() -> Recognizer:
    return Recognizer(threads=2)


def test_replies_are_split_into_sentences() -> None:
    assert sentences("Sure. Let me look!  Then we run it? ok") == [
        "Sure.",
        "Let me look!",
        "Then we run it?",
        "ok",
    ]
    assert sentences("   ") == []


def test_a_long_sentence_is_synthesised_clause_by_clause() -> None:
    long = "So the parser reads one token at a time, and when it sees a bracket it pushes a frame."
    assert sentences(long) == [
        "So the parser reads one token at a time,",
        "and when it sees a bracket it pushes a frame.",
    ]
    assert sentences("Yes, run it.") == ["Yes, run it."]  # short: one piece


def test_espeak_speaks_and_text_is_never_an_option(espeak_voice: EspeakSynthesizer) -> None:
    x = espeak_voice.synthesize("--help")  # read aloud, not taken as a command-line option
    assert len(x) > audio.RATE * 0.2 and np.abs(x).max() > 0.05


def test_an_interrupted_utterance_is_cut_in_the_track(espeak_voice: EspeakSynthesizer) -> None:
    speech = VoicedSpeech(espeak_voice)
    handle = speech.say("One two three four five six seven eight nine ten.", 1.0)
    full = handle.end_t - handle.start_t
    assert full > 1.5
    handle.interrupt(1.5)
    track = speech.render(6.0)
    loud = np.nonzero(np.abs(track) > 0.01)[0] / audio.RATE
    assert loud[0] >= 1.0 and loud[-1] <= 1.5 + 1e-3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-program-xyz"], "is not installed"),
        (["sh", "-c", "echo bad >&2; exit 3"], "failed with status 3: bad"),
        (["sleep", "5"], "ran past"),
    ],
)
def test_child_processes_fail_clearly(argv: list[str], message: str) -> None:
    with pytest.raises(ProcessError, match=message):
        run(argv, timeout_s=0.5)


def test_the_echo_gate_takes_the_echo_but_not_the_user(espeak_voice: EspeakSynthesizer) -> None:
    from engine.hearing.echo import EchoGate

    ref = espeak_voice.synthesize("Let me walk you through the parser step by step.")
    other = EspeakSynthesizer(voice="en+f3")  # British English, female
    user = other.synthesize("Wait, stop, that is wrong.")
    other.close()
    delay = int(0.12 * audio.RATE)
    mic = np.zeros(len(ref) + delay, dtype=np.float32)
    mic[delay:] += 0.5 * ref  # the room sends the assistant's voice back, 120 ms late
    near = np.zeros_like(mic)  # the user's own voice, starting 0.5 s in
    near[8000 : 8000 + len(user)] = user[: len(mic) - 8000]

    def flagged(m: np.ndarray, loud: np.ndarray) -> float:
        gate, out = EchoGate(), []
        for i in range(0, len(m) - 512, 512):
            gate.feed_reference(
                ref[i : i + 512] if i + 512 <= len(ref) else np.zeros(512, np.float32)
            )
            if np.abs(loud[i : i + 512]).max() > 0.1:
                out.append(gate.is_echo(m[i : i + 512]))
        return float(np.mean(out))

    assert flagged(mic, mic) > 0.95  # the echo alone is taken for echo
    assert flagged(mic + near, near) < 0.5  # where the user talks over it, mostly not (0.43)


def test_a_silent_reference_explains_no_user_word(espeak_voice: EspeakSynthesizer) -> None:
    """After a barge-in flushed the speaker, the reference is the assistant's last words and
    then silence: the user's words must pass (their correlation once reached 22-139)."""
    from engine.hearing.echo import EchoGate

    said = espeak_voice.synthesize("So the parser reads one token at a time.")
    other = EspeakSynthesizer(voice="en+f3")
    user = other.synthesize("Wait, which parser do you mean?")
    other.close()
    # What the speaker played, as the listener feeds it: 20 ms blocks at the device's rate,
    # resampled to 16 kHz; the last words, then the silence of the flushed speaker.
    played = soxr.resample(said[-int(0.5 * audio.RATE) :], audio.RATE, 44_100)
    played = np.concatenate([played, np.zeros(3 * 44_100, np.float32)]).astype(np.float32)
    to_16k = soxr.ResampleStream(44_100, audio.RATE, 1, dtype="float32")
    gate, corr, fed = EchoGate(), [], 0
    for i in range(0, len(user) - 512, 512):
        while fed < i + 512:  # the reference keeps pace with the microphone
            block, played = played[:882], played[882:]
            fed += len(gate_in := to_16k.resample_chunk(block))
            gate.feed_reference(gate_in)
        if np.abs(user[i : i + 512]).max() > 0.1:
            corr.append(gate.correlation(user[i : i + 512]))
    assert len(corr) > 10 and all(0.0 <= c <= 1.0 for c in corr), max(corr)
    assert not any(c >= gate.threshold for c in corr), max(corr)
    gate.feed_reference(np.zeros(16_000, np.float32))  # nothing played for a while
    assert not gate.active and gate.correlation(user[4000:4512]) == 0.0


# The natural voice and its fallback, heard back by the project's own recogniser.


@pytest.mark.parametrize("voice", ["piper", "espeak"])
def test_each_voice_is_understood_by_the_recogniser(
    voice: str,
    piper_voice: PiperSynthesizer,
    espeak_voice: EspeakSynthesizer,
    asr: Recognizer,
) -> None:
    synth: Synthesizer = piper_voice if voice == "piper" else espeak_voice
    x = synth.synthesize(
        "Please open the terminal and run the tests again. "
        "The function returns zero when the list is empty."
    )
    assert x.dtype == np.float32 and len(x) > audio.RATE and 0.1 < np.abs(x).max() <= 1.0
    heard = asr.transcribe(x).text.lower()
    for word in ("open", "terminal", "test", "function", "return", "zero", "list", "empty"):
        assert word in heard, heard


def test_piper_is_the_default_voice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="engine.voice.synthesis"):
        synth = default_synthesizer()
    assert isinstance(synth, PiperSynthesizer)
    synth.close()
    assert "voice: piper" in caplog.text


def test_a_missing_piper_voice_falls_back_to_espeak(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(piper, "embedded_path", lambda model: tmp_path / "gone.onnx")
    with caplog.at_level(logging.INFO, logger="engine.voice.synthesis"):
        synth = default_synthesizer()
    assert isinstance(synth, EspeakSynthesizer)
    assert len(synth.synthesize("Still talking.")) > audio.RATE // 4
    synth.close()
    (record,) = [r for r in caplog.records if r.name == "engine.voice.synthesis"]
    assert "fallback" in record.getMessage() and "not found" in record.getMessage()
    assert "\n" not in record.getMessage() and "talking" not in caplog.text


def test_a_corrupt_voice_file_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "en_US-joe-medium.onnx"
    shutil.copy(embedded_path(PIPER_VOICE), bad)
    with bad.open("r+b") as f:  # flip a few bytes in the middle of the weights
        f.seek(1_000_000)
        chunk = f.read(16)
        f.seek(1_000_000)
        f.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(ModelFileError, match=r"piper voice file failed its SHA-256 check"):
        PiperVoice(bad, sha256=PIPER_VOICE.sha256)
    monkeypatch.setattr(piper, "embedded_path", lambda model: bad)
    with pytest.raises(ModelFileError, match=r"piper voice file failed its SHA-256 check"):
        PiperVoice()


def test_a_malformed_voice_config_is_a_model_file_error(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"")
    (tmp_path / "voice.onnx.json").write_text('{"audio": {}}')
    with pytest.raises(ModelFileError, match="config is unreadable"):
        PiperVoice(model)


# Phonemes to ids, as piper does it.

ID_MAP = {"_": [0], "^": [1], "$": [2], " ": [3], "h": [20], "i": [21], "c": [16], "\u0327": [140]}


def test_ids_are_start_then_each_phoneme_and_a_pad_then_end() -> None:
    assert phoneme_ids("hi", ID_MAP) == ([1, 20, 0, 21, 0, 2], 0)
    assert phoneme_ids("", ID_MAP) == ([1, 2], 0)


def test_phonemes_are_decomposed_before_lookup() -> None:
    assert phoneme_ids("\u00e7", ID_MAP) == ([1, 16, 0, 140, 0, 2], 0)  # ç = c + cedilla


def test_unknown_phonemes_are_skipped_and_counted() -> None:
    assert phoneme_ids("h☃i☃", ID_MAP) == ([1, 20, 0, 21, 0, 2], 2)


def test_unknown_phonemes_are_logged_as_a_count_only(
    piper_voice: PiperSynthesizer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="engine.voice.piper"):
        x = piper_voice.voice.speak("həlˈoʊ☃.")
    assert len(x) > 0
    assert "skipped 1 phonemes" in caplog.text and "☃" not in caplog.text


def test_long_phoneme_runs_are_cut_at_words() -> None:
    text = " ".join(["abcde"] * 200)
    pieces = chunks(text, limit=64)
    assert all(len(p) <= 64 for p in pieces) and " ".join(pieces) == text
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert chunks("x" * 130, limit=64) == ["x" * 64, "x" * 64, "xx"]
    assert chunks("") == []


def test_phonemes_keep_clause_marks_and_split_sentences(piper_voice: PiperSynthesizer) -> None:
    said = piper_voice.espeak.phonemes("Hello, world. Is it done? Yes: ship it!")
    assert len(said) == 3
    assert ", " in said[0] and said[0].endswith(".")
    assert said[1].endswith("?") and said[2].endswith("!") and ": " in said[2]
    dotted = piper_voice.espeak.phonemes("version 3.14 of file.py")
    assert len(dotted) == 1 and not dotted[0].endswith(".")  # a dot inside a word ends nothing


# Hostile text: data for espeak, never options; never a crash; nothing means no audio.

HOSTILE = [
    "--help",
    "-v de -w /tmp/x.wav",
    "\"quoted\" and 'single' `back`",
    "back\\slash \\n \\x00",
    "line one\nline two\r\n\ttab",
    "nul\x00byte",
    "naïve café, 日本語, Привет",
    "😀🎉👍",
    "lone \ud800 surrogate",
    "<speak>ssml</speak> [[h@l'oU]] %s {0}",
    "...",
    "\\" * 10_000,
]


@pytest.mark.parametrize("voice", ["piper", "espeak"])
def test_hostile_text_is_spoken_or_skipped_never_a_crash(
    voice: str, piper_voice: PiperSynthesizer, espeak_voice: EspeakSynthesizer
) -> None:
    synth = piper_voice if voice == "piper" else espeak_voice
    pid = synth.espeak.child.pid
    for text in HOSTILE:
        x = synth.synthesize(text)
        assert x.dtype == np.float32 and np.isfinite(x).all(), repr(text[:20])
    assert len(synth.synthesize("--help")) > audio.RATE // 5  # read aloud, not an option
    for empty in ("", "   ", "\n\t "):
        assert len(synth.synthesize(empty)) == 0
    assert synth.espeak.child.pid == pid  # the same child answered everything


def test_ten_thousand_characters_are_fine(espeak_voice: EspeakSynthesizer) -> None:
    phonemes = espeak_voice.espeak.phonemes("word " * 2_000)
    assert sum(len(p) for p in phonemes) > 10_000
    assert len(espeak_voice.synthesize("a" * 10_000)) > 10 * audio.RATE


# The child program: restarted when it dies, a clear error when it cannot go on.


@pytest.mark.timeout(60)
def test_a_killed_espeak_child_is_restarted(piper_voice: PiperSynthesizer) -> None:
    child = piper_voice.espeak.child
    old = child.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while child.pid is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    x = piper_voice.synthesize("Still here.")
    assert len(x) > audio.RATE // 4
    assert child.pid not in (None, old)


def _helper(body: str, name: str = "helper") -> Child:
    return Child([sys.executable, "-c", body], name=name, start_timeout_s=5.0)


GREET = "import sys; print('{\"ready\": true}', flush=True); "


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GREET + "sys.stdin.readline(); sys.exit(3)", r"helper died twice in a row \(status 3"),
        (GREET + "import time; time.sleep(30)", r"helper did not answer within 0.5 s"),
        (GREET + "sys.stdin.readline(); print('not json', flush=True)", "not JSON"),
        (GREET + 'sys.stdin.readline(); print(\'{"error": "no"}\', flush=True)', "helper: no"),
        ('print(\'{"error": "no data"}\')', "helper could not start: no data"),
        ("import sys; sys.exit(4)", r"helper exited while starting \(status 4"),
    ],
)
def test_a_misbehaving_helper_fails_clearly_never_hangs(body: str, message: str) -> None:
    child = _helper(body)
    try:
        with pytest.raises(ProcessError, match=message):
            child.request({"op": "x"}, timeout_s=0.5)
    finally:
        child.close()


@pytest.mark.timeout(30)
def test_a_helper_that_dies_mid_request_is_started_again(tmp_path: Path) -> None:
    marker = tmp_path / "died-once"
    body = GREET + (
        f"import os; l = sys.stdin.readline(); m = {str(marker)!r}\n"
        "if not os.path.exists(m): open(m, 'w').close(); os._exit(9)\n"
        "print(l, end='', flush=True)"
    )
    child = _helper(body)
    try:
        assert child.request({"n": 7}) == {"n": 7}
        assert marker.exists()  # the first child died on the request; a second one answered
    finally:
        child.close()


def test_a_missing_helper_program_fails_clearly() -> None:
    child = Child(["/no/such/program"], name="helper")
    with pytest.raises(ProcessError, match="helper could not start"):
        child.start()


def test_a_helper_serves_many_requests_in_one_process() -> None:
    echo = GREET + "import json\nfor l in sys.stdin: print(json.dumps(json.loads(l)), flush=True)"
    child = _helper(echo)
    try:
        child.start()
        pid = child.pid
        assert [child.request({"n": i})["n"] for i in range(5)] == list(range(5))
        assert child.pid == pid
    finally:
        child.close()
    assert child.pid is None


def test_espeak_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.voice.synthesis

    monkeypatch.setattr(engine.voice.synthesis, "ESPEAK_PACKAGE", "no_such_espeak_package")
    with pytest.raises(ModelFileError, match=r"espeakng-loader==0\.2\.4"):
        Espeak()


def test_bench_tts_reports_every_voice(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.cli import main

    assert main(["bench", "tts", "--json", "--runs", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["voices"]) == {"piper_1_thread", "piper_2_threads", "espeak"}
    for figures in result["voices"].values():
        assert figures["load_ms"] > 0 and figures["first_audio_ms"] > 0 and figures["rtf"] > 0


class _Speaker:
    """Records what is queued (the real Speaker needs a device: tests/test_devices.py)."""

    rate = 16_000

    def __init__(self) -> None:
        self.queued: list[int] = []

    def play(self, samples: np.ndarray) -> float:
        self.queued.append(len(samples))
        return len(samples) / self.rate

    def flush(self) -> None:
        self.queued.clear()

    @property
    def queued_s(self) -> float:
        return sum(self.queued) / self.rate  # nothing drains: as if just queued

    latency_s = 0.06


class _SlowSynth:
    """Half a second of audio per sentence; the later sentences wait for ``go``."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.calls = 0

    def synthesize(self, text: str) -> np.ndarray:
        self.calls += 1
        if self.calls > 1:
            self.go.wait(5)
        return np.full(8000, 0.1, dtype=np.float32)

    def synthesis_s(self, seconds_of_audio: float) -> float:
        return 0.05


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_played_speech_plays_the_first_sentence_and_streams_the_rest() -> None:
    synth, speaker = _SlowSynth(), _Speaker()
    voice = PlayedSpeech(synth, speaker)  # type: ignore[arg-type]
    handle = voice.say("One. Two. Three.", 10.0)  # returns at once: the voice thread works
    assert wait_for(lambda: len(speaker.queued) == 1)
    assert handle.start_t >= 10.06  # after the output stream's latency
    assert handle.end_t - handle.start_t == pytest.approx(0.5)  # the first sentence, playing
    synth.go.set()
    assert wait_for(lambda: len(speaker.queued) == 3)
    # Each later clause starts after the audio queued ahead of it: the three play back to back.
    assert wait_for(lambda: handle.end_t - handle.start_t == pytest.approx(1.5, abs=0.05))
    assert handle.said_until(handle.start_t + 0.75) == "One."  # half-way through "Two."
    assert handle.rest_after(handle.start_t + 0.75) == "Two. Three."
    voice.close()


def test_interrupting_played_speech_cancels_what_is_not_synthesised() -> None:
    synth, speaker = _SlowSynth(), _Speaker()
    voice = PlayedSpeech(synth, speaker)  # type: ignore[arg-type]
    handle = voice.say("One. Two. Three.", 10.0)
    assert wait_for(lambda: len(speaker.queued) == 1)
    handle.interrupt(handle.start_t + 0.2)
    synth.go.set()
    voice.close()
    assert speaker.queued == [] and handle.stop_reason == "interrupted"


def test_a_prepared_first_sentence_is_not_synthesised_again() -> None:
    synth, speaker = _SlowSynth(), _Speaker()
    voice = PlayedSpeech(synth, speaker)  # type: ignore[arg-type]
    voice.prepare("One.", 9.0)
    voice.say("One.", 10.0)
    assert wait_for(lambda: len(speaker.queued) == 1)
    voice.close()
    assert synth.calls == 1
