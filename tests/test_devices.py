"""Real audio devices: a private PulseAudio with a virtual microphone and speaker.

Speech synthesised by espeak-ng is played into the virtual microphone with ``paplay``; Tandem
captures it through PortAudio exactly as it would a real microphone. Each check runs in a
child process so PortAudio starts up against the private server.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core import audio
from engine.hearing.asr import Recognizer
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

pytestmark = needs_pulseaudio


@pytest.fixture(scope="module")
def audio_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with private_pulseaudio(tmp_path_factory.mktemp("vaudio")) as env:
        yield env


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken(tmp_path_factory.mktemp("speech") / "say.wav")


CAPTURE = """
import sys, time
from engine.core.channels import Channel, ControlInbox, Overflow
from engine.core.clock import RealClock
from engine.hearing.asr import Recognizer
from engine.hearing.vad import SileroVad
from engine.hearing.pipeline import Hearing
from engine.hearing.listener import Listener
from engine.senses.sound import Microphone
from permissions.gate import Gate
from permissions.model import AppContext, Decision, Rule, Sense

gate = Gate((Rule("u:mic", Decision.ALLOW, sense=Sense.MICROPHONE),))
lease = gate.open_sense(Sense.MICROPHONE, AppContext("test"))
mic = Microphone(lease)
data = Channel("data", 64, Overflow.DROP_OLDEST)
listener = Listener(mic, Hearing(SileroVad(), Recognizer(threads=2)), RealClock(),
                    inbox=ControlInbox(), data=data, report=lambda line: print(line, flush=True))
listener.start()
time.sleep(float(sys.argv[1]))
gate.mute(Sense.MICROPHONE)  # the lease is revoked: the callback takes nothing more
seq = mic._seq
time.sleep(0.5)
print("after-revoke", mic._seq - seq, flush=True)
listener.stop()
print("heard", " | ".join(f.text for f in data.drain()), flush=True)
"""


def test_speech_played_into_the_virtual_microphone_is_heard(
    audio_env: dict[str, str], speech_wav: Path
) -> None:
    cmd = [sys.executable, "-c", CAPTURE, "8"]
    proc = speak_when_listening(audio_env, cmd, speech_wav, timeout=120)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.splitlines()
    lines = dict(line.split(" ", 1) for line in said if line.startswith(("after-", "heard ")))
    assert "run the test" in lines["heard"].lower(), proc.stdout
    assert lines["after-revoke"] == "0"  # a revoked lease takes no more audio


def test_tandem_run_listens_answers_and_says_so(
    audio_env: dict[str, str], speech_wav: Path, tmp_path: Path
) -> None:
    env = {
        **audio_env,
        "TANDEM_CONFIG_DIR": str(tmp_path / "c"),
        "TANDEM_DATA_DIR": str(tmp_path / "d"),
    }
    env.pop("DISPLAY", None)
    heard_back = tmp_path / "speaker.wav"  # what the virtual speaker played
    recorder = subprocess.Popen(
        ["parecord", "--device=speaker.monitor", "--file-format=wav", str(heard_back)], env=env
    )
    started = time.monotonic()
    run = [*TANDEM, "run", "--mic", "--duration", "16"]
    proc = speak_when_listening(env, run, speech_wav)
    recorder.terminate()
    recorder.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "microphone: listening" in out, out
    assert "vad     speech_start" in out and "vad     speech_end" in out
    finals = [line for line in out.splitlines() if "asr     final" in line]
    assert finals and "run the test" in finals[0].lower(), out
    assert "decide  " in out.split(finals[0])[1]  # and it answered after hearing it
    assert time.monotonic() - started < 120
    # The answer was spoken: the speaker's own audio, transcribed, says the printed reply.
    said = [line.split("tandem  ", 1)[1] for line in out.splitlines() if "  tandem  " in line]
    assert said, out
    transcript = Recognizer(threads=2).transcribe(audio.load_mono16k(heard_back)).text
    reply_words = set(re.findall(r"[a-z']+", said[0].lower()))
    heard_words = set(re.findall(r"[a-z']+", transcript.lower()))
    assert len(reply_words & heard_words) >= 0.5 * len(reply_words), (said[0], transcript)


ECHO_PROBE = HERE / "echo_probe.py"


def with_echo_path(env: dict[str, str]) -> int:
    """Route the virtual speaker back into the virtual microphone (open speakers, 60 ms)."""
    out = subprocess.run(
        [
            "pactl",
            "load-module",
            "module-loopback",
            "source=speaker.monitor",
            "sink=micfeed",
            "latency_msec=60",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def probe_echo(env: dict[str, str], mode: str, user_wav: Path | None = None) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, str(ECHO_PROBE), mode, *([str(user_wav)] if user_wav else [])],
        env={**env, "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.strip().splitlines()[-1].split()  # the summary line
    return dict(zip(words[::2], words[1::2], strict=False))


def test_the_assistant_does_not_hear_itself(audio_env: dict[str, str], speech_wav: Path) -> None:
    module = with_echo_path(audio_env)
    try:
        assert int(probe_echo(audio_env, "nogate")["starts"]) >= 1  # the echo path is real
        gated = probe_echo(audio_env, "gate")
        assert gated["starts"] == "0" and int(gated["echo_windows"]) > 20
        # Double talk: the user speaks over the assistant and is still heard.
        assert int(probe_echo(audio_env, "gate", speech_wav)["starts"]) >= 1
    finally:
        subprocess.run(["pactl", "unload-module", str(module)], env=audio_env, check=False)


def test_tandem_run_with_open_speakers_does_not_interrupt_itself(
    audio_env: dict[str, str], tmp_path: Path
) -> None:
    module = with_echo_path(audio_env)
    env = {
        **audio_env,
        "TANDEM_CONFIG_DIR": str(tmp_path / "c"),
        "TANDEM_DATA_DIR": str(tmp_path / "d"),
    }
    try:
        proc = tandem(
            env, "run", "--mic", "--duration", "12", stdin="how do I reverse a list in python?\n"
        )
    finally:
        subprocess.run(["pactl", "unload-module", str(module)], env=audio_env, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "echo gate on" in out and "tandem  " in out, out
    assert "stop    done" in out and "stop    interrupted" not in out, out
    assert "vad     speech_start" not in out, out  # it never heard its own voice as the user


def test_mute_then_unmute_hears_again(
    audio_env: dict[str, str], speech_wav: Path, tmp_path: Path
) -> None:
    """Push-to-mute works forever: muted speech is not heard, after unmute it is."""
    env = {
        **audio_env,
        "TANDEM_CONFIG_DIR": str(tmp_path / "c"),
        "TANDEM_DATA_DIR": str(tmp_path / "d"),
    }
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--mic", "--duration", "30"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[str] = []

    def until(wanted: str, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if wanted in line:
                return
        pytest.fail(f"never printed {wanted!r}: {lines}")

    try:
        until("microphone: listening")
        proc.stdin.write("/mute\n")
        proc.stdin.flush()
        until("microphone: stopped (muted)")
        until("permission revoke microphone deny")
        subprocess.run(
            ["paplay", "--device=micfeed", str(speech_wav)], env=env, timeout=30, check=True
        )
        proc.stdin.write("/unmute\n")
        proc.stdin.flush()
        until("permission lease microphone allow")
        until("microphone: listening")
        subprocess.run(
            ["paplay", "--device=micfeed", str(speech_wav)], env=env, timeout=30, check=True
        )
        until("asr     final", timeout=20)
        proc.stdin.write("/quit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines += out.splitlines()
    assert proc.returncode == 0, err
    muted = lines.index(next(x for x in lines if "microphone: stopped (muted)" in x))
    unmuted = lines.index(next(x for x in lines if "permission lease microphone allow" in x))
    heard = [x for x in lines if "asr     final" in x]
    assert not any("asr     final" in x for x in lines[muted:unmuted]), lines  # muted: deaf
    assert heard and "run the test" in heard[0].lower(), lines
