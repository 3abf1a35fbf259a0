"""Device helper: play an utterance through the speaker while the real Listener hears the mic.

Usage: python echo_probe.py gate|nogate [USER.wav]. With USER.wav the user's voice is played
into the virtual microphone one second after the assistant starts talking (double talk), by
this process, so it overlaps whatever the machine's load did to start-up. Prints how many times
the user was heard to start speaking and how many windows the echo gate took for the
assistant's own voice.
"""

import subprocess
import sys
import time

from engine.core import audio
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.core.frames import ControlEvent, ControlKind, DataFrame
from engine.hearing.asr import Recognizer
from engine.hearing.echo import EchoGate
from engine.hearing.listener import Listener
from engine.hearing.pipeline import Hearing
from engine.hearing.vad import SileroVad
from engine.senses.sound import Microphone, Speaker
from engine.voice.synthesis import EspeakSynthesizer
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Sense

echo = EchoGate() if sys.argv[1] == "gate" else None
gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
lease = gate.open_sense(Sense.MICROPHONE, AppContext("probe"))
assert lease is not None
speaker = Speaker()
speaker.start()
inbox: ControlInbox[ControlEvent] = ControlInbox()
data: Channel[DataFrame] = Channel("data", 64, Overflow.DROP_OLDEST)
hearing = Hearing(SileroVad(), Recognizer(threads=2), echo=echo)
listener = Listener(
    Microphone(lease), hearing, RealClock(), inbox=inbox, data=data, report=print, speaker=speaker
)
listener.start()
time.sleep(1.0)
say = "Let me walk you through the parser step by step, from the very top of the file."
speaker.play(audio.resample(EspeakSynthesizer().synthesize(say), audio.RATE, speaker.rate))
user = None
if len(sys.argv) > 2:
    time.sleep(1.0)
    user = subprocess.Popen(["paplay", "--device=micfeed", sys.argv[2]])
time.sleep(6.0)
if user is not None:
    user.wait(timeout=30)
listener.stop()
speaker.stop()
starts = sum(ev.kind is ControlKind.USER_STARTED_SPEAKING for ev in inbox.drain())
print("starts", starts, "echo_windows", echo.echo_windows if echo else -1)
