"""Device helper: play an utterance through the speaker while hearing the microphone.

Usage: python echo_probe.py gate|nogate. Prints how many times the user was heard to start
speaking, and how many windows the echo gate took for the assistant's own voice.
"""

import sys
import time

import numpy as np
import soxr

from engine import audio
from engine.features.asr import Recognizer
from engine.features.echo import EchoGate
from engine.features.vad import SileroVad
from engine.hearing import Hearing
from engine.senses.sound import Microphone, Speaker
from engine.voice import EspeakSynthesizer
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Sense

use_gate = sys.argv[1] == "gate"
gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
mic = Microphone(gate.open_sense(Sense.MICROPHONE, AppContext("t")))
spk = Speaker()
mic.start()
spk.start()
echo = EchoGate() if use_gate else None
hearing = Hearing(SileroVad(), Recognizer(threads=2), echo=echo)
rs_mic = soxr.ResampleStream(mic.rate, 16000, 1, dtype="float32")
rs_ref = soxr.ResampleStream(spk.rate, 16000, 1, dtype="float32")
say = EspeakSynthesizer().synthesize(
    "Let me walk you through the parser step by step, from the very top of the file."
)
time.sleep(0.5)
spk.play(audio.resample(say, 16000, spk.rate))
starts, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 7:
    while spk.played and echo is not None:
        echo.feed_reference(
            np.asarray(rs_ref.resample_chunk(spk.played.popleft().samples), dtype=np.float32)
        )
    while mic.ring:
        for h in hearing.push(
            np.asarray(rs_mic.resample_chunk(mic.ring.popleft().samples), dtype=np.float32)
        ):
            if h.control and h.control.kind.value == "user_started_speaking":
                starts += 1
    time.sleep(0.01)
print(
    "starts",
    starts,
    "echo_windows",
    echo.echo_windows if echo else -1,
    "level",
    round(hearing.level, 4),
)
mic.stop()
spk.stop()
