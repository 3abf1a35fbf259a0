"""Sound devices: the microphone sense and the speaker (the only sounddevice importer).

``Microphone`` owns one PortAudio input stream. Its callback does nothing but copy the block
into a bounded ring (``deque(maxlen=...)``: appends are atomic, no lock, the oldest audio is
dropped on overflow) and stops taking audio the moment its lease is revoked. Everything else
(resampling to 16 kHz, VAD, ASR, level metering, noticing that the device went away) happens
on the hearing thread (``engine/hearing/listener.py``).

Device choice: ``resolve`` turns what the user typed (an index, or part of a device name)
into one ``AudioDevice`` from PortAudio's list, or a one-line error that lists the devices
there are. A chosen device is reopened by its name (and host API), never by its index, which
changes when devices come and go; the default device is looked up again at every open, so
a changed default is followed.

Recovery has three PortAudio quirks to live with, each handled here and nowhere else:

- PortAudio lists devices once, in ``Pa_Initialize``: a device plugged in (or back in under
  another card number) afterwards is invisible until PortAudio is re-initialised
  (``sd._terminate()`` + ``sd._initialize()``; measured under PulseAudio: an ALSA device
  added after start-up appears only after that). ``rescan`` does it when the chosen device is
  missing or fails to open. ``Pa_Terminate`` frees every stream in the process, so other
  streams (the speaker) are closed first and reopened on the same device at the same rate
  afterwards; a rescan is skipped while the speaker is playing or a stream is still closing.
- A stream on a stalled device (a frozen sound server, a wedged driver) blocks in
  ``Pa_AbortStream`` until the device answers, possibly forever; so do opens. Closing and
  opening the microphone therefore run on short-lived helper threads, and the caller gives
  up after ``CLOSE_TIMEOUT_S`` / ``OPEN_TIMEOUT_S``. An open that answers late is adopted by
  the next ``start``, or closed if the microphone was stopped meanwhile.
- PortAudio's ALSA back end prints a few lines to standard error for every failed open; while
  a lost device is retried once a second that would flood the terminal, so retries silence
  file descriptor 2 for the length of the open (as sounddevice does for ``Pa_Initialize``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.errors import EngineError
from engine.senses import DeviceProbe
from permissions.gate import Lease

log = logging.getLogger(__name__)

BLOCK_S = 0.02
OUTPUT_LATENCY_S = 0.06
"""Requested output latency: three 20 ms blocks. Measured through PulseAudio here (a block
queued, then found in the speaker's monitor): PortAudio's default (0.04 s) took 55-60 ms and
printed ALSA "underrun occurred" at stream starts; 0.06 s took 70-80 ms with no underrun;
0.1 s took 155-165 ms."""
RING_S = 5.0
OPEN_TIMEOUT_S = 3.0
"""How long a caller waits for a device to open before it is told the device does not answer."""
CLOSE_TIMEOUT_S = 1.0
"""How long a caller waits for a stream to close; a stalled one is left to close on its own."""
RESCAN_S = 2.0
"""PortAudio is re-initialised at most this often (it briefly closes the speaker)."""

Kind = Literal["input", "output"]


class AudioDeviceError(EngineError):
    """A microphone or speaker could not be found or opened, or it went away."""


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """One captured block (mono float32 at the device rate) and its sequence number."""

    seq: int
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class AudioDevice:
    """One device in PortAudio's list."""

    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    rate: int
    """The device's default sample rate (streams are opened at it)."""
    default_input: bool = False
    default_output: bool = False

    def channels(self, kind: Kind) -> int:
        """Input or output channels."""
        return self.inputs if kind == "input" else self.outputs

    def is_default(self, kind: Kind) -> bool:
        """Whether this is the default input or output device."""
        return self.default_input if kind == "input" else self.default_output

    def to_json(self) -> dict[str, object]:
        """A JSON object for ``tandem devices --json``."""
        return {
            "index": self.index,
            "name": self.name,
            "hostapi": self.hostapi,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "default_samplerate": self.rate,
            "default_input": self.default_input,
            "default_output": self.default_output,
        }


def _sounddevice() -> Any:  # the module has no type information
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio's shared library is missing
        raise AudioDeviceError(f"no audio system ({e}); install libportaudio2") from e
    return sd


def devices() -> list[AudioDevice]:
    """Every device PortAudio lists, with the default input and output marked."""
    sd = _sounddevice()
    try:
        raw = list(sd.query_devices())
        apis = [str(a["name"]) for a in sd.query_hostapis()]
    except sd.PortAudioError as e:
        raise AudioDeviceError(f"cannot list the audio devices ({e})") from e
    default_in, default_out = _default_index(sd, "input"), _default_index(sd, "output")
    found = []
    for i, d in enumerate(raw):
        index = int(d.get("index", i))
        api = int(d.get("hostapi", -1))
        found.append(
            AudioDevice(
                index=index,
                name=str(d["name"]),
                hostapi=apis[api] if 0 <= api < len(apis) else "?",
                inputs=int(d["max_input_channels"]),
                outputs=int(d["max_output_channels"]),
                rate=int(float(d["default_samplerate"])),
                default_input=index == default_in,
                default_output=index == default_out,
            )
        )
    return found


def _default_index(sd: Any, kind: Kind) -> int | None:
    try:
        info = sd.query_devices(kind=kind)
    except (sd.PortAudioError, ValueError):  # no default device of this kind
        return None
    return int(info["index"]) if isinstance(info, dict) and "index" in info else None


def resolve(choice: int | str | None, kind: Kind) -> AudioDevice:
    """The device the user means: None (the default), an index, or part of a device name.

    An exact name (case-insensitive) wins over a partial one; a partial name must match
    exactly one device of this kind.

    Raises:
        AudioDeviceError: nothing matches, several devices match, or the device has no
            channels of this kind; the message lists the devices of this kind there are.
    """
    found = devices()
    usable = [d for d in found if d.channels(kind) > 0]
    if choice is None or (isinstance(choice, str) and not choice.strip()):
        default = next((d for d in usable if d.is_default(kind)), None)
        if default is None:
            raise AudioDeviceError(f"no default {kind} device; {_listing(usable, kind)}")
        return default
    text = str(choice).strip()
    if isinstance(choice, int) or text.isdigit():
        device = next((d for d in found if d.index == int(text)), None)
        if device is None:
            raise AudioDeviceError(f"no {kind} device has index {text}; {_listing(usable, kind)}")
    else:
        wanted = text.casefold()
        exact = [d for d in found if d.name.casefold() == wanted]
        partial = exact or [d for d in found if wanted in d.name.casefold()]
        if not partial:
            raise AudioDeviceError(f"no {kind} device matches {text!r}; {_listing(usable, kind)}")
        fitting = [d for d in partial if d.channels(kind) > 0]
        if len(fitting) > 1 and not exact:
            raise AudioDeviceError(
                f"{text!r} matches several {kind} devices "
                f"({', '.join(_label(d, kind) for d in fitting)}); give the index"
            )
        device = fitting[0] if fitting else partial[0]
    if device.channels(kind) == 0:
        raise AudioDeviceError(
            f"{_label(device, kind)} has no {kind} channels; {_listing(usable, kind)}"
        )
    return device


def _label(d: AudioDevice, kind: Kind) -> str:
    return f"[{d.index}] {d.name}" + (" (default)" if d.is_default(kind) else "")


def _listing(usable: list[AudioDevice], kind: Kind) -> str:
    return f"{kind} devices: " + (", ".join(_label(d, kind) for d in usable) or "none")


def _find_again(chosen: AudioDevice, kind: Kind) -> AudioDevice | None:
    """The chosen device in the current list: same name and host API, else same name."""
    found = [d for d in devices() if d.channels(kind) > 0 and d.name == chosen.name]
    same_api = [d for d in found if d.hostapi == chosen.hostapi]
    return (same_api or found)[0] if found else None


def probe(device: int | str | None = None) -> DeviceProbe:
    """Look for the input device (the default one unless chosen) without opening it."""
    try:
        found = resolve(device, "input")
    except AudioDeviceError as e:
        return DeviceProbe(False, str(e))
    return DeviceProbe(True, f"{found.name} ({found.rate} Hz)")


# --- PortAudio state: the streams open in this process, and re-initialisation -------------


class _PortAudio:
    """Process-wide PortAudio bookkeeping: who holds streams, what is closing, rescans."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # PortAudio-wide operations: opening, re-initialising
        self.owners: weakref.WeakSet[Microphone | Speaker] = weakref.WeakSet()
        self.closing = 0  # streams whose close has not returned yet (a stalled one may never)
        self.closing_lock = threading.Lock()
        self.last_rescan = float("-inf")
        self.rescans = 0


_pa = _PortAudio()


def rescans() -> int:
    """How many times PortAudio was re-initialised in this process."""
    return _pa.rescans


def rescan(caller: object | None = None) -> bool:
    """Re-initialise PortAudio so its device list shows what is plugged in now.

    Other open streams (the speaker) are closed first and reopened afterwards on the same
    device at the same rate. Skipped (returns False) when one ran less than ``RESCAN_S`` ago,
    while the speaker is playing, while another microphone is open, or while a stream is
    still closing: ``Pa_Terminate`` would free a stream under its owner.
    """
    sd = _sounddevice()
    with _pa.lock:
        now = time.monotonic()
        others = [o for o in list(_pa.owners) if o is not caller and o.is_open]
        if _pa.closing or now - _pa.last_rescan < RESCAN_S or any(o.busy for o in others):
            return False
        _pa.last_rescan = now
        done = False
        if all([o.suspend() for o in others]):  # every one of them, even after a failure
            try:
                sd._terminate()
                sd._initialize()
                _pa.rescans += 1
                done = True
            except sd.PortAudioError as e:
                log.warning("audio: re-initialising PortAudio failed (%s)", e)
        for o in others:
            o.resume()
    if done:
        log.info("audio: PortAudio re-initialised (%d rescans so far)", _pa.rescans)
    return done


def _open(
    kind: Kind,
    device: AudioDevice,
    callback: Callable[..., None],
    rate: int = 0,
    quiet: bool = False,
) -> tuple[object, int]:
    """Open and start a mono float32 stream, 20 ms blocks, at ``rate`` or the device's own."""
    sd = _sounddevice()
    rate = rate or device.rate
    cls = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        with _pa.lock, _stderr_silenced(quiet):
            stream = cls(
                device=device.index,
                samplerate=rate,
                channels=1,
                dtype="float32",
                blocksize=int(rate * BLOCK_S),
                **({"latency": OUTPUT_LATENCY_S} if kind == "output" else {}),
                callback=callback,
            )
        try:
            stream.start()
        except sd.PortAudioError:
            _close(stream)
            raise
    except (sd.PortAudioError, ValueError) as e:
        raise AudioDeviceError(f"cannot open the {kind} device {device.name!r}: {e}") from e
    return stream, rate


def _close(stream: object, timeout: float | None = CLOSE_TIMEOUT_S) -> bool:
    """Abort and close a stream; False when it did not finish within ``timeout``.

    The work runs on a helper thread: on a stalled device abort blocks until the device
    answers, and the caller must not hang with it. The helper finishes on its own later.
    """
    if stream is None:
        return True
    with _pa.closing_lock:
        _pa.closing += 1

    def work() -> None:
        sd = _sounddevice()
        try:
            stream.abort()  # type: ignore[attr-defined]
            stream.close()  # type: ignore[attr-defined]
        except sd.PortAudioError as e:
            log.info("audio: closing a stream failed (%s)", e)
        finally:
            with _pa.closing_lock:
                _pa.closing -= 1

    helper = threading.Thread(target=work, name="tandem-audio-close", daemon=True)
    helper.start()
    helper.join(timeout)
    if helper.is_alive():
        log.warning("audio: a stream did not close within %.0f s; left to close", timeout)
        return False
    return True


@contextlib.contextmanager
def _stderr_silenced(quiet: bool) -> Iterator[None]:
    if not quiet:
        yield
        return
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# --- the microphone --------------------------------------------------------------------


class _Attempt:
    """One open running on a helper thread; its result is taken by whoever waits for it."""

    def __init__(self, work: Callable[[], tuple[object, int, AudioDevice]]) -> None:
        self.done = threading.Event()
        self.result: tuple[object, int, AudioDevice] | None = None
        self.error: AudioDeviceError | None = None
        self.abandoned = False
        self._work = work
        threading.Thread(target=self._run, name="tandem-mic-open", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._work()
        except AudioDeviceError as e:
            self.error = e
        except Exception as e:  # a bug must still reach the Listener's report, not kill it
            log.exception("microphone: opening failed unexpectedly")
            self.error = AudioDeviceError(f"opening the input device failed ({e!r})")
        finally:
            self.done.set()


class Microphone:
    """A capture stream on one device, held under a lease from the gate.

    ``device`` is the user's choice (None: the default, followed when it changes). Once
    resolved, the device is reopened by its name.
    """

    def __init__(self, lease: Lease, device: int | str | None = None) -> None:
        self.lease = lease
        self.device = device
        self.chosen: AudioDevice | None = None
        self.name = ""
        self.rate = 0
        self.ring: deque[AudioBlock] = deque()
        self._seq = 0
        self._stream: object = None
        self._attempt: _Attempt | None = None
        self._lock = threading.Lock()
        self._attempts = 0
        _pa.owners.add(self)

    def start(self) -> None:
        """Open and start the stream at the device's own rate (resampled later).

        Waits at most ``OPEN_TIMEOUT_S``; an open still running then is taken by the next call.
        Every attempt after the first may rescan PortAudio (when the device is missing or
        fails to open) and keeps PortAudio's error chatter off the terminal.

        Raises:
            AudioDeviceError: the device is missing, failed to open, or did not answer.
        """
        with self._lock:
            if self._stream is not None:
                return
            attempt = self._attempt
            if attempt is None:
                retry = self._attempts > 0
                self._attempts += 1
                attempt = self._attempt = _Attempt(lambda: self._open_now(retry))
        if not attempt.done.wait(OPEN_TIMEOUT_S):
            raise AudioDeviceError(f"the input device did not answer in {OPEN_TIMEOUT_S:.0f} s")
        with self._lock:
            if attempt.abandoned:  # stopped meanwhile: the stream is closed by the reaper
                raise AudioDeviceError("the microphone was stopped")
            self._attempt = None
            if attempt.error is not None:
                raise attempt.error
            assert attempt.result is not None
            self._stream, self.rate, device = attempt.result
            self.name = device.name

    def _open_now(self, retry: bool) -> tuple[object, int, AudioDevice]:
        """Find the device and open it (on the attempt's helper thread)."""
        device = self._find(retry)
        self.ring = deque(maxlen=int(RING_S / BLOCK_S))
        try:
            stream, rate = _open("input", device, self._callback, quiet=retry)
        except AudioDeviceError:
            if not (retry and rescan(self)):
                raise
            device = self._find(False)
            stream, rate = _open("input", device, self._callback, quiet=True)
        if self.chosen is None and self.device is not None:
            self.chosen = device  # reopened by name from now on
        return stream, rate, device

    def _find(self, may_rescan: bool) -> AudioDevice:
        """The device to open now; a missing one may be worth a rescan."""
        try:
            return self._lookup()
        except AudioDeviceError:
            if not (may_rescan and rescan(self)):
                raise
        return self._lookup()

    def _lookup(self) -> AudioDevice:
        if self.chosen is None:  # not chosen yet, or the default: follow whatever it is now
            return resolve(self.device, "input")
        again = _find_again(self.chosen, "input")
        if again is None:
            raise AudioDeviceError(f"the input device {self.chosen.name!r} is gone")
        return again

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        # Copy and hand off, nothing else (no locks, no logging, no analysis).
        if self.lease.revoked_reason is not None:
            return
        self._seq += 1
        self.ring.append(AudioBlock(self._seq, indata[:, 0].copy()))

    @property
    def delivered(self) -> int:
        """Blocks the device has delivered so far (a watchdog sees it stop moving)."""
        return self._seq

    @property
    def alive(self) -> bool:
        """True while the stream runs (False once the device vanished or it was stopped)."""
        stream = self._stream
        return bool(stream is not None and getattr(stream, "active", False))

    @property
    def is_open(self) -> bool:
        """Whether a stream is open (running or not)."""
        return self._stream is not None

    @property
    def busy(self) -> bool:
        """Never too busy to be reopened (the rescan protocol asks)."""
        return False

    def suspend(self) -> bool:
        """Close for a rescan (the microphone never is: its own open asks for the rescan)."""
        return False

    def resume(self) -> None:
        """Nothing to do: a microphone is never suspended."""

    def stop(self) -> None:
        """Stop and close the stream (idempotent, never hangs on a stalled device)."""
        with self._lock:
            stream, self._stream = self._stream, None
            attempt, self._attempt = self._attempt, None
            if attempt is not None:  # an open still running: the reaper closes what it opens
                attempt.abandoned = True
                _reap(attempt)
        _close(stream)


def _reap(attempt: _Attempt) -> None:
    def reap() -> None:
        attempt.done.wait()
        if attempt.result is not None:
            _close(attempt.result[0], timeout=None)

    threading.Thread(target=reap, name="tandem-mic-reap", daemon=True).start()


# --- the speaker -----------------------------------------------------------------------


class Speaker:
    """One PortAudio output stream that plays queued audio and keeps what it played.

    The callback copies queued blocks out (silence on underrun) and copies each played block
    into ``played`` (the echo reference), nothing else. ``flush`` drops everything queued at
    once: barge-in stops the voice within one audio block (20 ms). Silence is recorded in
    ``played`` too, so the reference stays aligned with the microphone in time.
    """

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device
        self.chosen: AudioDevice | None = None
        self.rate = 0
        self._queue: deque[np.ndarray] = deque()
        self.played: deque[AudioBlock] = deque(maxlen=int(RING_S / BLOCK_S))
        self._seq = 0
        self._block = 0
        self._silence = np.zeros(0, dtype=np.float32)
        self._stream: object = None
        self._lock = threading.Lock()
        self._stopped = False
        _pa.owners.add(self)

    def start(self) -> None:
        """Open and start the output stream at the device's own rate."""
        self._stopped = False
        self.chosen = resolve(self.device, "output")
        self._stream, self.rate = _open("output", self.chosen, self._callback)
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

    @property
    def queued_s(self) -> float:
        """Seconds of audio queued and not yet handed to the device."""
        return len(self._queue) * BLOCK_S

    @property
    def latency_s(self) -> float:
        """The output stream's own latency: from the callback to the speaker (PortAudio)."""
        latency = getattr(self._stream, "latency", 0.0)
        return float(latency) if isinstance(latency, int | float) else 0.0

    @property
    def is_open(self) -> bool:
        """Whether a stream is open."""
        return self._stream is not None

    @property
    def alive(self) -> bool:
        """True while the stream runs."""
        stream = self._stream
        return bool(stream is not None and getattr(stream, "active", False))

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

    def suspend(self) -> bool:
        """Close the stream for a rescan; False if it did not close in time."""
        with self._lock:
            stream, self._stream = self._stream, None
        return _close(stream)

    def resume(self) -> None:
        """Reopen on the same device (by name) at the same rate after a rescan."""
        try:
            chosen = self.chosen and _find_again(self.chosen, "output")
            if chosen is None:
                raise AudioDeviceError("the output device is gone")
            stream, _ = _open("output", chosen, self._callback, rate=self.rate)
        except AudioDeviceError as e:
            log.warning("speaker: not reopened after a device rescan (%s)", e)
            return
        with self._lock:
            if not self._stopped:
                self._stream, stream = stream, None
        _close(stream)  # stopped meanwhile

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        with self._lock:
            self._stopped = True
            stream, self._stream = self._stream, None
        _close(stream)
