"""``tandem bench tts``: the voices' load time, first audio and real-time factor."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from engine.core import audio
from engine.voice.synthesis import EspeakSynthesizer, PiperSynthesizer, sentences

BENCH_FIRST = "Sure, let me look at that failing test."
BENCH_REPLY = (
    "The loop stops one item too early. The range ends at the length minus one, so the last "
    "element is never read. Change it to the full length, and the test should pass. "
    "Do you want me to run it again?"
)


def bench_tts(runs: int = 3) -> dict[str, Any]:
    """``tandem bench tts``: both voices on the embedded files, medians of ``runs``.

    For each voice: load time (model and child program), time to first audio (the whole
    first sentence, which is what ``PlayedSpeech`` waits for), and the real-time factor
    (synthesis time / audio time) over a reply of a few sentences. Piper runs with 1 and with
    2 onnxruntime threads: the figures behind ``PiperSynthesizer``'s default of 1.
    """
    voices: dict[str, Callable[[], PiperSynthesizer | EspeakSynthesizer]] = {
        "piper_1_thread": lambda: PiperSynthesizer(threads=1),
        "piper_2_threads": lambda: PiperSynthesizer(threads=2),
        "espeak": EspeakSynthesizer,
    }
    return {
        "runs": runs,
        "voices": {name: _bench_voice(make, runs) for name, make in voices.items()},
    }


def _bench_voice(
    make: Callable[[], PiperSynthesizer | EspeakSynthesizer], runs: int
) -> dict[str, float]:
    loads, firsts, rtfs = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        synth = make()
        t1 = time.perf_counter()
        synth.synthesize(BENCH_FIRST)
        t2 = time.perf_counter()
        samples = sum(len(synth.synthesize(s)) for s in sentences(BENCH_REPLY))
        rtfs.append((time.perf_counter() - t2) / (samples / audio.RATE))
        loads.append(t1 - t0)
        firsts.append(t2 - t1)
        synth.close()
    return {
        "load_ms": round(statistics.median(loads) * 1000, 1),
        "first_audio_ms": round(statistics.median(firsts) * 1000, 1),
        "rtf": round(statistics.median(rtfs), 4),
    }
