"""The live hearing thread: microphone blocks in, control events, transcripts and levels out.

One thread owns the VAD and ASR models (they are not thread-safe and ASR blocks for a few
hundred ms, which must never stall the engine's event loop). It drains the microphone's ring,
resamples to 16 kHz, runs ``Hearing`` and hands results to the engine: control events to its
inbox (handled at once), transcripts to its data channel, and (when asked) the microphone's
level every ``LEVEL_S`` to a level channel: RMS and peak in dBFS and a clipping flag, never
the audio itself.

The thread also watches the device. A stream that stops (PortAudio ended it: the device
vanished) or stops delivering blocks for ``WATCHDOG_S`` while it claims to run (a stalled
device or sound server) is reported once as lost, closed, and reopened every ``RETRY_S``
(the same device by name, or whatever the default is now) until it answers; then it says
"listening" again. A revoked lease (mute, the kill switch) stops the stream at once; the
thread then asks the gate for a new lease until it gets one (unmute) and listens again. Both
changes go to the engine as ``LEASE_REVOKED`` / ``LEASE_OPENED`` control events, so the
timeline shows the real leases.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import soxr

from engine.core.channels import Channel, ControlInbox
from engine.core.clock import Clock
from engine.core.frames import ControlEvent, ControlKind, DataFrame
from engine.hearing.pipeline import RATE, Hearing
from engine.senses.sound import AudioDeviceError, Microphone, Speaker
from permissions.gate import Lease
from permissions.model import Sense

log = logging.getLogger(__name__)
LEASE_POLL_S = 0.05
"""While revoked, how often to ask the gate whether capture may start again (unmute)."""
RETRY_S = 1.0
WATCHDOG_S = 1.0
"""A running stream that delivers nothing for this long is lost."""
START_GRACE_S = 3.0
"""A fresh stream's first block may take up to ~2 s (PulseAudio): the watchdog waits longer."""
REF_LEAD = 2
POLL_S = 0.02
LEVEL_S = 0.1
CLIP = 0.99
"""A sample at or above this magnitude (-0.09 dBFS) counts as clipping."""
FLOOR_DBFS = -100.0


@dataclass(frozen=True, slots=True)
class MicLevel:
    """The microphone's level over one window of ``LEVEL_S`` (no audio content)."""

    t: float
    rms_dbfs: float
    peak_dbfs: float
    clipping: bool


def dbfs(amplitude: float) -> float:
    """An amplitude (1.0 = full scale) in dBFS, never below ``FLOOR_DBFS``."""
    return max(FLOOR_DBFS, 20 * math.log10(amplitude)) if amplitude > 0 else FLOOR_DBFS


class LevelWindow:
    """Sums blocks at the device rate into one ``MicLevel`` per ``LEVEL_S``."""

    def __init__(self, rate: int) -> None:
        self.size = max(1, int(rate * LEVEL_S))
        self._n = 0
        self._energy = 0.0
        self._peak = 0.0

    def add(self, samples: np.ndarray, t: float) -> MicLevel | None:
        """Add one block; returns a level when a window is complete."""
        if len(samples):
            x = samples.astype(np.float64)
            self._energy += float(np.dot(x, x))
            self._peak = max(self._peak, float(np.abs(x).max()))
            self._n += len(x)
        if self._n < self.size:
            return None
        level = MicLevel(
            t=t,
            rms_dbfs=round(dbfs(math.sqrt(self._energy / self._n)), 1),
            peak_dbfs=round(dbfs(self._peak), 1),
            clipping=self._peak >= CLIP,
        )
        self._n, self._energy, self._peak = 0, 0.0, 0.0
        return level


class Listener:
    """Runs hearing on its own thread for one microphone."""

    def __init__(
        self,
        mic: Microphone,
        hearing: Hearing,
        clock: Clock,
        *,
        inbox: ControlInbox[ControlEvent],
        data: Channel[DataFrame],
        report: Callable[[str], None],
        speaker: Speaker | None = None,
        levels: Channel[MicLevel] | None = None,
        new_lease: Callable[[], Lease | None] | None = None,
    ) -> None:
        self.mic, self.hearing, self.clock, self.speaker = mic, hearing, clock, speaker
        self.inbox, self.data, self.report, self.levels = inbox, data, report, levels
        self.new_lease = new_lease
        """Asks the gate for a fresh lease after a revocation (None: a revocation is final)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-hearing")
        self.blocks = 0
        self.gaps = 0
        self.losses = 0

    def start(self) -> None:
        """Open the microphone and start hearing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop hearing and close the microphone."""
        self._stop.set()
        self._thread.join()
        self.mic.stop()
        self.hearing.close()  # lets the recogniser finish the job in hand, then stops it
        log.info("hearing: %d blocks, %d overflow gaps", self.blocks, self.gaps)

    def _post(self, kind: ControlKind) -> None:
        self.inbox.put(ControlEvent(self.clock.now(), kind, text=Sense.MICROPHONE.value))

    def _run(self) -> None:
        resampler: soxr.ResampleStream | None = None
        ref_resampler: soxr.ResampleStream | None = None
        window: LevelWindow | None = None
        ref_blocks = 0
        last_seq = 0
        listening = False
        quiet = False  # the outage was reported: retries say nothing until it is back
        seen, seen_at, fresh = 0, 0.0, True  # the watchdog: blocks delivered, when, first yet
        revoked = False
        while not self._stop.is_set():
            if not self.mic.lease.active:
                if not revoked:  # mute, kill switch: stop capturing at once, say so once
                    revoked, listening = True, False
                    self.mic.stop()
                    self.report(f"microphone: stopped ({self.mic.lease.revoked_reason})")
                    self._post(ControlKind.LEASE_REVOKED)
                lease = self.new_lease() if self.new_lease is not None else None
                if lease is None:
                    if self.new_lease is None:
                        return
                    self._stop.wait(LEASE_POLL_S)
                    continue
                self.mic.lease, revoked = lease, False  # unmuted: open the stream again
                self._post(ControlKind.LEASE_OPENED)
            if listening:
                now = self.clock.now()
                if self.mic.delivered != seen:
                    seen, seen_at, fresh = self.mic.delivered, now, False
                silent = now - seen_at
                lost = None
                if not self.mic.alive:
                    lost = "the device stopped"
                elif silent > (START_GRACE_S if fresh else WATCHDOG_S):
                    lost = f"no audio for {silent:.1f} s"
                if lost is not None:
                    listening, quiet = False, True
                    self.losses += 1
                    self.report(f"microphone: lost ({lost}); retrying")
                    self.mic.stop()  # on a stalled device this gives up after CLOSE_TIMEOUT_S
                    continue
            else:
                try:
                    self.mic.start()
                except AudioDeviceError as e:
                    if not quiet:
                        self.report(f"microphone: {e}; retrying every {RETRY_S:.0f} s")
                        quiet = True
                    log.debug("microphone: still unavailable (%s)", e)
                    self._stop.wait(RETRY_S)
                    continue
                listening, quiet = True, False
                seen, seen_at, fresh = self.mic.delivered, self.clock.now(), True
                resampler = soxr.ResampleStream(self.mic.rate, RATE, 1, dtype="float32")
                window = LevelWindow(self.mic.rate) if self.levels is not None else None
                if self.speaker is not None:
                    self.speaker.played.clear()  # pair reference and mic from now on
                ref_blocks, self.blocks, last_seq = 0, 0, 0
                self.report(f"microphone: listening ({self.mic.name}, {self.mic.rate} Hz)")
            if not self.mic.ring:
                self._stop.wait(POLL_S)
                continue
            if self.speaker is not None and self.hearing.echo is not None:
                # What the speaker played is the echo reference. Both streams deliver one
                # 20 ms block per 20 ms of the audio clock, so the reference is fed block
                # for block with the microphone (up to REF_LEAD blocks ahead): the two stay
                # aligned even when hearing runs behind, and catch up if one stream starts late.
                if ref_resampler is None and self.speaker.rate:
                    ref_resampler = soxr.ResampleStream(self.speaker.rate, RATE, 1, dtype="float32")
                while (
                    self.speaker.played
                    and ref_resampler is not None
                    and ref_blocks <= self.blocks + REF_LEAD
                ):
                    played = ref_resampler.resample_chunk(self.speaker.played.popleft().samples)
                    self.hearing.echo.feed_reference(np.asarray(played, dtype=np.float32))
                    ref_blocks += 1
            block = self.mic.ring.popleft()
            if last_seq and block.seq != last_seq + 1:
                self.gaps += 1  # the ring overflowed: hearing fell behind
            last_seq = block.seq
            self.blocks += 1
            if window is not None and self.levels is not None:
                level = window.add(block.samples, self.clock.now())
                if level is not None:
                    self.levels.put(level)
            assert resampler is not None
            samples = resampler.resample_chunk(block.samples)
            for heard in self.hearing.push(np.asarray(samples, dtype=np.float32)):
                now = self.clock.now()
                if heard.control is not None:
                    c = heard.control  # stream times -> the clock's (voice_t lies before t)
                    voice_t = None if c.voice_t is None else now - (c.t - c.voice_t)
                    self.inbox.put(ControlEvent(now, c.kind, voice_t=voice_t))
                elif heard.transcript is not None:
                    tr = heard.transcript
                    self.data.put(replace(tr, t=now))  # with its prosody and confidence
