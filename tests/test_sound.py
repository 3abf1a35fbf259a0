"""Device choice, level metering and the Listener's watchdog, without a sound card.

Device resolution runs against sounddevice's own ``query_devices`` replaced by a fixed list;
the Listener runs its real thread against a scripted microphone that stalls or dies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from app.terminal import LevelMeter, meter_line
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.core.frames import ControlEvent, ControlKind, DataFrame, TranscriptDelta
from engine.hearing.listener import CLIP, FLOOR_DBFS, LevelWindow, Listener, MicLevel, dbfs
from engine.hearing.pipeline import Heard
from engine.senses import sound
from engine.senses.sound import AudioBlock, AudioDeviceError, Microphone, resolve
from permissions.gate import Gate, Lease
from permissions.model import AppContext, Decision, Rule, Sense

sd = pytest.importorskip("sounddevice")

DEVICES = [
    {"name": "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "hostapi": 0, "max_input_channels": 2,
     "max_output_channels": 2, "default_samplerate": 44100.0},
    {"name": "HDA Intel PCH: HDMI 0 (hw:0,3)", "hostapi": 0, "max_input_channels": 0,
     "max_output_channels": 8, "default_samplerate": 48000.0},
    {"name": "USB Audio Device: - (hw:1,0)", "hostapi": 0, "max_input_channels": 1,
     "max_output_channels": 0, "default_samplerate": 48000.0},
    {"name": "USB Audio Headset: - (hw:2,0)", "hostapi": 0, "max_input_channels": 1,
     "max_output_channels": 2, "default_samplerate": 16000.0},
    {"name": "pulse", "hostapi": 0, "max_input_channels": 32, "max_output_channels": 32,
     "default_samplerate": 44100.0},
    {"name": "default", "hostapi": 0, "max_input_channels": 32, "max_output_channels": 32,
     "default_samplerate": 44100.0},
]  # fmt: skip


@dataclass
class FakeDevices:
    listed: list[dict[str, Any]]
    defaults: dict[str, int]


@pytest.fixture
def fake_devices(monkeypatch: pytest.MonkeyPatch) -> FakeDevices:
    """sounddevice sees the devices above; the default input and output is 'default'."""
    fake = FakeDevices(
        [{**d, "index": i} for i, d in enumerate(DEVICES)], {"input": 5, "output": 5}
    )

    def query_devices(device: object = None, kind: str | None = None) -> object:
        if kind is not None:
            if fake.defaults[kind] < 0:
                raise sd.PortAudioError(f"No {kind} device available")
            return fake.listed[fake.defaults[kind]]
        return fake.listed

    monkeypatch.setattr(sd, "query_devices", query_devices)
    monkeypatch.setattr(sd, "query_hostapis", lambda: [{"name": "ALSA"}])
    return fake


def test_a_part_of_the_name_picks_the_one_input_device_it_matches(
    fake_devices: FakeDevices,
) -> None:
    found = resolve("usb audio device", "input")
    assert (found.index, found.inputs, found.rate) == (2, 1, 48000)
    assert resolve("ALC3246", "input").index == 0


def test_an_exact_name_wins_over_longer_names_that_contain_it(
    fake_devices: FakeDevices,
) -> None:
    fake_devices.listed.insert(0, {**fake_devices.listed[4], "name": "pulse monitor", "index": 9})
    assert resolve("pulse", "input").name == "pulse"


def test_an_index_picks_that_device(fake_devices: FakeDevices) -> None:
    assert resolve("3", "input").name.startswith("USB Audio Headset")
    assert resolve(4, "input").name == "pulse"


def test_nothing_given_means_the_default_device(fake_devices: FakeDevices) -> None:
    found = resolve(None, "input")
    assert found.name == "default" and found.default_input and found.default_output


def test_no_match_is_one_clear_line_listing_the_input_devices(
    fake_devices: FakeDevices,
) -> None:
    with pytest.raises(AudioDeviceError) as e:
        resolve("blue yeti", "input")
    msg = str(e.value)
    assert "\n" not in msg and "no input device matches 'blue yeti'" in msg
    assert "[2] USB Audio Device: - (hw:1,0)" in msg and "[5] default (default)" in msg
    assert "HDMI" not in msg  # it has no inputs: not offered as a microphone


def test_a_device_without_input_channels_is_refused(fake_devices: FakeDevices) -> None:
    for choice in ("HDMI", "1"):
        with pytest.raises(AudioDeviceError, match=r"HDMI 0 \(hw:0,3\) has no input channels"):
            resolve(choice, "input")
    assert resolve("HDMI", "output").outputs == 8  # as a speaker it is fine


def test_an_unknown_index_and_an_ambiguous_name_are_refused(
    fake_devices: FakeDevices,
) -> None:
    with pytest.raises(AudioDeviceError, match="no input device has index 17; input devices:"):
        resolve(17, "input")
    with pytest.raises(AudioDeviceError, match="matches several input devices") as e:
        resolve("USB", "input")
    assert "[2]" in str(e.value) and "[3]" in str(e.value)


def test_no_default_input_device_says_so(fake_devices: FakeDevices) -> None:
    fake_devices.defaults["input"] = -1
    with pytest.raises(AudioDeviceError, match="no default input device; input devices: "):
        resolve(None, "input")
    assert not sound.probe().available
    assert sound.probe("USB Audio Device").detail == "USB Audio Device: - (hw:1,0) (48000 Hz)"


def test_tandem_devices_lists_inputs_and_outputs_with_defaults() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "devices", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 1 and "no audio system" in proc.stderr:
        pytest.skip("PortAudio is not installed")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    for d in listing["devices"]:
        assert d["default_input"] == (d["index"] == listing["default_input"])
        assert d["default_samplerate"] > 0 and d["inputs"] >= 0 and d["outputs"] >= 0


def test_run_options_for_devices_need_the_microphone() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "run", "--mic-device", "pulse"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "need --mic" in proc.stderr


# --- levels --------------------------------------------------------------------------------


def sine(amplitude: float, seconds: float = 0.1, rate: int = 48_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_a_level_window_gives_rms_peak_and_clipping_in_dbfs() -> None:
    window = LevelWindow(48_000)
    blocks = np.split(sine(0.5), 5)  # five 20 ms blocks make one 100 ms window
    levels = [window.add(b, 1.0) for b in blocks]
    assert levels[:4] == [None] * 4
    level = levels[4]
    assert level is not None
    assert level.rms_dbfs == pytest.approx(-9.0, abs=0.1)  # a sine's RMS is 3 dB under peak
    assert level.peak_dbfs == pytest.approx(-6.0, abs=0.1)
    assert not level.clipping
    loud = [window.add(b, 2.0) for b in np.split(sine(1.0), 5)][-1]
    assert loud is not None and loud.clipping and loud.peak_dbfs == pytest.approx(0.0, abs=0.1)
    quiet = [window.add(b, 3.0) for b in np.split(np.zeros(4800, np.float32), 5)][-1]
    assert quiet == MicLevel(3.0, FLOOR_DBFS, FLOOR_DBFS, False)
    assert dbfs(CLIP) > -0.1


def test_the_meter_prints_at_most_every_200_ms_and_keeps_a_clip_between_lines() -> None:
    levels: Channel[MicLevel] = Channel("levels", 10, Overflow.DROP_OLDEST)
    meter = LevelMeter(levels)
    assert meter.poll(0.2) is None  # nothing measured yet
    levels.put(MicLevel(0.25, -20.0, -3.0, True))
    levels.put(MicLevel(0.35, -30.0, -12.0, False))
    line = meter.poll(0.4)
    assert line is not None and "CLIP" in line and "-20.0 dBFS" in line and "peak   -3.0" in line
    levels.put(MicLevel(0.45, -30.0, -12.0, False))
    assert meter.poll(0.5) is None  # 100 ms after the last line: too soon
    later = meter.poll(0.6)
    assert later is not None and "CLIP" not in later and "-30.0 dBFS" in later
    assert meter_line(1.0, FLOOR_DBFS, FLOOR_DBFS, False).count("#") == 0
    assert meter_line(1.0, 0.0, 0.0, False).count("#") == 20


# --- the Listener's watchdog, with a scripted microphone ------------------------------------


class StubHearing:
    """Hearing that hears nothing (the watchdog does not need models)."""

    echo = None
    level = 0.0

    def push(self, samples: np.ndarray) -> list[object]:
        return []

    def close(self) -> None:
        pass


class ScriptedMic(Microphone):
    """Delivers 20 ms blocks from a thread; can stall (no callbacks) or die (stream ends)."""

    def __init__(self, lease: Any) -> None:
        super().__init__(lease)
        self.mode = "run"
        self.opens = 0
        self.fail_opens = 0
        self._running = False
        self._feeder: threading.Thread | None = None

    def start(self) -> None:
        if self.fail_opens:
            self.fail_opens -= 1
            raise AudioDeviceError("cannot open the input device 'scripted': gone")
        self.opens += 1
        self.rate, self.name, self.mode = 16_000, "scripted", "run"
        self.ring = deque(maxlen=250)
        self._running = True
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        while self._running:
            if self.mode == "run" and self.lease.revoked_reason is None:
                self._seq += 1
                self.ring.append(AudioBlock(self._seq, np.zeros(320, np.float32)))
            time.sleep(0.02)

    @property
    def alive(self) -> bool:
        return self._running and self.mode != "dead"

    def stop(self) -> None:
        self._running = False


def wait_for(cond: Any, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(("mode", "reason"), [("stall", "no audio for"), ("dead", "stopped")])
def test_a_lost_microphone_is_reported_once_and_reopened(mode: str, reason: str) -> None:
    gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
    lease = gate.open_sense(Sense.MICROPHONE, AppContext("test"))
    mic = ScriptedMic(lease)
    lines: list[str] = []
    levels: Channel[MicLevel] = Channel("levels", 1, Overflow.LATEST_ONLY)
    listener = Listener(
        mic,
        StubHearing(),  # type: ignore[arg-type]
        RealClock(),
        inbox=ControlInbox(),
        data=Channel("data", 8, Overflow.DROP_OLDEST),
        report=lines.append,
        levels=levels,
    )
    listener.start()
    try:
        assert wait_for(lambda: len(levels) == 1)  # listening, and levels flow
        mic.fail_opens = 3  # the device stays away for three retries
        mic.mode = mode
        assert wait_for(lambda: mic.opens == 2), lines
        assert wait_for(lambda: len(lines) == 3), lines
    finally:
        gate.mute(Sense.MICROPHONE)
        assert wait_for(lambda: any("stopped (" in x for x in lines))
        listener.stop()
    assert lines[0] == "microphone: listening (scripted, 16000 Hz)"
    assert lines[1].startswith("microphone: lost (") and reason in lines[1]
    assert lines[1].endswith("; retrying")
    assert lines[2] == "microphone: listening (scripted, 16000 Hz)"  # failed retries are quiet
    assert listener.losses == 1


def test_a_final_transcript_reaches_the_engine_with_its_prosody_and_confidence() -> None:
    """Live, the listener re-times what hearing heard onto the engine's clock and must keep
    the rest: it once dropped Smart Turn's score and so every live turn went without it."""

    class OneFinal(StubHearing):
        sent = False

        def push(self, samples: np.ndarray) -> list[object]:
            if self.sent:
                return []
            self.sent = True
            final = TranscriptDelta(
                0.5, "so that is it.", True, prosody_complete=0.97, confidence=0.81
            )
            return [Heard(0.5, transcript=final)]

    gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
    mic = ScriptedMic(gate.open_sense(Sense.MICROPHONE, AppContext("test")))
    data: Channel[DataFrame] = Channel("data", 8, Overflow.DROP_OLDEST)
    clock = RealClock()
    listener = Listener(
        mic,
        OneFinal(),
        clock,
        inbox=ControlInbox(),
        data=data,  # type: ignore[arg-type]
        report=lambda _: None,
    )
    listener.start()
    try:
        assert wait_for(lambda: len(data) == 1)
    finally:
        listener.stop()
    (got,) = data.drain()
    assert isinstance(got, TranscriptDelta) and got.final and got.text == "so that is it."
    assert (got.prosody_complete, got.confidence) == (0.97, 0.81)
    assert 0.0 <= clock.now() - got.t < 5.0  # on the engine's clock, not the stream's


def test_mute_stops_the_microphone_and_unmute_opens_a_new_lease() -> None:
    gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
    app = AppContext("test")
    first = gate.open_sense(Sense.MICROPHONE, app)
    mic = ScriptedMic(first)
    lines: list[str] = []
    inbox: ControlInbox[ControlEvent] = ControlInbox()

    def new_lease() -> Lease | None:
        if gate.explain_sense(Sense.MICROPHONE, app).decision is not Decision.ALLOW:
            return None
        return gate.open_sense(Sense.MICROPHONE, app)

    listener = Listener(
        mic,
        StubHearing(),  # type: ignore[arg-type]
        RealClock(),
        inbox=inbox,
        data=Channel("data", 8, Overflow.DROP_OLDEST),
        report=lines.append,
        new_lease=new_lease,
    )
    listener.start()
    kinds: list[ControlKind] = []
    try:
        assert wait_for(lambda: listener.blocks > 0)
        for _ in range(2):  # muting and unmuting works again and again
            gate.mute(Sense.MICROPHONE)
            assert wait_for(lambda: lines[-1] == "microphone: stopped (muted)"), lines
            time.sleep(0.2)  # muted: no stream is opened, however long it lasts
            assert not mic._running and lines[-1] == "microphone: stopped (muted)"
            gate.mute(Sense.MICROPHONE, False)
            assert wait_for(lambda: lines[-1].startswith("microphone: listening")), lines
            blocks = listener.blocks
            assert wait_for(lambda b=blocks: listener.blocks > b)  # it hears again
            kinds += [ev.kind for ev in inbox.drain()]
    finally:
        listener.stop()
    assert mic.lease is not first and mic.lease.active
    assert kinds == [ControlKind.LEASE_REVOKED, ControlKind.LEASE_OPENED] * 2
