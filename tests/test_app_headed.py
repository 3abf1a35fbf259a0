"""The desktop app on a real X display: Xvfb, fluxbox's tray, a private PulseAudio.

Each test starts its own Xvfb on a free display number and fluxbox on it (which hosts tray
icons), a private PulseAudio with a virtual microphone and speaker (``tests/vaudio.py``), and
``tandem app`` as a child process on the embedded SmolLM2 (the quickest to load), then drives
it as a user would: ``xdotool`` clicks the tray icon and presses the hotkey. What the app
did is read from where it is recorded: the gate's audit log (a real SQLite file) for the
microphone's lease, and the window's timeline (``tandem app --timeline``) for what it heard and
said. Everything started is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from permissions.audit import AUDIT_FILE
from tests.vaudio import needs_pulseaudio, private_pulseaudio, spoken

pytestmark = [
    pytest.mark.slow,
    needs_pulseaudio,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("Xvfb", "fluxbox", "xdotool", "xwininfo")),
        reason="needs xvfb, fluxbox, xdotool and x11-utils (make installs them as root)",
    ),
]
START_S = 120.0
STEP_S = 20.0
LISTENING_RGB = (0x2E, 0x7D, 0x32)
MUTED_RGB = (0x61, 0x61, 0x61)


def poll(what: Callable[[], Any], timeout_s: float, message: str) -> Any:
    """``what()`` once it is truthy; fails with ``message`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


def free_display(skip: set[int] | None = None) -> int:
    for n in range(90, 400):
        if n in (skip or set()):
            continue
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number")


def _start_xvfb(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Xvfb on a free display, answering and still alive (a display another test's server
    was just leaving can look free and then refuse the new one: take the next)."""
    tried: set[int] = set()
    for _ in range(4):
        n = free_display(tried)
        tried.add(n)
        env["DISPLAY"] = f":{n}"
        xvfb = _start(
            ["Xvfb", env["DISPLAY"], "-screen", "0", "1280x800x24", "-nolisten", "tcp"], env, log
        )
        deadline = time.monotonic() + 20
        while xvfb.poll() is None and time.monotonic() < deadline:
            probe = ["xdotool", "getdisplaygeometry"]
            if subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
                time.sleep(0.2)  # still ours a moment later: not a server on its way out
                if xvfb.poll() is None:
                    return xvfb
            time.sleep(0.1)
        _stop(xvfb)
    pytest.fail("Xvfb did not start")


@dataclass
class Headed:
    env: dict[str, str]
    home: Path
    timeline: Path
    proc: subprocess.Popen[str]

    def x(self, *args: str) -> str:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=20, check=False
        ).stdout

    def audit(self) -> list[tuple[str, str, str]]:
        db = self.home / "data" / AUDIT_FILE
        if not db.exists():
            return []
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                return list(con.execute("SELECT kind, subject, decision FROM entries ORDER BY seq"))
        except sqlite3.OperationalError:  # created, its table not yet
            return []

    def mic_leases(self) -> list[str]:
        """``lease`` / ``revoke`` of the microphone, in order."""
        return [k for k, s, _ in self.audit() if s == "microphone" and k in ("lease", "revoke")]

    def events(self) -> list[dict[str, Any]]:
        if not self.timeline.exists():
            return []
        return [json.loads(line) for line in self.timeline.read_text().splitlines() if line]

    def tray_icon(self) -> tuple[int, int, int, int]:
        """The tray icon's window: x, y, width, height on the screen."""
        for line in self.x("xwininfo", "-root", "-tree").splitlines():
            if '"Tandem"' in line and "+" in line:
                size, _, pos = line.split()[-2:][0], None, line.split()[-1]
                w, h = (int(v) for v in size.split("+")[0].split("x"))
                x, y = (int(v) for v in pos.lstrip("+").split("+"))
                if 8 <= w <= 64 and 8 <= h <= 64 and (x, y) != (0, 0):
                    return x, y, w, h
        return (0, 0, 0, 0)


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def headed(tmp_path: Path) -> Iterator[Headed]:
    with private_pulseaudio(tmp_path / "pulse") as audio_env:
        env = {k: v for k, v in audio_env.items() if not k.startswith("TANDEM_")}
        env.update(
            QT_QPA_PLATFORM="xcb",
            TANDEM_CONFIG_DIR=str(tmp_path / "config"),
            TANDEM_DATA_DIR=str(tmp_path / "data"),
            TANDEM_MODEL_NAME="smollm2-135m",
            TANDEM_MODEL_N_THREADS="1",
        )
        env.pop("WAYLAND_DISPLAY", None)
        xvfb = _start_xvfb(env, tmp_path / "xvfb.log")
        procs = [xvfb]
        try:
            procs.append(_start(["fluxbox"], env, tmp_path / "fluxbox.log"))
            poll(
                lambda: (
                    "window id"
                    in subprocess.run(
                        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    ).stdout
                ),
                20,
                "fluxbox did not start",
            )
            # the first run was answered: microphone on, screen off
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from app.desktop import firstrun; firstrun.save_answer(True, False)",
                ],
                env=env,
                check=True,
                timeout=60,
            )
            timeline = tmp_path / "timeline.jsonl"
            app = _start(
                [sys.executable, "-m", "app", "app", "--timeline", str(timeline)],
                env,
                tmp_path / "app.log",
            )
            procs.append(app)
            h = Headed(env, tmp_path, timeline, app)
            yield h
            app.terminate()  # SIGTERM quits cleanly: every thread joined, status 0
            assert app.wait(60) == 0, (tmp_path / "app.log").read_text()[-3000:]
        finally:
            for proc in reversed(procs):
                _stop(proc)
            log = tmp_path / "app.log"
            if log.exists():
                assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _root_pixels(h: Headed, path: Path) -> np.ndarray:
    import mss
    import mss.tools

    with mss.MSS(display=h.env["DISPLAY"]) as grab:
        shot = grab.grab(grab.monitors[1])
        mss.tools.to_png(shot.rgb, shot.size, output=str(path))
        return np.frombuffer(shot.rgb, dtype=np.uint8).reshape(shot.height, shot.width, 3)


def _has_color(img: np.ndarray, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> bool:
    x, y, w, h = box
    patch = img[y : y + h, x : x + w].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(rgb)).sum(axis=1) < 24).any())


def test_tray_click_and_hotkey_mute_and_unmute_hears_again(headed: Headed, tmp_path: Path) -> None:
    h = headed
    poll(lambda: h.mic_leases()[:1] == ["lease"], START_S, "the microphone never got its lease")
    box = poll(lambda: h.tray_icon() if h.tray_icon()[2] else None, START_S, "no tray icon")
    poll(lambda: any(e["lane"] == "model" for e in h.events()), START_S, "the engine never ticked")
    img = _root_pixels(h, tmp_path / "listening.png")
    assert _has_color(img, box, LISTENING_RGB), "the tray shows the listening icon"
    win = h.x("xdotool", "search", "--onlyvisible", "--name", "^Tandem$").split()
    sizes = [h.x("xdotool", "getwindowgeometry", w) for w in win]
    assert any("1100x" in s for s in sizes), f"the main window is on screen: {sizes}"

    cx, cy = box[0] + box[2] // 2, box[1] + box[3] // 2
    h.x("xdotool", "mousemove", "--sync", str(cx), str(cy), "click", "1")
    poll(lambda: h.mic_leases()[-1:] == ["revoke"], STEP_S, "a tray click did not revoke the lease")
    poll(
        lambda: _has_color(_root_pixels(h, tmp_path / "muted.png"), box, MUTED_RGB),
        STEP_S,
        "the tray does not show the muted icon",
    )
    h.x("xdotool", "mousemove", "--sync", str(cx), str(cy), "click", "1")
    poll(lambda: h.mic_leases()[-1:] == ["lease"], STEP_S, "a second click did not unmute")

    h.x("xdotool", "key", "ctrl+alt+m")
    poll(lambda: h.mic_leases()[-1:] == ["revoke"], STEP_S, "the hotkey did not mute")
    h.x("xdotool", "key", "ctrl+alt+m")
    poll(lambda: h.mic_leases()[-1:] == ["lease"], STEP_S, "the hotkey did not unmute")

    wav = spoken(tmp_path / "say.wav", "Could you run the tests please?")
    heard_before = len([e for e in h.events() if e["lane"] == "asr" and e["kind"] == "final"])
    subprocess.run(["paplay", "--device=micfeed", str(wav)], env=h.env, check=True, timeout=60)
    finals = poll(
        lambda: [
            e
            for e in h.events()
            if e["lane"] == "asr" and e["kind"] == "final" and e["text"].strip()
        ][heard_before:],
        STEP_S * 3,
        "after unmuting, the microphone was not heard",
    )
    assert "test" in finals[-1]["text"].lower()


def test_talk_to_it_a_spoken_question_gets_a_spoken_answer(headed: Headed, tmp_path: Path) -> None:
    """A question played into the virtual microphone is answered out loud: the answer is
    recorded from the virtual speaker, transcribed back, and is on the window's timeline (which
    feeds the conversation panel)."""
    from engine.hearing.asr import Recognizer

    h = headed
    poll(lambda: h.mic_leases()[:1] == ["lease"], START_S, "the microphone never got its lease")
    poll(lambda: any(e["lane"] == "model" for e in h.events()), START_S, "the engine never ticked")
    recording = tmp_path / "speaker.raw"
    rec = subprocess.Popen(
        [
            "parec",
            "-d",
            "speaker.monitor",
            "--format=s16le",
            "--rate=16000",
            "--channels=1",
            "--raw",
            str(recording),
        ],
        env=h.env,
    )
    try:
        wav = spoken(tmp_path / "q.wav", "How do I reverse a list in Python?")
        subprocess.run(["paplay", "--device=micfeed", str(wav)], env=h.env, check=True, timeout=60)
        said = poll(
            lambda: [e for e in h.events() if e["lane"] == "speech" and e["kind"] == "start"],
            STEP_S * 4,
            "Tandem did not answer out loud",
        )
        poll(
            lambda: any(e["lane"] == "speech" and e["kind"] == "stop" for e in h.events()),
            STEP_S * 4,
            "the answer never finished",
        )
    finally:
        rec.terminate()
        rec.wait(10)
    heard = [e for e in h.events() if e["lane"] == "asr" and e["kind"] == "final"]
    assert any("reverse" in e["text"].lower() for e in heard), heard
    audio = np.fromfile(recording, dtype=np.int16).astype(np.float32) / 32768.0
    assert np.abs(audio).max() > 0.05, "nothing came out of the speaker"
    text = Recognizer(threads=1).transcribe(audio).text.lower()
    answer = said[0]["text"].lower()
    words = {w.strip(".,!?'\"") for w in answer.split() if len(w) > 3}
    got = {w.strip(".,!?'\"") for w in text.split()}
    assert words & got, f"spoken {answer!r}, transcribed from the speaker {text!r}"
