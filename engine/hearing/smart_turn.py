"""End of turn from how it sounds: Smart Turn v3.2 (pipecat's open model) on onnxruntime.

A pause after "...consider how much" is not the end of a turn, and the words alone often cannot
tell (Whisper writes "...how much." as a sentence). Smart Turn v3.2 (Daily, BSD-2-Clause; a
Whisper-tiny encoder with a linear head, int8, 8.7 MB, 23 languages) hears it: it takes the
last 8 s of 16 kHz audio as an (80, 800) Whisper log-mel and gives P(the turn is complete).

**The file.** ``smart-turn-v3.2-cpu.onnx`` ships inside the ``pipecat-ai==1.14.0`` wheel,
pinned by hash in ``installers/smart-turn.txt`` and installed ``--no-deps``. pipecat is never
imported: the file is found through the distribution's RECORD (``importlib.metadata``) and
checked against ``SMART_TURN_SHA256`` before onnxruntime sees it. Licence:
``assets/licenses/Smart-Turn-v3.2-LICENSE.txt``.

**Features** (``log_mel``): exactly pipecat's ``_whisper_features.py`` (its numpy port of
transformers' ``WhisperFeatureExtractor``) on ``last_window(audio)``, the last 8 s zero-padded
at the *start* as pipecat's ``LocalSmartTurnAnalyzerV3`` does. The step easily missed:
pipecat calls it with ``do_normalize=True``, so the padded waveform is first scaled to zero
mean and unit variance (float32, eps 1e-7). Then a centred STFT (reflect padding by 200
as ``torch.stft(center=True)``, periodic Hann, n_fft 400, hop 160), power, 80 Slaney mel
filters with Slaney area norm over 0-8 kHz, floor 1e-10, log10, the 801st frame dropped,
clamped to max - 8, (x + 4) / 4. Verified by hand once (2026-12-02): bit-identical (max
difference 0.0) to pipecat 1.14.0's function, and within 1.2e-7 of transformers 5.24.0's
``WhisperFeatureExtractor(chunk_length=8)(..., padding="max_length", max_length=128000,
truncation=True, do_normalize=True)`` on speech, noise and silence. (transformers needs no
torch for this, but pulls ~25 packages: it was installed in a throwaway venv, not here.)
``tests/test_smart_turn.py`` checks the features against a slow loop-by-loop implementation
of the same formulas (explicit DFT, per-bin triangles) and known properties.

**Cost here** (2 shared cores, load average 1.5-3.8, 1 thread, 20 calls each): loading
(hash included) 60-80 ms; ``predict`` median 80-83 ms, p90 112-115 ms for 2 s of audio,
87-103 / 108-126 ms for 5 s, 109-120 / 119-138 ms for 8 s. The model always sees 8 s, so
the length does not matter (the spread is the other processes); 10-17 ms of it is features.

**Evaluation** (real speech from ../shared/evaldata/asr: JFK, three LibriVox clips, the three
card commands, both speakers of faster-whisper's stereo file, Leopard's six languages). Each
whole clip (trailing silence trimmed) is compared with the same clip cut mid-sentence (up to
four cuts each) at the quietest 10 ms frame of a word boundary (Leopard's word times; for
Whisper's rough times, the first quiet frame of a real dip); boundaries after sentence-final
punctuation were skipped; both groups get 0.2 s of the clip's own room tone after the cut,
as hearing has ~0.15-0.2 s of quiet when it scores. LibriVox 0880 ("...ill disposed young
man") is labelled unfinished: the book's sentence goes on ("...unless to be rather cold
hearted", clip 0890), and the model heard it (0.04)::

    set                          finished / cut   mean P(complete)   prosody AUC   words AUC
    all                          14 / 51          0.915 / 0.648      0.80          -
    English                       9 / 31          0.875 / 0.572      0.74          0.62
    es, it, ja, ko, pt            5 / 20          0.988 / 0.764      0.96          -

The words' AUC is ``endpoint.completeness`` of Whisper tiny.en's transcript of the same audio
(it often closes a cut with a period: "He was not."). P rises with the quiet appended (mean
cut 0.55 with none, 0.65 with 0.2 s, 0.80 with 0.8 s; AUC 0.79-0.82 throughout): score at
one fixed moment, not whenever. Every cut inside the three-word card commands ("ten of |
clubs") scored above 0.94: on a short command only the words can hold the turn.

**Where it runs.** Not after the recogniser: it is scored at the moment hearing submits the
speculative final (the user quiet for ``pipeline.SPECULATE_AFTER_S``), on the same audio
slice, by ``ThreadedSmartTurn``: its own thread ``tandem-turn``, which creates the session and
is the only one to use it (the hearing thread must keep scoring 32 ms VAD windows; a 0.1 s
call there would delay the voice onset of a user who goes on). onnxruntime and numpy's FFT
release the GIL, so it runs beside Whisper on the other core: ready ~0.1 s after submission,
before the VAD even confirms the stop (0.25 s of quiet) and well before the final transcript
(~0.35 s more). Replay uses ``ModeledSmartTurn``: scored at once, ready ``PREDICT_S`` later,
deterministic. The queue holds one job, latest only (an older quiet stretch is over).

**Fusion** (``endpoint.fuse``): a weighted mean of the signals that are there, so that with none but
the words it returns today's ``completeness`` unchanged. Words 1, prosody 1: on the English
set the fused AUC is flat at 0.73-0.76 for any prosody share from 1/4 to 1 (words alone 0.62,
prosody alone 0.74, equal weights 0.76, the best), and equal weights keep the words' rare but
reliable low values (0.1 for a recogniser-heard break-off, 0.2 after "the") able to hold the
turn against a confident prosody score ("For Queen of...": words 0.1, prosody 0.94, fused
0.52, so the policy waits most of its ``max_wait_s``). The language
model's end-of-utterance probability gets half weight, and may only hold the turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.core.cpu import heavy
from engine.errors import MissingDependencyError, ModelFileError
from engine.model.registry import verified_file

try:
    import onnxruntime
except ImportError as e:  # pragma: no cover - installed by make
    raise MissingDependencyError("onnxruntime is not installed: run `make install`") from e

log = logging.getLogger(__name__)

RATE = 16_000
SECONDS = 8
N_SAMPLES = RATE * SECONDS
"""The model sees exactly the last 8 s (128,000 samples)."""
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = N_SAMPLES // HOP
"""800 frames: the STFT gives 801 (centred), Whisper drops the last one."""
MEL_FLOOR = 1e-10
NORM_EPS = 1e-7
DYNAMIC_RANGE = 8.0
"""log10 units kept below the loudest bin (80 dB)."""

SMART_TURN_DIST = "pipecat-ai"
SMART_TURN_VERSION = "1.14.0"
SMART_TURN_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
INSTALL_HINT = (
    "run `make install` (it runs `pip install --no-deps --require-hashes -r "
    "installers/smart-turn.txt`)"
)


def embedded_model() -> Path:
    """The Smart Turn ONNX file inside the installed ``pipecat-ai``, checksum verified.

    Found through the distribution's RECORD (``importlib.metadata``): pipecat is never
    imported.

    Raises:
        ModelFileError: the package or the file is missing, or the file fails its checksum.
    """
    try:
        dist = metadata.distribution(SMART_TURN_DIST)
    except metadata.PackageNotFoundError:
        raise ModelFileError(
            f"the end-of-turn model needs {SMART_TURN_DIST}=={SMART_TURN_VERSION}: {INSTALL_HINT}"
        ) from None
    listed = [f for f in dist.files or [] if f.as_posix() == SMART_TURN_FILE]
    if not listed:
        raise ModelFileError(
            f"{SMART_TURN_DIST} {dist.version} does not carry {SMART_TURN_FILE}: {INSTALL_HINT}"
        )
    return verified_file(Path(str(dist.locate_file(listed[0]))), SMART_TURN_SHA256, "Smart Turn")


# --- features: Whisper's log-mel, numpy only -------------------------------------------------


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of ``audio`` as float32, zero-padded at the start when shorter."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(x) >= N_SAMPLES:
        return x[len(x) - N_SAMPLES :]
    return np.concatenate([np.zeros(N_SAMPLES - len(x), dtype=np.float32), x])


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = 3.0 * hz / 200.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = 200.0 * mel / 3.0
    logarithmic = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


def mel_filterbank() -> np.ndarray:
    """(201, 80) triangular filters, Slaney scale and area norm (librosa's and Whisper's)."""
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(RATE / 2))), N_MELS + 2))
    bins = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    rise = (bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    fall = (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    tri: np.ndarray = np.maximum(0.0, np.minimum(rise, fall))
    area: np.ndarray = 2.0 / (edges[2:] - edges[:-2])
    bank: np.ndarray = tri * area[None, :]
    return bank


_MEL = mel_filterbank()
_HANN = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic, as torch's


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Smart Turn's input: (80, 800) float32 Whisper log-mel of the last 8 s of ``audio``.

    Exactly pipecat's ``compute_whisper_log_mel_features(do_normalize=True)`` applied to
    ``last_window(audio)``: the waveform is normalised to zero mean and unit variance (in
    float32, over the padded 8 s), then a centred STFT (reflect padding of 200, periodic
    Hann, n_fft 400, hop 160) in float64, power, Slaney mel, floor 1e-10, log10, last frame
    dropped, clamped to 8 below the maximum, and (x + 4) / 4.
    """
    x = last_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(NORM_EPS))
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400), a view
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(MEL_FLOOR, power[:-1] @ _MEL)).T  # (80, 800)
    clamped: np.ndarray = np.maximum(mel, mel.max() - DYNAMIC_RANGE)
    return ((clamped + 4.0) / 4.0).astype(np.float32)


# --- the model ------------------------------------------------------------------------------


class SmartTurn:
    """P(the turn is complete) from the sound of the last 8 s (not thread-safe: one owner)."""

    def __init__(self, path: Path | None = None, sha256: str | None = SMART_TURN_SHA256) -> None:
        """Load the model.

        Args:
            path: an ONNX file; None for the one inside ``pipecat-ai`` (always verified).
            sha256: checksum a given ``path`` must match (None: load it unchecked).

        Raises:
            ModelFileError: the file is missing, corrupt, or fails its checksum.
        """
        if path is None:
            model = embedded_model()
        elif sha256 is not None:
            model = verified_file(path, sha256, "Smart Turn")
        elif not path.is_file():
            raise ModelFileError(f"Smart Turn file not found: {path}")
        else:
            model = path
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = onnxruntime.InferenceSession(
                str(model), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported exception types
            reason = " ".join(str(e).split())
            raise ModelFileError(
                f"cannot load the Smart Turn model {model}: {reason}; {INSTALL_HINT}"
            ) from e

    def predict(self, audio_16k: np.ndarray) -> float:
        """Probability (0..1) that the turn is complete, from 16 kHz mono audio.

        Pass the utterance up to now, trailing quiet included (only the last 8 s count).
        """
        with heavy():
            features = log_mel(audio_16k)[None]
            (out,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(out).reshape(-1)[0])  # the graph ends in a sigmoid


# --- runners: where the model runs ----------------------------------------------------------


class Predictor(Protocol):
    """Anything that scores an utterance's audio (``SmartTurn``, or a fake)."""

    def predict(self, audio_16k: np.ndarray) -> float:
        """P(turn complete) for 16 kHz mono audio."""
        ...


@dataclass(frozen=True, slots=True)
class TurnScore:
    """A finished scoring job; ``ready_t`` is its modelled time (None: it is ready now)."""

    job: int
    complete: float
    ready_t: float | None = None


class TurnScorer(Protocol):
    """Scores utterances without blocking the caller (the shape of ``pipeline.AsrRunner``)."""

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Score ``samples`` (requested at stream time ``t``)."""
        ...

    def results(self) -> list[TurnScore]:
        """Jobs finished since the last call."""
        ...

    def close(self) -> None:
        """Stop once the job already queued is done."""
        ...


PREDICT_S = 0.1
"""Modelled Smart Turn latency in replay (features + model, 1 thread, busy machine): see the
measurements in the module docstring."""


class ModeledSmartTurn:
    """Replay: score at once, but time each result as the worker thread would finish it."""

    def __init__(self, model: Predictor, latency_s: float = PREDICT_S) -> None:
        self.model, self.latency_s = model, latency_s
        self._free_at = 0.0
        self._done: list[TurnScore] = []

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Score now; ready after the job ahead of it and the modelled latency."""
        complete = self.model.predict(samples)
        self._free_at = max(t, self._free_at) + self.latency_s
        self._done.append(TurnScore(job, complete, round(self._free_at, 3)))

    def results(self) -> list[TurnScore]:
        """Everything submitted so far (each carries its modelled time)."""
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Nothing to stop."""


class ThreadedSmartTurn:
    """Live: the model on its own thread ``tandem-turn``, created there and used only there.

    The queue holds one job, latest only: a job still waiting when a newer one comes is
    dropped (its quiet stretch is over). A failed job is reported as no score (logged by
    exception type only) rather than stopping the thread.
    """

    def __init__(self, factory: Callable[[], Predictor] = SmartTurn) -> None:
        """Start the thread and wait for the model to load on it.

        Raises:
            ModelFileError: the model could not be loaded (the thread has stopped); whatever
                else ``factory`` raised is raised here too.
        """
        self._cv = threading.Condition()
        self._next: tuple[int, np.ndarray] | None = None
        self._closed = False
        self._done: deque[TurnScore] = deque()
        self.dropped = 0
        self.seconds: deque[float] = deque(maxlen=64)
        """Recent wall times of a prediction (for the bench; no content)."""
        self._loaded = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(factory,), name="tandem-turn")
        self._thread.start()
        self._loaded.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Hand a job to the thread (replacing one that is still waiting)."""
        with self._cv:
            if self._next is not None:
                self.dropped += 1
            self._next = (job, samples)
            self._cv.notify()

    def results(self) -> list[TurnScore]:
        """Jobs finished since the last call (deque pops are atomic)."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def close(self) -> None:
        """Stop the thread once the waiting job is done."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _run(self, factory: Callable[[], Predictor]) -> None:
        try:
            model = factory()
        except Exception as e:  # handed to the constructor, which raises it in its caller
            self._error = e
            return
        finally:
            self._loaded.set()
        while True:
            with self._cv:
                while self._next is None and not self._closed:
                    self._cv.wait()
                if self._next is None:
                    return
                (job, samples), self._next = self._next, None
            t0 = time.perf_counter()
            try:
                complete = model.predict(samples)
            except Exception as e:  # a failed job must not stop the thread: no score for it
                log.warning("smart-turn: a scoring job failed (%s)", type(e).__name__)
                continue
            self.seconds.append(time.perf_counter() - t0)
            self._done.append(TurnScore(job, complete))


# --- fusion ---------------------------------------------------------------------------------


def smart_turn_or_none() -> SmartTurn | None:
    """The embedded Smart Turn model, or None (one warning line) when it cannot be loaded:
    end of turn then rests on the words alone, as before."""
    try:
        return SmartTurn()
    except (ModelFileError, MissingDependencyError) as e:
        log.warning("end of turn: Smart Turn unavailable, words only: %s", str(e).splitlines()[0])
        return None
