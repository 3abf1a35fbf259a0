"""The microphone on real devices: choosing one, losing it and getting it back, its level.

A private PulseAudio (``tests/devices/audio-up.sh``, rescue-streams off) stands in for the
sound system; ``virtmic`` is both a PulseAudio source and an ALSA device of that name, so it
can be chosen like a USB microphone and unplugged with ``pactl unload-module``. The real
Listener runs in a child process (``tests/devices/mic_probe.py``) that prints what it says
and hears, stamped with the monotonic clock, while the test unplugs, freezes and replugs.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.vaudio import (
    DEVICES,
    TANDEM,
    needs_pulseaudio,
    private_pulseaudio,
    speak_when_listening,
    spoken,
    tandem,
)

HERE = DEVICES
REPO = HERE.parents[1]
VIRTMIC = (
    "module-remap-source master=micfeed.monitor source_name=virtmic "
    "source_properties=device.description=VirtualMic"
)

pytestmark = [needs_pulseaudio, pytest.mark.slow]


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """A private PulseAudio of this module's own (its tests unplug and freeze it)."""
    folder = tmp_path_factory.mktemp("vaudio")
    with private_pulseaudio(folder) as env:
        env.pop("DISPLAY", None)
        env["PYTHONPATH"] = str(REPO)
        yield env, folder


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken(tmp_path_factory.mktemp("speech") / "say.wav")


def pactl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        ["pactl", *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def unplug_virtmic(env: dict[str, str]) -> None:
    modules = pactl(env, "list", "short", "modules").splitlines()
    (index,) = [m.split()[0] for m in modules if "source_name=virtmic" in m]
    pactl(env, "unload-module", index)


def plug_virtmic(env: dict[str, str]) -> None:
    if "virtmic" not in pactl(env, "list", "short", "sources"):
        pactl(env, "load-module", *VIRTMIC.split())


def play(env: dict[str, str], wav: Path, sink: str = "micfeed") -> None:
    subprocess.run(["paplay", f"--device={sink}", str(wav)], env=env, check=True, timeout=60)


class Probe:
    """The real Listener in a child process; its lines are read as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "mic_probe.py"), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._queue: queue.Queue[tuple[float, str]] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            stamp, _, rest = raw.rstrip("\n").partition(" ")
            self._queue.put((float(stamp), rest))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def expect(self, wanted: Callable[[str], bool], timeout: float) -> float:
        """Wait for a line that ``wanted`` accepts; returns its time stamp."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                stamp, line = self._queue.get(timeout=max(0.01, left))
            except queue.Empty:
                pytest.fail(f"no such line in {timeout} s; got: {self.said()}")
            self.lines.append((stamp, line))
            if wanted(line):
                return stamp
            if left <= 0:
                pytest.fail(f"no such line in {timeout} s; got: {self.said()}")

    def said(self) -> list[str]:
        return [line for _, line in self.lines]

    def quit(self) -> dict[str, str]:
        """Revoke the lease and stop; returns the closing figures."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0, "".join(self._stderr)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        figures = dict(line.split(" ", 1) for line in self.said() if " " in line)
        assert "Traceback" not in "".join(self._stderr)
        return figures

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def reports(probe: Probe) -> list[str]:
    return [line.removeprefix("report ") for line in probe.said() if line.startswith("report ")]


def listening_on(name: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(f"report microphone: listening ({name},")


def heard(words: str) -> Callable[[str], bool]:
    return lambda line: line.startswith("heard ") and words in line.lower()


def test_an_unplugged_microphone_is_reported_lost_and_heard_again_when_it_is_back(
    audio: tuple[dict[str, str], Path], speech_wav: Path
) -> None:
    env, _ = audio
    pactl(env, "set-default-source", "micfeed.monitor")  # the "built-in" mic stays
    probe = Probe(env, "virtmic")
    try:
        probe.expect(listening_on("virtmic"), 60)
        unplugged = time.monotonic()
        unplug_virtmic(env)
        lost_at = probe.expect(lambda line: line.startswith("report microphone: lost ("), 15)
        time.sleep(2.5)  # a few reopen attempts fail while it is away
        plug_virtmic(env)
        replugged = time.monotonic()
        back = probe.expect(listening_on("virtmic"), 20)
        play(env, speech_wav)
        probe.expect(heard("which one fail"), 60)  # the last words: ASR is idle
        figures = probe.quit()
    finally:
        probe.kill()
        plug_virtmic(env)
        pactl(env, "set-default-source", "virtmic")
    said = reports(probe)
    lost = [line for line in said if "lost" in line]
    assert len(lost) == 1 and lost[0].endswith("; retrying"), said  # reported once
    i = said.index(lost[0])
    assert said[i + 1].startswith("microphone: listening (virtmic,"), said  # retries are quiet
    assert said[-1].startswith("microphone: stopped (")
    assert figures["after-revoke"] == "0"
    print(f"\nvirtmic unloaded -> lost: {lost_at - unplugged:.2f} s")
    print(f"virtmic reloaded -> listening again: {back - replugged:.2f} s")


def test_a_device_gone_from_portaudios_list_is_found_after_a_rescan_and_the_speaker_survives(
    audio: tuple[dict[str, str], Path], speech_wav: Path
) -> None:
    env, folder = audio
    asoundrc = folder / "config" / "alsa" / "asoundrc"
    definition = asoundrc.read_text()
    pactl(env, "set-default-source", "micfeed.monitor")
    probe = Probe(env, "virtmic", "--speaker")
    try:
        probe.expect(listening_on("virtmic"), 60)
        unplug_virtmic(env)
        asoundrc.write_text("")  # the device is gone from the system's list too
        probe.expect(lambda line: line.startswith("report microphone: lost ("), 15)
        time.sleep(3.0)  # PortAudio rescans and no longer lists it
        asoundrc.write_text(definition)
        plug_virtmic(env)
        replugged = time.monotonic()
        back = probe.expect(listening_on("virtmic"), 20)
        play(env, speech_wav)
        probe.expect(heard("which one fail"), 60)  # the last words: ASR is idle
        figures = probe.quit()
    finally:
        probe.kill()
        asoundrc.write_text(definition)
        plug_virtmic(env)
        pactl(env, "set-default-source", "virtmic")
    assert int(figures["rescans"]) >= 2  # one lost the device from the list, one found it
    assert figures["speaker-alive"] == "1"  # closed and reopened around every rescan
    assert figures["after-revoke"] == "0"
    assert sum("lost" in line for line in reports(probe)) == 1
    print(f"\nvirtmic back in the list -> listening again: {back - replugged:.2f} s")


def test_a_frozen_sound_server_trips_the_watchdog_and_hearing_resumes(
    audio: tuple[dict[str, str], Path], speech_wav: Path
) -> None:
    env, folder = audio
    server = int((folder / "pulse.pid").read_text().split()[0])
    probe = Probe(env, "-", "--levels")
    try:
        probe.expect(listening_on("default"), 60)
        probe.expect(lambda line: line.startswith("level "), 10)  # audio flows: past the grace
        frozen = time.monotonic()
        os.kill(server, signal.SIGSTOP)  # the stream stays "active" but nothing arrives
        try:
            lost_at = probe.expect(
                lambda line: line.startswith("report microphone: lost (no audio"), 15
            )
        finally:
            time.sleep(1.0)
            os.kill(server, signal.SIGCONT)
        resumed = time.monotonic()
        back = probe.expect(listening_on("default"), 20)
        play(env, speech_wav)
        probe.expect(heard("which one fail"), 60)  # the last words: ASR is idle
        figures = probe.quit()
    finally:
        os.kill(server, signal.SIGCONT)
        probe.kill()
    assert sum("lost" in line for line in reports(probe)) == 1, reports(probe)
    assert figures["after-revoke"] == "0"
    print(f"\nserver frozen -> lost: {lost_at - frozen:.2f} s")
    print(f"server resumed -> listening again: {back - resumed:.2f} s")


def test_the_default_microphone_follows_the_default_source(
    audio: tuple[dict[str, str], Path], speech_wav: Path
) -> None:
    env, _ = audio
    probe = Probe(env, "-")
    try:
        probe.expect(listening_on("default"), 60)
        unplug_virtmic(env)  # it was the default: PulseAudio moves the stream to the new one
        source = pactl(env, "get-default-source")
        assert source.endswith(".monitor")
        play(env, speech_wav, sink=source.removesuffix(".monitor"))
        probe.expect(heard("which one fail"), 60)  # the last words: ASR is idle
        plug_virtmic(env)
        pactl(env, "set-default-source", "virtmic")
        time.sleep(0.5)
        play(env, speech_wav)
        probe.expect(heard("which one fail"), 60)  # the last words: ASR is idle
        figures = probe.quit()
    finally:
        probe.kill()
        plug_virtmic(env)
        pactl(env, "set-default-source", "virtmic")
    assert not any("lost" in line for line in reports(probe)), reports(probe)
    assert figures["after-revoke"] == "0"


def tone(path: Path, amplitude: float, seconds: float = 1.5, rate: int = 48_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, amplitude * np.sin(2 * np.pi * 1000 * t), rate, subtype="PCM_16")
    return path


def test_the_level_feed_measures_what_is_played_and_flags_clipping(
    audio: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = audio
    half, full = tone(tmp_path / "half.wav", 0.5), tone(tmp_path / "full.wav", 1.0)
    probe = Probe(env, "virtmic", "--levels")
    try:
        probe.expect(listening_on("virtmic"), 60)
        time.sleep(0.5)
        play(env, half)
        time.sleep(0.3)
        play(env, full)
        time.sleep(0.3)
        probe.quit()
    finally:
        probe.kill()
    levels = [line.split()[1:] for line in probe.said() if line.startswith("level ")]
    rms = np.array([float(x[0]) for x in levels])
    peak = np.array([float(x[1]) for x in levels])
    clip = np.array([x[2] == "1" for x in levels])
    assert rms.min() < -90  # digital silence between tones (the keeper streams play zeros)
    half = np.abs(peak + 6.0) < 1.0  # a sine at half scale peaks at -6 dBFS ...
    assert half.sum() >= 8 and abs(float(np.median(rms[half])) + 9.0) < 0.5, levels  # RMS -9
    assert not clip[half].any()
    full = rms > -4.5  # full scale: -3 dBFS RMS, peaks at 0 dBFS, clipping
    assert full.sum() >= 8 and clip[full].all() and (peak[full] > -0.2).all(), levels
    assert not clip[rms < -90].any()


def test_tandem_run_uses_the_chosen_microphone_and_prints_a_meter(
    audio: tuple[dict[str, str], Path], speech_wav: Path, tmp_path: Path
) -> None:
    env = {
        **audio[0],
        "TANDEM_CONFIG_DIR": str(tmp_path / "c"),
        "TANDEM_DATA_DIR": str(tmp_path / "d"),
    }
    wrong = tandem(env, "run", "--mic", "--mic-device", "blue yeti", timeout=60)
    assert wrong.returncode == 1 and "model:" not in wrong.stdout  # refused before loading
    error = wrong.stderr.strip().splitlines()[-1]
    assert error.startswith("tandem: error: no input device matches 'blue yeti'; input devices:")
    assert "virtmic" in error
    listed = tandem(env, "devices", "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    index = next(d["index"] for d in json.loads(listed.stdout)["devices"] if d["name"] == "virtmic")

    run = [*TANDEM, "run", "--mic", "--mic-device", str(index), "--levels", "--duration", "14"]
    proc = speak_when_listening(env, run, speech_wav, delay_s=1.0)  # a quiet second first
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "microphone: listening (virtmic," in out, out
    assert "vad     speech_start" in out, out
    meter = [line for line in out.splitlines() if re.match(r"\s*[\d.]+  level ", line)]
    stamps = [float(line.split()[0]) for line in meter]
    assert len(meter) >= 10, out
    assert all(b - a >= 0.2 - 1e-6 for a, b in itertools.pairwise(stamps)), stamps
    loudest = max(float(line.split()[2]) for line in meter)
    assert loudest > -40 and min(float(line.split()[2]) for line in meter) < -90, meter
