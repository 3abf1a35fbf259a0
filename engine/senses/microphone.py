"""The microphone sense (the only sounddevice importer).

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


class MicrophoneError(EngineError):
    """The microphone could not be opened, or it went away."""


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
        try:
            import sounddevice as sd
        except OSError as e:
            raise MicrophoneError(f"no audio system ({e}); install libportaudio2") from e
        try:
            info = sd.query_devices(self.device, kind="input")
            self.rate = int(float(info["default_samplerate"]))
            self.ring = deque(maxlen=int(RING_S / BLOCK_S))
            stream = sd.InputStream(
                device=self.device,
                samplerate=self.rate,
                channels=1,
                dtype="float32",
                blocksize=int(self.rate * BLOCK_S),
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise MicrophoneError(
                f"cannot open the microphone {self.device or 'default'}: {e}"
            ) from e
        self._stream = stream

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
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()  # type: ignore[attr-defined]
            stream.close()  # type: ignore[attr-defined]
