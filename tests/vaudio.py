"""A private PulseAudio for the real-device tests, and speech to play into it.

``tests/devices/audio-up.sh`` starts it (virtual speaker, virtual microphone ``virtmic``);
each test module gets its own server, so one that unplugs or freezes it disturbs no other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.eval.live_duplex import READY_LINE, SETTLE_S

DEVICES = Path(__file__).parent / "devices"
TANDEM = (sys.executable, "-m", "app")
"""The ``tandem`` command, run from this checkout."""
SENTENCE = "Could you run the tests and tell me which one fails?"

needs_pulseaudio = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("paplay") is None,
    reason="PulseAudio is not installed (make installs it when run as root)",
)


@contextmanager
def private_pulseaudio(folder: Path) -> Iterator[dict[str, str]]:
    """The environment that talks to a private server in ``folder`` (stopped afterwards)."""
    up = subprocess.run(
        ["bash", str(DEVICES / "audio-up.sh"), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(os.environ)
    for word in up.stdout.split()[1:]:
        key, _, value = word.partition("=")
        env[key] = value
    try:
        yield env
    finally:
        subprocess.run(["bash", str(DEVICES / "audio-down.sh"), str(folder)], check=False)


def spoken(out: Path, text: str = SENTENCE) -> Path:
    """``text`` said by espeak-ng into the WAV file ``out``."""
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(out), text], check=True)
    return out


def speak_when_listening(
    env: dict[str, str],
    cmd: list[str],
    wav: Path,
    timeout: float = 180,
    delay_s: float = SETTLE_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; play ``wav`` into the virtual microphone ``delay_s`` after it prints that
    the microphone is listening, as ``tandem eval duplex --live`` does (a fixed delay from
    the start raced start-up: under load the microphone opened mid-sentence)."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    lines: list[str] = []
    player: subprocess.Popen[bytes] | None = None
    try:
        for line in proc.stdout or ():
            lines.append(line)
            if player is None and READY_LINE in line:
                play = f"sleep {delay_s}; paplay --device=micfeed {wav}"
                player = subprocess.Popen(["bash", "-c", play], env=env)
        proc.wait()
        if player is not None:
            player.wait(timeout=30)
    finally:
        killer.cancel()
        killer.join()
        reader.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "".join(err))


def tandem(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the ``tandem`` command in a child process, output captured, never hanging."""
    return subprocess.run(
        [*TANDEM, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
