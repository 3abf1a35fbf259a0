"""Hearing: microphone audio to voice-activity control events and final transcripts.

``Hearing`` is fed 16 kHz mono audio in blocks of any size. VAD runs on every 32 ms window;
speech start and end become control events (the engine handles them at once); at the end of an
utterance the whole utterance is transcribed and comes out as a final ``TranscriptDelta``.
Both stages are causal, so ``hear`` over a recording gives the timeline that streaming the
same audio live would give.

Replay must be deterministic, so there recognition does not take the machine's real time: the
transcript is placed ``ASR_RTF_MODEL`` x the utterance's length after its end (the real-time
factor measured by ``tandem eval asr`` on this CPU is ~0.13). Live, the caller stamps results
with its clock when they come out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.features.asr import Recognizer
from engine.features.echo import EchoGate
from engine.features.vad import WINDOW, SileroVad, VadStream
from engine.frames import ControlEvent, ControlKind, TranscriptDelta

ASR_RTF_MODEL = 0.15
SILENCE_FLOOR = 1e-3
"""Peak amplitude (-60 dBFS) under which a window is silence, whatever the VAD's memory says."""
PAD_S = 0.1
"""Audio kept before a detected start and after the end, so no word is clipped."""
MAX_UTTERANCE_S = 30.0
RATE = 16_000


@dataclass(frozen=True, slots=True)
class Heard:
    """One timed result of hearing: a control event or a transcript."""

    t: float
    control: ControlEvent | None = None
    transcript: TranscriptDelta | None = None


class Hearing:
    """Streaming VAD + end-of-utterance ASR (one owner thread)."""

    def __init__(
        self,
        vad: SileroVad,
        asr: Recognizer,
        stream: VadStream | None = None,
        echo: EchoGate | None = None,
    ) -> None:
        self.vad, self.asr, self.echo = vad, asr, echo
        self.stream = stream or VadStream()
        self.vad.reset()
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet scored
        self._audio: list[np.ndarray] = []  # recent audio, for the utterance being spoken
        self._audio_start = 0  # sample index of _audio[0]
        self._scored = 0  # samples scored so far
        self._start: float | None = None
        self.level = 0.0  # RMS of the last block, for a level meter

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
            t_end = self._scored / RATE
            prob = self.vad.score(window)
            if prob >= self.stream.off_threshold and float(np.abs(window).max()) < SILENCE_FLOOR:
                prob = 0.0  # Silero's memory keeps scoring high over digital silence: not speech
            if (
                self.echo is not None
                and prob >= self.stream.off_threshold
                and self.echo.is_echo(window)
            ):
                prob = 0.0  # the assistant's own voice coming back: not the user
            ev = self.stream.push(t_end, prob)
            if ev is not None and ev.speech:
                self._start = ev.t
                out.append(
                    Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STARTED_SPEAKING))
                )
            elif ev is not None:
                out.append(
                    Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING))
                )
                out.extend(self._transcribe(ev.t, t_end))
            elif self._start is not None and t_end - self._start > MAX_UTTERANCE_S:
                out.extend(self._transcribe(t_end, t_end))  # a monologue: transcribe in parts
                self._start = t_end
        self._trim()
        return out

    def finish(self) -> list[Heard]:
        """End of the stream: close an utterance still open."""
        if self._start is None:
            return []
        t_end = self._scored / RATE
        heard = [Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING))]
        return heard + self._transcribe(t_end, t_end)

    def _transcribe(self, end: float, decided: float) -> list[Heard]:
        start, self._start = self._start, None
        if start is None:
            return []
        buf = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)
        a = max(0, int((start - PAD_S) * RATE) - self._audio_start)
        b = max(a, int((end + PAD_S) * RATE) - self._audio_start)
        text = self.asr.transcribe(buf[a:b]).text
        if not text:
            return []
        t = round(decided + ASR_RTF_MODEL * (end - start), 3)
        return [Heard(t, transcript=TranscriptDelta(t=t, text=text, final=True))]

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


def hear(samples: np.ndarray, vad: SileroVad, asr: Recognizer) -> list[Heard]:
    """Run hearing over a whole recording (16 kHz mono), as if it were streamed."""
    hearing = Hearing(vad, asr)
    out: list[Heard] = []
    step = int(0.2 * RATE)  # the live block size does not change the result
    for i in range(0, len(samples), step):
        out.extend(hearing.push(samples[i : i + step]))
    out.extend(hearing.finish())
    return sorted(out, key=lambda h: h.t)
