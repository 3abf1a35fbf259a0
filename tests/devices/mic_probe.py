"""Device helper: the real Listener on a chosen microphone, printing what happens as it happens.

Usage: python mic_probe.py DEVICE [--speaker] [--levels]   (DEVICE "-" is the default device)

Every line starts with ``time.monotonic()`` (the same clock as the test's, so it can time
recovery):  ``T report LINE`` (what the Listener says), ``T vad start|stop``, ``T heard TEXT``,
``T level RMS PEAK CLIP``. Typing ``quit`` revokes the lease (mute) and stops; the last lines
are ``T after-revoke N`` (blocks taken after the revocation: must be 0), ``T rescans N`` and,
with ``--speaker``, ``T speaker-alive 0|1`` (the speaker survived every rescan).
"""

import sys
import threading
import time

from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.core.frames import ControlEvent, ControlKind, DataFrame, TranscriptDelta
from engine.hearing.asr import Recognizer
from engine.hearing.listener import Listener, MicLevel
from engine.hearing.pipeline import Hearing
from engine.hearing.vad import SileroVad
from engine.senses import sound
from engine.senses.sound import Microphone, Speaker
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Sense


def say(*words: object) -> None:
    print(f"{time.monotonic():.3f}", *words, flush=True)


device = None if sys.argv[1] == "-" else sys.argv[1]
gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
lease = gate.open_sense(Sense.MICROPHONE, AppContext("probe"))
assert lease is not None
speaker = Speaker() if "--speaker" in sys.argv else None
if speaker is not None:
    speaker.start()
mic = Microphone(lease, device)
inbox: ControlInbox[ControlEvent] = ControlInbox()
data: Channel[DataFrame] = Channel("data", 64, Overflow.DROP_OLDEST)
levels: Channel[MicLevel] | None = None
if "--levels" in sys.argv:
    levels = Channel("levels", 50, Overflow.DROP_OLDEST)
listener = Listener(
    mic,
    Hearing(SileroVad(), Recognizer(threads=2)),
    RealClock(),
    inbox=inbox,
    data=data,
    report=lambda line: say("report", line),
    speaker=speaker,
    levels=levels,
)
quit_asked = threading.Event()


def read_commands() -> None:
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    quit_asked.set()


threading.Thread(target=read_commands, daemon=True).start()
listener.start()
while not quit_asked.wait(0.02):
    for ev in inbox.drain():
        if ev.kind is ControlKind.USER_STARTED_SPEAKING:
            say("vad", "start")
        elif ev.kind is ControlKind.USER_STOPPED_SPEAKING:
            say("vad", "stop")
    for frame in data.drain():
        if isinstance(frame, TranscriptDelta):
            say("heard", frame.text)
    for level in levels.drain() if levels is not None else []:
        say("level", level.rms_dbfs, level.peak_dbfs, int(level.clipping))
gate.mute(Sense.MICROPHONE)  # the lease is revoked: the callback takes nothing more
seq = mic.delivered
time.sleep(0.5)
say("after-revoke", mic.delivered - seq)
listener.stop()
say("rescans", sound.rescans())
if speaker is not None:
    say("speaker-alive", int(speaker.alive))
    speaker.stop()
