"""Hearing: microphone audio to voice-activity control events and final transcripts.

VAD runs on every 32 ms window; speech start and end become control events (handled at once
by the engine); at the end of an utterance the whole utterance is transcribed and arrives as
a final ``TranscriptDelta``. Both stages are causal, so running them over a recording gives
the same timeline as streaming it live.

Replay must be deterministic, so recognition does not take the machine's real time: the
transcript is placed ``ASR_RTF_MODEL`` x the utterance's length after its end (the real-time
factor measured by ``tandem eval asr`` on this CPU is ~0.12; the model is a little slower).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.features.asr import Recognizer
from engine.features.vad import WINDOW, WINDOW_S, SileroVad, VadStream
from engine.frames import ControlEvent, ControlKind, TranscriptDelta

ASR_RTF_MODEL = 0.15
PAD_S = 0.1
"""Audio kept before a detected start and after the end, so no word is clipped."""


@dataclass(frozen=True, slots=True)
class Heard:
    """One timed result of hearing: a control event or a transcript."""

    t: float
    control: ControlEvent | None = None
    transcript: TranscriptDelta | None = None


def hear(samples: np.ndarray, vad: SileroVad, asr: Recognizer, rate: int = 16_000) -> list[Heard]:
    """Run VAD and end-of-utterance recognition over 16 kHz mono audio."""
    out: list[Heard] = []
    stream = VadStream()
    vad.reset()
    start: float | None = None
    n = len(samples) // WINDOW
    for i in range(n):
        t_end = (i + 1) * WINDOW_S
        ev = stream.push(t_end, vad.score(samples[i * WINDOW : (i + 1) * WINDOW]))
        if ev is None:
            continue
        if ev.speech:
            start = ev.t
            out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STARTED_SPEAKING)))
            continue
        out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING)))
        if start is not None:
            out.extend(_transcribe(samples, start, ev.t, t_end, asr=asr, rate=rate))
            start = None
    if start is not None:  # the recording ends mid-utterance
        t_end = n * WINDOW_S
        out.append(Heard(t_end, control=ControlEvent(t_end, ControlKind.USER_STOPPED_SPEAKING)))
        out.extend(_transcribe(samples, start, t_end, t_end, asr=asr, rate=rate))
    return sorted(out, key=lambda h: h.t)


def _transcribe(
    samples: np.ndarray, start: float, end: float, decided: float, *, asr: Recognizer, rate: int
) -> list[Heard]:
    a = max(0, int((start - PAD_S) * rate))
    b = min(len(samples), int((end + PAD_S) * rate))
    text = asr.transcribe(samples[a:b]).text
    if not text:
        return []
    t = round(decided + ASR_RTF_MODEL * (end - start), 3)
    return [Heard(t, transcript=TranscriptDelta(t=t, text=text, final=True))]
