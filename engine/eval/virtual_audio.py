"""A private PulseAudio for live measurement: a virtual speaker and microphone, one recording.

The same recipe as the project's device tests (``tests/devices/audio-up.sh``: a sound
server of our own in a temporary folder, no sound card, silent keep-alive streams, a
``virtmic`` ALSA device that PortAudio lists), with one change for measurement: the two
null sinks are the two halves of one stereo null sink.

- ``mix``      a stereo null sink; its monitor is what ``Recorder`` records.
- ``speaker``  a mono remap of ``mix``'s *left* channel: Tandem plays into it.
- ``micfeed``  a mono remap of ``mix``'s *right* channel: the scenario's audio is played in.
- ``virtmic``  a mono remap source of ``mix.monitor``'s right channel: Tandem's microphone.

So one recording holds what the speaker played (left) and what the microphone heard (right)
sample-locked on one clock: nothing has to be assumed about when two recorders started.
Both ``speaker`` and ``virtmic`` are also ALSA devices of those names (``XDG_CONFIG_HOME/
alsa/asoundrc``), so ``tandem run --mic-device virtmic --speaker-device speaker`` finds them
through PortAudio like real devices. Remap sinks add no buffering of their own: they render
inside the master's thread.

The recorder's chunks are timestamped as they arrive (``time.monotonic``, one clock for
every process on the machine): the earliest ``arrival - samples_so_far / rate`` is when the
recording's first sample was captured (late by the smallest delivery delay, a few ms with
10 ms fragments), which places any recorded sample on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from engine.core.processes import ProcessError, Spawned, run, spawn
from engine.errors import EngineError

TOOLS = ("pulseaudio", "pactl", "pacat", "paplay", "parec")
SPEAKER, MICFEED, MIC, MIX = "speaker", "micfeed", "virtmic", "mix"
RATE = 16000
"""The recording's sample rate (what every metric is computed at)."""
FRAGMENT_MS = 10
START_TIMEOUT_S = 10.0

PA_SCRIPT = f"""load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name={MIX} channels=2 channel_map=front-left,front-right \
rate=48000 sink_properties=device.description=EvalMix
load-module module-remap-sink sink_name={SPEAKER} master={MIX} channels=1 \
master_channel_map=front-left channel_map=mono remix=no \
sink_properties=device.description=VirtualSpeaker
load-module module-remap-sink sink_name={MICFEED} master={MIX} channels=1 \
master_channel_map=front-right channel_map=mono remix=no \
sink_properties=device.description=MicFeed
load-module module-remap-source source_name={MIC} master={MIX}.monitor channels=1 \
master_channel_map=front-right channel_map=mono remix=no \
source_properties=device.description=VirtualMic
set-default-sink {SPEAKER}
set-default-source {MIC}
"""
ASOUNDRC = "".join(
    f"pcm.{name} {{\n    type pulse\n    device {name}\n"
    f'    hint {{ show on description "{what} (PulseAudio {name})" }}\n}}\n'
    for name, what in ((MIC, "VirtualMic"), (SPEAKER, "VirtualSpeaker"))
)


class VirtualAudioError(EngineError):
    """The private sound server cannot run here (tools missing) or did not start."""


def missing_tools() -> list[str]:
    """The PulseAudio programs that are not installed (empty when all are)."""
    return [t for t in TOOLS if shutil.which(t) is None]


class VirtualAudio:
    """A private PulseAudio in a temporary folder; a context manager that always stops it.

    ``env`` is the environment for every child that should use it (Tandem, players,
    recorders): the caller's environment with the server's socket, client config and ALSA
    devices pointing here.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._own = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tandem-vaudio-"))
        run_dir = self.folder / "run"
        self.env: dict[str, str] = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(run_dir),
            "PULSE_SERVER": f"unix:{run_dir / 'pulse' / 'native'}",
            "PULSE_CLIENTCONFIG": str(run_dir / "pulse" / "client.conf"),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
        }
        self._server: Spawned | None = None
        self._keepers: list[Spawned] = []

    def __enter__(self) -> VirtualAudio:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration, start the server and its keep-alive streams.

        Raises:
            VirtualAudioError: a tool is missing, or the server did not answer in time.
        """
        missing = missing_tools()
        if missing:
            raise VirtualAudioError(
                f"PulseAudio is needed for live measurement; missing: {', '.join(missing)} "
                "(Debian: apt install pulseaudio pulseaudio-utils)"
            )
        run_dir = self.folder / "run"
        (run_dir / "pulse").mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        (self.folder / "pa.pa").write_text(PA_SCRIPT)
        (self.folder / "daemon.conf").write_text("rescue-streams = no\n")
        (run_dir / "pulse" / "client.conf").write_text("autospawn = no\n")
        alsa = self.folder / "config" / "alsa"
        alsa.mkdir(parents=True, exist_ok=True)
        (alsa / "asoundrc").write_text(ASOUNDRC)
        log = self.folder / "pulse.log"
        self._server = spawn(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(self.folder / "pa.pa"),
                "--exit-idle-time=-1",
                "--daemonize=no",
                "--log-target=stderr",
            ],
            env={**self.env, "PULSE_CONFIG": str(self.folder / "daemon.conf")},
            stderr=log,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                run(["pactl", "info"], env=self.env, timeout_s=2.0)
                break
            except ProcessError as e:
                status = self._server.poll()
                if status is not None or time.monotonic() > deadline:
                    self.stop()
                    why = f"exited with status {status}" if status is not None else str(e)
                    raise VirtualAudioError(
                        f"the private PulseAudio did not start ({why}): {_last_line(log)}"
                    ) from None
                time.sleep(0.05)
        # A silent stream on each sink keeps the null sink rendering: without one the first
        # capture from its monitor can wait seconds, and a recording starts only with sound.
        for sink in (MICFEED, SPEAKER):
            self._keepers.append(
                spawn(
                    [
                        "pacat",
                        "--playback",
                        f"--device={sink}",
                        "--latency-msec=20",
                        "--format=s16le",
                        "--rate=48000",
                        "--channels=1",
                        "--raw",
                        os.devnull,
                    ],
                    env=self.env,
                    name=f"keeper-{sink}",
                )
            )

    def play(self, wav: Path) -> Spawned:
        """Start playing ``wav`` into the virtual microphone (``paplay``, real time)."""
        return spawn(["paplay", f"--device={MICFEED}", str(wav)], env=self.env, name="paplay")

    def recorder(self) -> Recorder:
        """A recorder of the speaker (left) and the microphone's feed (right)."""
        return Recorder(self.env)

    def stop(self) -> None:
        """Stop the keep-alive streams, then the server (idempotent); remove its folder."""
        keepers, self._keepers = self._keepers, []
        for k in keepers:
            k.stop()
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout_s=3.0)
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
        return lines[-1] if lines else ""
    return ""


@dataclass(frozen=True, slots=True)
class Recording:
    """What the virtual speaker played and what the microphone heard, sample-locked.

    ``origin`` is the monotonic time of sample 0 (see the module docstring).
    """

    speaker: np.ndarray
    mic: np.ndarray
    rate: int
    origin: float

    def at(self, monotonic_t: float) -> int:
        """The sample index of a ``time.monotonic()`` instant."""
        return round((monotonic_t - self.origin) * self.rate)

    def time_of(self, index: int) -> float:
        """The monotonic time of a sample index."""
        return self.origin + index / self.rate


class Recorder:
    """``parec`` of ``mix.monitor`` (16 kHz stereo s16), read by a thread that timestamps
    every chunk as it arrives."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._proc: Spawned | None = None
        self._chunks: list[bytes] = []
        self._origin = float("inf")
        self._bytes = 0
        self._first = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 5.0) -> None:
        """Start recording; returns once the first samples arrived.

        Raises:
            VirtualAudioError: nothing arrived within ``timeout_s``.
        """
        self._proc = spawn(
            [
                "parec",
                f"--device={MIX}.monitor",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=2",
                "--raw",
                f"--latency-msec={FRAGMENT_MS}",
            ],
            env=self.env,
            stdout="pipe",
            name="parec",
        )
        self._thread = threading.Thread(target=self._read, name="tandem-eval-recorder")
        self._thread.start()
        if not self._first.wait(timeout_s):
            self.stop()
            raise VirtualAudioError(f"the recorder delivered nothing in {timeout_s:.0f} s")

    def _read(self) -> None:
        proc = self._proc  # ``stop`` clears the field while this thread may still be reading
        assert proc is not None
        while chunk := proc.read():
            now = time.monotonic()
            self._chunks.append(chunk)
            self._bytes += len(chunk)
            # Lower envelope: the chunk's last sample was captured no later than now.
            self._origin = min(self._origin, now - (self._bytes // 4) / RATE)
            self._first.set()

    @property
    def seconds(self) -> float:
        """Seconds recorded so far."""
        return self._bytes / 4 / RATE

    def stop(self) -> Recording:
        """Stop recording and return what was recorded."""
        proc, self._proc = self._proc, None
        thread, self._thread = self._thread, None
        if proc is not None:
            proc.stop()  # the reader drains the pipe to its end and closes it
        if thread is not None:
            thread.join()
        raw = b"".join(self._chunks)
        x = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i2").reshape(-1, 2)
        pcm = x.astype(np.float32) / 32768.0
        origin = self._origin if np.isfinite(self._origin) else time.monotonic()
        return Recording(pcm[:, 0].copy(), pcm[:, 1].copy(), RATE, origin)
