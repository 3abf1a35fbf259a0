"""Hearing: microphone audio to voice-activity control events and transcripts.

``Hearing`` is fed 16 kHz mono audio in blocks of any size. VAD runs on every 32 ms window and
gives control events (the engine handles them at once):

- ``VOICE_ONSET`` on the first window that sounds like the user (after the echo gate). Barge-in
  pauses the assistant on it; ``USER_STARTED_SPEAKING`` confirms it ``min_speech_s`` later, or
  the engine resumes (a click, a breath);
- ``USER_STARTED_SPEAKING`` / ``USER_STOPPED_SPEAKING`` with the VAD's hysteresis.

Recognition is pipelined so that the final transcript is ready soon after the voice stops:

- a partial transcript every ``PARTIAL_EVERY_S`` of speech, when the recogniser is idle (for
  the panel and for barge-in, never queued in front of a final);
- the final is transcribed *speculatively* once the user has been quiet ``SPECULATE_AFTER_S``:
  when the end-point confirms the silence, that text is the final, so the end-point's wait
  and recognition overlap; when the user goes on, it is dropped.

Recognition runs on an ``AsrRunner``. Live it is ``ThreadedAsr``: Whisper on its own thread,
so the VAD never waits for it. Replay must be deterministic, so ``ModeledAsr`` places each
result at the latency measured on this CPU (``asr_latency``), one job at a time like the real
thread. Both stages are causal: ``hear`` over a recording gives the timeline streaming gives.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.core.frames import ControlEvent, ControlKind, TranscriptDelta
from engine.hearing.asr import Recognizer
from engine.hearing.echo import EchoGate
from engine.hearing.smart_turn import TurnScorer
from engine.hearing.vad import WINDOW, SileroVad, VadStream

log = logging.getLogger(__name__)

ASR_BASE_S = 0.05
ASR_PER_S = 0.01
"""Whisper tiny.en latency here (beam 5, the 10 s window of ``asr.WINDOW_S``): 0.04-0.05 s
plus about 0.01 s per second of audio (1 thread: 0.5 s 0.04, 4 s 0.07, 11 s 0.11; 2 threads:
0.04, 0.08, 0.16 s; idle machine, 2026-12-03). With faster-whisper's 30 s window it was
0.30 / 0.38 / 0.62 s."""
SPECULATE_AFTER_S = 0.15
"""Quiet after which the final is transcribed speculatively (shorter dips are mid-word). The
audio goes up to that moment: a faint last word ("...selfish is") that the VAD already
scored as quiet is still heard."""
PARTIAL_EVERY_S = 1.0
ONSET_THRESHOLD = 0.2
"""Silero's score at which the assistant pauses for a possible barge-in (speech confirms at
``VadStream.threshold``, 0.5). On the 8 interrupt scenarios of ``tandem eval build-duplex``
(2026-12-02) the first window at 0.5 came 0.06-0.32 s (median 0.26 s) after the user's voice
began, at 0.2 0.01-0.28 s (median 0.06 s); room tone before speech scored at most 0.11. A
pause is cheap to undo (``ONSET_FADE_S``); speaking over the user is not."""
ONSET_FADE_S = 0.8
"""Quiet (under ``ONSET_THRESHOLD``) after an onset the VAD did not confirm that makes it a
click or a breath (``VOICE_FADED``): as long as the microphone may still be starting a voice,
the assistant stays paused however late the confirmation comes. Live on the interrupt
scenarios (2026-12-02): a 0.5 s timer resumed over users whose first syllable came before a
gap (3 of 8 strict failures), and so did 0.25 s of quiet (4 of 8): the gaps before the real
speech were up to ~0.6 s."""
ONSET_ECHO_MAX = 0.5
"""While the assistant's voice may come back (open speakers), an onset needs windows the
reference clearly does not explain (correlation under this, where the echo gate stops at
0.75) ..."""
ONSET_WINDOWS_WITH_ECHO = 2
"""... and two of them in a row: pausing the assistant for its own echo is the one thing
barge-in must never do. With nothing playing, one voiced window is an onset."""
SILENCE_FLOOR = 1e-3
"""Peak amplitude (-60 dBFS) under which a window is silence, whatever the VAD's memory says."""
PAD_S = 0.5
"""Audio given to the recogniser from before the detected start (never from before the end of
the audio the last utterance was recognised from). The VAD confirms a start 0.06-0.32 s after
the voice begins (``ONSET_THRESHOLD``): with 0.1 s the first word was clipped and Whisper
guessed ("in the test" for "run the tests") or dropped it from the final (a CI failure,
2026-12-03). Streamed through ``hear`` on the English files of ``../shared/evaldata/asr``,
WER was 7.7% with 0.1 s, 7.7% with 0.3 s, 6.0% with 0.5 s (the whole-file figure)."""
PROSODY_WAIT_S = 0.2
"""How long a final transcript waits for its Smart Turn score. Both are computed from the same
moment (``SPECULATE_AFTER_S`` of quiet), on two threads; the score is ready ~0.1 s later
(``smart_turn.PREDICT_S``), when the VAD confirms the stop. With Whisper's 30 s window the
transcript came 0.3 s after that and never had to wait; with the 10 s window it is ready first
(0.05-0.1 s), and a final without its score leaves the end of the turn to the words alone."""
MAX_UTTERANCE_S = 30.0
RATE = 16_000


def asr_latency(seconds_of_audio: float) -> float:
    """Modelled recognition time for ``seconds_of_audio`` (see ``ASR_BASE_S``)."""
    return ASR_BASE_S + ASR_PER_S * seconds_of_audio


@dataclass(frozen=True, slots=True)
class Heard:
    """One timed result of hearing: a control event or a transcript."""

    t: float
    control: ControlEvent | None = None
    transcript: TranscriptDelta | None = None


@dataclass(frozen=True, slots=True)
class Recognized:
    """A finished recognition job; ``ready_t`` is its modelled time (None: it is ready now)."""

    job: int
    text: str
    ready_t: float | None = None
    confidence: float | None = None


class AsrRunner(Protocol):
    """Runs recognition jobs in order, one at a time."""

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Queue ``samples`` (requested at stream time ``t``)."""
        ...

    def idle(self, t: float) -> bool:
        """Nothing queued or running at stream time ``t``."""
        ...

    def results(self) -> list[Recognized]:
        """Jobs finished since the last call."""
        ...

    def close(self) -> None:
        """Stop once the jobs already queued are done."""
        ...


class ModeledAsr:
    """Replay: recognise at once, but time each result as the real thread would finish it."""

    def __init__(self, asr: Recognizer) -> None:
        self.asr = asr
        self._free_at = 0.0
        self._done: list[Recognized] = []

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Recognise now; ready after the queue ahead of it and the modelled latency."""
        heard = self.asr.transcribe(samples)
        self._free_at = max(t, self._free_at) + asr_latency(len(samples) / RATE)
        self._done.append(Recognized(job, heard.text, round(self._free_at, 3), heard.confidence))

    def idle(self, t: float) -> bool:
        """Free once the last modelled job has finished."""
        return self._free_at <= t

    def results(self) -> list[Recognized]:
        """Everything submitted so far (each carries its modelled time)."""
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Nothing to stop."""


class ThreadedAsr:
    """Live: Whisper on its own thread (one owner for the model; the VAD never waits)."""

    def __init__(self, asr: Recognizer) -> None:
        self.asr = asr
        self._jobs: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue()
        self._done: deque[Recognized] = deque()
        self._lock = threading.Lock()
        self._pending = 0  # jobs submitted and not yet in ``_done``, under ``_lock``
        self._thread = threading.Thread(target=self._run, name="tandem-asr")
        self._thread.start()

    def submit(self, job: int, samples: np.ndarray, t: float) -> None:
        """Queue a job for the recogniser thread."""
        with self._lock:
            self._pending += 1
        self._jobs.put((job, samples))

    def idle(self, t: float) -> bool:
        """No job queued or running."""
        with self._lock:
            return self._pending == 0

    def results(self) -> list[Recognized]:
        """Jobs finished since the last call (deque pops are atomic)."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def close(self) -> None:
        """Stop the thread once the queued jobs are done (a Whisper call is not interruptible)."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, samples = item
            try:
                heard = self.asr.transcribe(samples)
                text, confidence = heard.text, heard.confidence
            except Exception as e:  # a failed job must still end its utterance (as no words)
                log.warning("asr: a recognition job failed (%s)", type(e).__name__)
                text, confidence = "", None
            with self._lock:
                self._done.append(Recognized(job, text, confidence=confidence))
                self._pending -= 1


@dataclass(slots=True)
class _Final:
    """The final transcript of an utterance, waiting for its recognition job."""

    job: int
    decided_t: float
    text: str | None = None
    ready_t: float | None = None
    confidence: float | None = None
    prosody: float | None = None
    prosody_t: float | None = None
    scored: bool = False
    """A Smart Turn score was asked for (it may still come)."""


class Hearing:
    """Streaming VAD + pipelined ASR (fed by one thread)."""

    def __init__(
        self,
        vad: SileroVad,
        asr: Recognizer | AsrRunner,
        stream: VadStream | None = None,
        echo: EchoGate | None = None,
        turn: TurnScorer | None = None,
    ) -> None:
        self.vad, self.echo, self.turn = vad, echo, turn
        self.runner: AsrRunner = ThreadedAsr(asr) if isinstance(asr, Recognizer) else asr
        self.stream = stream or VadStream()
        self.vad.reset()
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet scored
        self._audio: list[np.ndarray] = []  # recent audio, for the utterance being spoken
        self._audio_start = 0  # sample index of _audio[0]
        self._heard_until = 0  # sample index where the last final's audio ended
        self._scored = 0  # samples scored so far
        self._start: float | None = None
        self._jobs = 0
        self._partials: set[int] = set()  # partial jobs of the open utterance
        self._spec: _Final | None = None  # speculative final for the current quiet stretch
        self._spec_end: float | None = None
        self._finals: list[_Final] = []
        self._next_partial = 0.0
        self.level = 0.0  # RMS of the last block, for a level meter
        self.dropped_speculations = 0
        self._clear_run = 0  # voiced windows in a row that are clearly not echo
        self._onset_sent = False
        self._onset_open = False  # an onset sent and not confirmed yet
        self._quiet_run = 0  # windows under the onset threshold since the last voiced one

    def push(self, samples: np.ndarray) -> list[Heard]:
        """Feed 16 kHz mono samples; returns what was heard (time = position in the stream)."""
        if len(samples):
            self.level = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        self._audio.append(samples.astype(np.float32, copy=False))
        self._pending = np.concatenate([self._pending, samples])
        out: list[Heard] = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            self._scored += WINDOW
            out.extend(self._window(window, self._scored / RATE))
        out.extend(self._collect(self._scored / RATE))
        self._trim()
        return out

    def finish(self) -> list[Heard]:
        """End of the stream: close an utterance still open and wait for its transcript."""
        t_end = self._scored / RATE
        out: list[Heard] = []
        if self._start is not None:
            out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING)))
            self._end_utterance(t_end, t_end)
        self.runner.close()  # a thread finishes the jobs queued before it stops
        if self.turn is not None:
            self.turn.close()
        out.extend(self._collect(t_end, wait=False))
        return out

    def close(self) -> None:
        """Stop the recogniser and the turn scorer."""
        self.runner.close()
        if self.turn is not None:
            self.turn.close()

    # --- per window ----------------------------------------------------------------------

    def _window(self, window: np.ndarray, t_end: float) -> list[Heard]:
        prob = self.vad.score(window)
        if prob >= self.stream.off_threshold and float(np.abs(window).max()) < SILENCE_FLOOR:
            prob = 0.0  # Silero's memory keeps scoring high over digital silence: not speech
        echo = self.echo
        corr = 0.0
        if echo is not None and prob >= min(ONSET_THRESHOLD, self.stream.off_threshold):
            corr = echo.correlation(window)
            if corr >= echo.threshold:
                prob = 0.0  # the assistant's own voice coming back: not the user
                echo.echo_windows += 1
        was_speaking = self.stream.speaking
        ev = self.stream.push(t_end, prob)
        out: list[Heard] = []
        clear = prob >= ONSET_THRESHOLD and corr < ONSET_ECHO_MAX
        self._clear_run = self._clear_run + 1 if clear else 0
        need = ONSET_WINDOWS_WITH_ECHO if echo is not None and echo.active else 1
        if not was_speaking and not self._onset_sent and self._clear_run >= need:
            self._onset_sent, self._onset_open, self._quiet_run = True, True, 0
            out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.VOICE_ONSET)))
        if clear or self.stream.rising or self.stream.speaking:
            self._quiet_run = 0
        elif self._onset_sent:
            self._quiet_run += 1
            if self._quiet_run * WINDOW / RATE >= ONSET_FADE_S:  # the candidate died, or the
                if self._onset_open:  # utterance ended; only an unconfirmed one is news
                    out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.VOICE_FADED)))
                self._onset_sent = self._onset_open = False
        if ev is not None and ev.speech:
            self._onset_open = False  # confirmed
            self._start, self._partials = ev.t, set()
            self._next_partial = ev.t + PARTIAL_EVERY_S
            out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STARTED_SPEAKING)))
        elif ev is not None:
            stopped = ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING, voice_t=ev.t)
            out.append(Heard(t_end, control=stopped))
            self._end_utterance(ev.t, t_end)
        elif self._start is not None:
            self._while_speaking(t_end)
        return out

    def _while_speaking(self, t_end: float) -> None:
        assert self._start is not None
        quiet = self.stream.quiet_since
        if quiet is None and self._spec is not None:
            self._spec = self._spec_end = None  # the user went on: that was not the end
            self.dropped_speculations += 1
        if quiet is not None and self._spec is None and t_end - quiet >= SPECULATE_AFTER_S:
            self._spec = self._final(self._submit(self._start, t_end, t_end, final=True), t_end)
            self._spec_end = quiet
        if quiet is None and t_end >= self._next_partial and self.runner.idle(t_end):
            self._partials.add(self._submit(self._start, t_end, t_end))
            self._next_partial = t_end + PARTIAL_EVERY_S
        if t_end - self._start > MAX_UTTERANCE_S:  # a monologue: transcribe it in parts
            self._finals.append(
                self._final(self._submit(self._start, t_end, t_end, final=True), t_end)
            )
            self._start, self._spec, self._spec_end = t_end, None, None
            self._heard_until = int(t_end * RATE)

    def _end_utterance(self, end: float, decided: float) -> None:
        """The voice stopped at ``end`` (known at ``decided``): its final transcript."""
        assert self._start is not None
        if self._spec is not None and self._spec_end == end:
            final = self._spec  # recognised while the end-point waited
            final.decided_t = decided
        else:
            job = self._submit(self._start, end + SPECULATE_AFTER_S, decided, final=True)
            final = self._final(job, decided)
        self._finals.append(final)
        self._start, self._spec, self._spec_end = None, None, None
        # where its audio ended (the speculation's within a window of this)
        self._heard_until = int((end + SPECULATE_AFTER_S) * RATE)

    def _final(self, job: int, decided: float) -> _Final:
        return _Final(job, decided, scored=self.turn is not None)

    def _submit(self, start: float, end: float, t: float, *, final: bool = False) -> int:
        buf = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)
        first = max(int((start - PAD_S) * RATE), self._heard_until)
        a = max(0, first - self._audio_start)
        b = max(a, int(end * RATE) - self._audio_start)
        self._jobs += 1
        self.runner.submit(self._jobs, buf[a:b], t)
        if final and self.turn is not None:  # scored beside the recogniser, not after it
            self.turn.submit(self._jobs, buf[a:b], t)
        return self._jobs

    def _collect(self, now: float, *, wait: bool = True) -> list[Heard]:
        """Turn finished jobs into transcripts: partials as they come, finals in order (each
        waits up to ``PROSODY_WAIT_S`` for its Smart Turn score, unless ``wait`` is False)."""
        out: list[Heard] = []
        if self.turn is not None:
            for score in self.turn.results():
                for f in (*self._finals, *([self._spec] if self._spec is not None else [])):
                    if f.job == score.job:
                        f.prosody, f.prosody_t = score.complete, score.ready_t
        for r in self.runner.results():
            t = r.ready_t if r.ready_t is not None else now
            pending = [f for f in self._finals if f.job == r.job]
            if self._spec is not None and self._spec.job == r.job:
                pending = [self._spec]
            if pending:
                pending[0].text, pending[0].ready_t = r.text, t
                pending[0].confidence = r.confidence
            elif r.job in self._partials and r.text:
                out.append(Heard(t, transcript=TranscriptDelta(t=t, text=r.text, final=False)))
        while self._finals and self._finals[0].text is not None:
            f = self._finals[0]
            t = max(f.decided_t, f.ready_t or now)
            # The prosody score if it is ready within PROSODY_WAIT_S (replay models its time).
            if f.scored and f.prosody is None:
                if wait and now < t + PROSODY_WAIT_S:
                    break  # it may still come
                t = max(t, min(now, t + PROSODY_WAIT_S))
            prosody = f.prosody
            if f.prosody_t is not None:  # modelled: ready in time, or not at all
                prosody = prosody if f.prosody_t <= t + PROSODY_WAIT_S else None
                t = max(t, f.prosody_t) if prosody is not None else t
            self._finals.pop(0)
            t = round(t, 3)
            # an empty final says "that voice activity had no words" (a cough): it matters
            delta = TranscriptDelta(
                t=t,
                text=f.text or "",
                final=True,
                prosody_complete=prosody,
                confidence=f.confidence,
            )
            out.append(Heard(t, transcript=delta))
        return out

    def _trim(self) -> None:
        """Keep only what an open utterance (plus padding) may still need."""
        keep_from = int(
            ((self._start if self._start is not None else self._scored / RATE) - PAD_S) * RATE
        )
        total = sum(len(a) for a in self._audio)
        if keep_from - self._audio_start > RATE and total > RATE:
            buf = np.concatenate(self._audio)
            cut = max(0, keep_from - self._audio_start)
            self._audio = [buf[cut:]]
            self._audio_start += cut


def hear(
    samples: np.ndarray, vad: SileroVad, asr: Recognizer, turn: TurnScorer | None = None
) -> list[Heard]:
    """Run hearing over a whole recording (16 kHz mono), as if it were streamed."""
    hearing = Hearing(vad, ModeledAsr(asr), turn=turn)
    out: list[Heard] = []
    step = int(0.2 * RATE)  # the live block size does not change the result
    for i in range(0, len(samples), step):
        out.extend(hearing.push(samples[i : i + step]))
    out.extend(hearing.finish())
    return sorted(out, key=lambda h: h.t)
