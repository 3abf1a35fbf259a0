"""Smart Turn: features against a slow reference, the model on real speech, errors, fusion."""

from __future__ import annotations

import math
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ModelFileError
from engine.hearing import smart_turn
from engine.hearing.endpoint import HEARD_CLEARLY, fuse
from engine.hearing.smart_turn import (
    N_FFT,
    N_FRAMES,
    N_MELS,
    N_SAMPLES,
    RATE,
    ModeledSmartTurn,
    SmartTurn,
    ThreadedSmartTurn,
    TurnScore,
    TurnScorer,
    last_window,
    log_mel,
    mel_filterbank,
)
from tests.conftest import EVALDATA


def _installed() -> bool:
    try:
        metadata.distribution(smart_turn.SMART_TURN_DIST)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_model = pytest.mark.skipif(
    not _installed(), reason="pipecat-ai is not installed (make install does it)"
)
needs_evaldata = pytest.mark.skipif(not EVALDATA.is_dir(), reason="../shared/evaldata is not here")


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonics with a moving pitch and a syllable envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None)
    return (0.2 * voiced * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


# --- the reference: the same formulas, written out one element at a time -------------------


def _ref_hz_to_mel(f: float) -> float:
    return 3.0 * f / 200.0 if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)


def _ref_mel_to_hz(m: float) -> float:
    return 200.0 * m / 3.0 if m < 15.0 else 1000.0 * math.exp(math.log(6.4) * (m - 15.0) / 27.0)


def _ref_filterbank() -> np.ndarray:
    top = _ref_hz_to_mel(RATE / 2)
    edges = [_ref_mel_to_hz(top * i / (N_MELS + 1)) for i in range(N_MELS + 2)]
    bins = [RATE / 2 * k / (N_FFT // 2) for k in range(N_FFT // 2 + 1)]
    bank = np.zeros((len(bins), N_MELS))
    for m in range(N_MELS):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(bins):
            if lo < f < hi:
                tri = (f - lo) / (centre - lo) if f <= centre else (hi - f) / (hi - centre)
                bank[k, m] = tri * 2.0 / (hi - lo)
    return bank


def _ref_log_mel(audio: np.ndarray) -> np.ndarray:
    x = np.zeros(N_SAMPLES, dtype=np.float32)  # last 8 s, zeros in front
    tail = audio[-N_SAMPLES:].astype(np.float32)
    x[N_SAMPLES - len(tail) :] = tail
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    half = N_FFT // 2
    padded = np.empty(N_SAMPLES + 2 * half)
    for i in range(len(padded)):  # reflect without repeating the edge, as torch.stft
        j = i - half
        padded[i] = x[-j] if j < 0 else x[2 * (N_SAMPLES - 1) - j] if j >= N_SAMPLES else x[j]
    n = np.arange(N_FFT)
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / N_FFT) for i in range(N_FFT)])
    k = np.arange(N_FFT // 2 + 1)[:, None]
    cos, sin = np.cos(2 * np.pi * k * n / N_FFT), np.sin(2 * np.pi * k * n / N_FFT)
    bank = _ref_filterbank()
    out = np.empty((N_MELS, N_FRAMES))
    for frame in range(N_FRAMES):  # the 801st frame is dropped
        seg = padded[frame * 160 : frame * 160 + N_FFT] * window
        power = (cos @ seg) ** 2 + (sin @ seg) ** 2
        out[:, frame] = np.log10(np.maximum(1e-10, bank.T @ power))
    out = np.maximum(out, out.max() - 8.0)
    return (out + 4.0) / 4.0


def test_the_filterbank_is_slaneys() -> None:
    bank = mel_filterbank()
    assert bank.shape == (N_FFT // 2 + 1, N_MELS)
    np.testing.assert_allclose(bank, _ref_filterbank(), rtol=1e-9, atol=1e-12)
    assert (bank >= 0).all() and (bank.sum(axis=0) > 0).all()  # no empty band
    assert (np.diff(bank.argmax(axis=0)) >= 0).all()  # bands rise with frequency


def test_features_match_the_reference_implementation() -> None:
    audio = _speechlike(3.0)
    mine = log_mel(audio)
    assert mine.shape == (N_MELS, N_FRAMES) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, _ref_log_mel(audio), atol=1e-4)


def test_features_known_values() -> None:
    silence = log_mel(np.zeros(RATE, dtype=np.float32))
    np.testing.assert_array_equal(silence, np.full((N_MELS, N_FRAMES), -1.5, np.float32))
    speech = log_mel(_speechlike(5.0))
    assert speech.max() - speech.min() <= 2.0 + 1e-6  # 8 log10 units, divided by 4
    np.testing.assert_allclose(log_mel(_speechlike(5.0) * 7), speech, atol=1e-4)  # normalised
    t = np.arange(2 * RATE) / RATE
    tone = log_mel(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32))
    edges = [_ref_mel_to_hz(_ref_hz_to_mel(8000) * i / (N_MELS + 1)) for i in range(N_MELS + 2)]
    band = int(np.argmin([abs(c - 1000.0) for c in edges[1:-1]]))
    assert abs(int(tone[:, -50].argmax()) - band) <= 1


def test_the_last_eight_seconds_padded_at_the_start() -> None:
    short = _speechlike(2.0)
    window = last_window(short)
    assert len(window) == N_SAMPLES
    assert not window[: N_SAMPLES - len(short)].any()
    np.testing.assert_array_equal(window[-len(short) :], short)
    long = _speechlike(11.0, seed=1)
    np.testing.assert_array_equal(log_mel(long), log_mel(long[-N_SAMPLES:]))


# --- the file: one clear error ---------------------------------------------------------------


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        SmartTurn(tmp_path / "smart-turn.onnx")


def test_a_corrupt_file_fails_its_checksum(tmp_path: Path) -> None:
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"\x08\x07not an onnx model")
    with pytest.raises(ModelFileError, match="SHA-256"):
        SmartTurn(bad)
    with pytest.raises(ModelFileError, match="cannot load the Smart Turn model"):
        SmartTurn(bad, sha256=None)


def test_a_missing_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smart_turn, "SMART_TURN_DIST", "pipecat-ai-is-not-installed")
    with pytest.raises(ModelFileError, match=r"installers/smart-turn\.txt"):
        SmartTurn()


def test_pipecat_is_never_imported() -> None:
    import sys

    assert not any(m == "pipecat" or m.startswith("pipecat.") for m in sys.modules)


# --- the model on real speech ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn()


@needs_model
def test_the_model_loads_and_scores_a_probability(model: SmartTurn) -> None:
    p = model.predict(_speechlike(2.0))
    assert 0.0 <= p <= 1.0


@needs_model
@needs_evaldata
def test_a_finished_sentence_sounds_finished_and_a_cut_one_does_not(model: SmartTurn) -> None:
    import soundfile as sf

    # "Mr. Quilter is the apostle of the middle classes and we are glad to welcome his gospel."
    audio, rate = sf.read(EVALDATA / "asr" / "leopard_test.wav", dtype="float32")
    assert rate == RATE
    room = audio[: int(0.2 * RATE)]  # the quiet before the first word (it starts at 0.54 s)
    finished = model.predict(audio)
    after_we = model.predict(np.concatenate([audio[: int(3.67 * RATE)], room]))
    after_the = model.predict(np.concatenate([audio[: int(1.62 * RATE)], room]))
    assert finished > 0.8, finished
    assert after_we < 0.4 and after_the < 0.4, (after_we, after_the)


# --- runners: the same contract, live and replayed ----------------------------------------------


class FakeModel:
    """Scores by length: 1 s of audio is 0.5 (and remembers the thread it ran on)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.threads: set[str] = set()

    def predict(self, audio_16k: np.ndarray) -> float:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(5)
        return min(1.0, len(audio_16k) / (2 * RATE))


@pytest.mark.parametrize("kind", ["threaded", "modeled"])
def test_scorer_contract(kind: str) -> None:
    fake = FakeModel()
    scorer: TurnScorer = (
        ThreadedSmartTurn(lambda: fake) if kind == "threaded" else ModeledSmartTurn(fake)
    )
    scorer.submit(7, np.zeros(RATE, dtype=np.float32), t=2.0)
    scorer.close()
    (score,) = scorer.results()
    assert score.job == 7 and score.complete == 0.5
    assert scorer.results() == []


def test_the_thread_owns_the_model_and_keeps_only_the_latest_job() -> None:
    gate = threading.Event()
    fake = FakeModel(gate)
    made: list[str] = []

    def factory() -> FakeModel:
        made.append(threading.current_thread().name)
        return fake

    scorer = ThreadedSmartTurn(factory)
    scorer.submit(1, np.zeros(RATE, dtype=np.float32), 0.0)  # running, held at the gate
    deadline = threading.Event()
    while not fake.threads and not deadline.wait(0.01):
        pass
    scorer.submit(2, np.zeros(RATE, dtype=np.float32), 0.1)  # waits ...
    scorer.submit(3, np.zeros(2 * RATE, dtype=np.float32), 0.2)  # ... and is replaced
    gate.set()
    scorer.close()
    assert [s.job for s in scorer.results()] == [1, 3]
    assert scorer.dropped == 1
    assert made == ["tandem-turn"] and fake.threads == {"tandem-turn"}


def test_a_model_that_cannot_load_stops_the_thread_with_its_error() -> None:
    def broken() -> FakeModel:
        raise ModelFileError("Smart Turn file not found: x")

    with pytest.raises(ModelFileError, match="not found"):
        ThreadedSmartTurn(broken)


def test_replay_times_results_as_the_thread_would() -> None:
    scorer = ModeledSmartTurn(FakeModel(), latency_s=0.1)
    scorer.submit(1, np.zeros(RATE, dtype=np.float32), t=1.0)
    scorer.submit(2, np.zeros(RATE, dtype=np.float32), t=1.05)  # queued behind job 1
    assert scorer.results() == [TurnScore(1, 0.5, 1.1), TurnScore(2, 0.5, 1.2)]


# --- fusion -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "prosody", "lm", "expected"),
    [
        (0.9, None, None, 0.9),  # nothing else: today's completeness, unchanged
        (0.6, None, None, 0.6),
        (0.9, 0.99, None, pytest.approx((0.45 + 1.0) / 1.5)),  # both finished: answer soon
        (0.9, 0.92, None, pytest.approx((0.45 + 0.25) / 1.5)),  # a content-word cut: wait
        (0.9, 0.04, None, 0.3),  # "He was not." sounds unfinished: hold the turn
        (0.2, 0.99, None, 0.2),  # ends on "the": the words hold it, whatever the pitch
        (0.9, None, 0.0, pytest.approx(0.45)),  # the model finds the words unfinished: hold
        (0.9, None, 0.3, 0.9),  # sure they are over: it never hands the turn over alone
        (0.9, 0.99, 0.02, pytest.approx((0.45 + 1.0) / 2.0)),  # "He was not": the model doubts
        (0.9, 0.99, 0.9, pytest.approx((0.45 + 1.0) / 1.5)),  # agreeing changes nothing
        (0.6, 0.9, 0.175, pytest.approx(0.3 / 1.5)),  # halfway for the model: above the rest
        (1.5, -0.3, None, pytest.approx(0.5 / 1.5)),  # out of range: clamped
        (0.8, math.nan, None, 0.8),  # a failed score is no score
    ],
)
def test_fuse(words: float, prosody: float | None, lm: float | None, expected: float) -> None:
    assert fuse(words, prosody, lm) == expected


def test_fuse_is_monotonic_in_each_signal() -> None:
    grid = [0.0, 0.3, 0.7, 1.0]
    for a in grid:
        for b in grid:
            row = [fuse(a, b, c) for c in grid]
            assert row == sorted(row)
            assert [fuse(a, c, b) for c in grid] == sorted(fuse(a, c, b) for c in grid)
            assert [fuse(c, a, b) for c in grid] == sorted(fuse(c, a, b) for c in grid)


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (None, pytest.approx((0.45 + 1.0) / 1.5)),  # the recogniser said nothing: as before
        (0.8, pytest.approx((0.45 + 1.0) / 1.5)),  # heard clearly: as before
        (HEARD_CLEARLY, pytest.approx((0.45 + 1.0) / 1.5)),
        (0.3, 0.0),  # tiny.en's English for Spanish speech: only the silence ends it
        (math.nan, pytest.approx((0.45 + 1.0) / 1.5)),  # a broken confidence is none
    ],
)
def test_words_heard_unclearly_never_end_a_turn(confidence: float | None, expected: float) -> None:
    assert fuse(0.9, 0.99, 0.9, confidence) == expected
