"""The live hearing thread: microphone blocks in, control events and transcripts out.

One thread owns the VAD and ASR models (they are not thread-safe and ASR blocks for a few
hundred ms, which must never stall the engine's event loop). It drains the microphone's ring,
resamples to 16 kHz, runs ``Hearing`` and hands results to the engine: control events to its
inbox (handled at once), transcripts to its data channel. If the device vanishes it says so
and reopens it every ``RETRY_S`` while the lease holds; a revoked lease stops the stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import soxr

from engine.channels import Channel, ControlInbox
from engine.clock import Clock
from engine.frames import ControlEvent, DataFrame, TranscriptDelta
from engine.hearing import RATE, Hearing
from engine.senses.sound import AudioDeviceError, Microphone, Speaker

log = logging.getLogger(__name__)
RETRY_S = 2.0
REF_LEAD = 2
POLL_S = 0.02


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
    ) -> None:
        self.mic, self.hearing, self.clock, self.speaker = mic, hearing, clock, speaker
        self.inbox, self.data, self.report = inbox, data, report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-hearing", daemon=True)
        self.blocks = 0
        self.gaps = 0

    def start(self) -> None:
        """Open the microphone and start hearing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop hearing and close the microphone."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.mic.stop()
        log.info("hearing: %d blocks, %d overflow gaps", self.blocks, self.gaps)

    def _run(self) -> None:
        resampler: soxr.ResampleStream | None = None
        ref_resampler: soxr.ResampleStream | None = None
        ref_blocks = 0
        last_seq = 0
        while not self._stop.is_set():
            if not self.mic.lease.active:
                self.mic.stop()
                self.report(f"microphone: stopped ({self.mic.lease.revoked_reason})")
                return
            if not self.mic.alive:
                try:
                    self.mic.start()
                    resampler = soxr.ResampleStream(self.mic.rate, RATE, 1, dtype="float32")
                    if self.speaker is not None:
                        self.speaker.played.clear()  # pair reference and mic from now on
                    ref_blocks, self.blocks = 0, 0
                    self.report(f"microphone: listening ({self.mic.rate} Hz)")
                except AudioDeviceError as e:
                    self.report(f"microphone: {e}; retrying in {RETRY_S:.0f} s")
                    self._stop.wait(RETRY_S)
                    continue
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
            assert resampler is not None
            samples = resampler.resample_chunk(block.samples)
            for heard in self.hearing.push(np.asarray(samples, dtype=np.float32)):
                now = self.clock.now()
                if heard.control is not None:
                    self.inbox.put(ControlEvent(now, heard.control.kind))
                elif heard.transcript is not None:
                    self.data.put(TranscriptDelta(now, heard.transcript.text, final=True))
