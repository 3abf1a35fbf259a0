"""Sound devices: the microphone sense and the speaker (the only sounddevice importer).

``Microphone`` owns one PortAudio input stream. Its callback does nothing but copy the block
into a bounded ring (``deque(maxlen=...)``: appends are atomic, no lock, the oldest audio is
dropped on overflow) and stops taking audio the moment its lease is revoked. Everything else
(resampling to 16 kHz, VAD, ASR, level metering) happens on the hearing thread.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from engine.senses import DeviceProbe
from permissions.gate import Lease

BLOCK_S = 0.02
RING_S = 5.0


class AudioDeviceError(EngineError):
    """A microphone or speaker could not be opened, or it went away."""


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """One captured block (mono float32 at the device rate) and its sequence number."""

    seq: int
    samples: np.ndarray


def probe() -> DeviceProbe:
    """Look for a default input device without opening it."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio's shared library is missing
        return DeviceProbe(False, f"no audio system ({e}); install libportaudio2")
    try:
        info = sd.query_devices(kind="input")
    except sd.PortAudioError as e:
        return DeviceProbe(False, f"no input device ({e})")
    if not isinstance(info, dict):
        return DeviceProbe(False, "no input device")
    rate = int(float(info.get("default_samplerate", 0)))
    return DeviceProbe(True, f"{info.get('name', '?')} ({rate} Hz)")


class Microphone:
    """A capture stream on one device, held under a lease from the gate."""

    def __init__(self, lease: Lease, device: int | str | None = None) -> None:
        self.lease = lease
        self.device = device
        self.rate = 0
        self.ring: deque[AudioBlock] = deque()
        self._seq = 0
        self._stream: object = None

    def start(self) -> None:
        """Open and start the stream at the device's own rate (resampled later)."""
        self.ring = deque(maxlen=int(RING_S / BLOCK_S))
        self._stream, self.rate = _open("input", self.device, self._callback)

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        # Copy and hand off, nothing else (no locks, no logging, no analysis).
        if self.lease.revoked_reason is not None:
            return
        self._seq += 1
        self.ring.append(AudioBlock(self._seq, indata[:, 0].copy()))

    @property
    def alive(self) -> bool:
        """True while the stream runs (False once the device vanished or it was stopped)."""
        stream = self._stream
        return bool(stream is not None and getattr(stream, "active", False))

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        _close(self._stream)
        self._stream = None


class Speaker:
    """One PortAudio output stream that plays queued audio and keeps what it played.

    The callback copies queued blocks out (silence on underrun) and copies each played block
    into ``played`` (the echo reference), nothing else. ``flush`` drops everything queued at
    once: barge-in stops the voice within one audio block (20 ms). Silence is recorded in
    ``played`` too, so the reference stays aligned with the microphone in time.
    """

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device
        self.rate = 0
        self._queue: deque[np.ndarray] = deque()
        self.played: deque[AudioBlock] = deque(maxlen=int(RING_S / BLOCK_S))
        self._seq = 0
        self._block = 0
        self._silence = np.zeros(0, dtype=np.float32)
        self._stream: object = None

    def start(self) -> None:
        """Open and start the output stream at the device's own rate."""
        self._stream, self.rate = _open("output", self.device, self._callback)
        self._block = int(self.rate * BLOCK_S)

    def play(self, samples: np.ndarray) -> float:
        """Queue mono float32 samples at the device rate; returns their duration in seconds."""
        n = self._block
        for i in range(0, len(samples), n):
            block = np.zeros(n, dtype=np.float32)
            piece = samples[i : i + n]
            block[: len(piece)] = piece
            self._queue.append(block)
        return len(samples) / self.rate if self.rate else 0.0

    def flush(self) -> None:
        """Drop everything not yet played."""
        self._queue.clear()

    @property
    def busy(self) -> bool:
        """True while audio is queued."""
        return bool(self._queue)

    def _callback(
        self, outdata: np.ndarray, frames: int, time_info: object, status: object
    ) -> None:
        # Copy out, copy the reference, nothing else; silence when there is nothing to play.
        try:
            block = self._queue.popleft()
        except IndexError:
            if len(self._silence) != frames:  # first underrun only: the stream just opened
                self._silence = np.zeros(frames, dtype=np.float32)
            block = self._silence
        outdata[:, 0] = block
        self._seq += 1
        self.played.append(AudioBlock(self._seq, block))

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        _close(self._stream)
        self._stream = None


def _open(kind: str, device: int | str | None, callback: object) -> tuple[object, int]:
    """Open and start a mono float32 stream at the device's own rate, 20 ms blocks."""
    try:
        import sounddevice as sd
    except OSError as e:
        raise AudioDeviceError(f"no audio system ({e}); install libportaudio2") from e
    try:
        rate = int(float(sd.query_devices(device, kind=kind)["default_samplerate"]))
        cls = sd.InputStream if kind == "input" else sd.OutputStream
        stream = cls(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=int(rate * BLOCK_S),
            callback=callback,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as e:
        raise AudioDeviceError(f"cannot open the {kind} device {device or 'default'}: {e}") from e
    return stream, rate


def _close(stream: object) -> None:
    """Abort and close a stream if there is one."""
    if stream is not None:
        stream.abort()  # type: ignore[attr-defined]
        stream.close()  # type: ignore[attr-defined]
