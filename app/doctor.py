"""``tandem doctor [--json]``: what this machine has for Tandem, and the fix for what it lacks.

Each check is one line: its name, ``ok`` / ``warn`` / ``fail``, what was found, and, when
something is missing, the command or step that fixes it. ``fail`` is for what Tandem cannot
run without (Python, llama.cpp, the embedded models); ``warn`` for what only narrows it (no
microphone, no display, no tray, no keyring, a GPU that llama.cpp was not built for).

Checks: Python; the llama.cpp build (CPU, CUDA, ROCm, Metal or Vulkan, read from the backend
libraries llama-cpp-python installed, without loading them) and GPU memory (``nvidia-smi`` /
``rocm-smi``); audio devices; the display and screen capture; the focus backend (X11's
``_NET_ACTIVE_WINDOW``); the tray host; the keyring backend; every embedded model verified by
its SHA-256.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from engine.core import processes
from engine.errors import EngineError, MissingDependencyError, ModelFileError

Status = Literal["ok", "warn", "fail"]
BACKENDS = {"cuda": "CUDA", "hip": "ROCm", "metal": "Metal", "vulkan": "Vulkan"}
"""libggml-<name> in llama-cpp-python's lib folder -> the build's GPU backend."""


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def python_check() -> Check:
    """Python 3.11 or newer, in a virtual environment."""
    version = ".".join(map(str, sys.version_info[:3]))
    venv = sys.prefix != sys.base_prefix
    detail = f"Python {version} ({sys.executable}{', venv' if venv else ''})"
    return Check("python", "ok", detail)


def llama_backends(lib_dir: Path) -> list[str]:
    """The GPU backends a llama-cpp-python install was built with (empty: CPU only)."""
    names = {p.name.lower() for p in lib_dir.glob("*ggml*")} if lib_dir.is_dir() else set()
    return [label for key, label in BACKENDS.items() if any(f"ggml-{key}" in n for n in names)]


def gpus() -> list[str]:
    """GPUs and their memory, as the vendors' tools report them (empty: none found)."""
    found = []
    if shutil.which("nvidia-smi"):
        try:
            out = processes.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,memory.free",
                    "--format=csv,noheader",
                ],
                timeout_s=10,
            )
            found += [
                f"NVIDIA {line.strip()}" for line in out.decode().splitlines() if line.strip()
            ]
        except processes.ProcessError:
            pass
    if shutil.which("rocm-smi"):
        try:
            out = processes.run(["rocm-smi", "--showmeminfo", "vram", "--csv"], timeout_s=10)
            found += [
                f"AMD {line.strip()}" for line in out.decode().splitlines()[1:] if line.strip()
            ]
        except processes.ProcessError:
            pass
    return found


def llama_check() -> Check:
    """Which llama.cpp build is installed, and whether it fits the GPU found."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return Check("llama.cpp", "fail", "llama-cpp-python is not installed", "make install")
    spec = importlib.util.find_spec("llama_cpp")
    lib_dir = (
        Path(next(iter(spec.submodule_search_locations))) / "lib"
        if spec and spec.submodule_search_locations
        else Path()
    )
    backends = llama_backends(lib_dir)
    build = "+".join(backends) if backends else "CPU"
    found = gpus()
    detail = f"llama-cpp-python {version}, {build} build"
    if found:
        detail += "; GPU: " + "; ".join(found)
    if found and not backends:
        return Check("llama.cpp", "warn", detail, "rebuild for the GPU: make gpu")
    if sys.platform == "darwin" and "Metal" not in backends:
        return Check("llama.cpp", "warn", detail, "rebuild with Metal: make gpu")
    return Check("llama.cpp", "ok", detail)


def audio_check() -> Check:
    """Microphones and speakers PortAudio sees."""
    from engine.senses import sound

    try:
        devs = sound.devices()
    except (EngineError, OSError) as e:
        return Check(
            "audio",
            "warn",
            f"no audio ({e})",
            "install libportaudio2 and start your sound server (PulseAudio/PipeWire)",
        )
    mics = [d.name for d in devs if d.inputs]
    speakers = [d.name for d in devs if d.outputs]
    detail = f"{len(mics)} microphone(s), {len(speakers)} speaker(s)"
    if not mics or not speakers:
        return Check(
            "audio",
            "warn",
            detail + " - " + ("no microphone" if not mics else "no speaker"),
            "plug a device in, or check `pactl list short sources` / sinks",
        )
    return Check("audio", "ok", detail)


def display_check() -> Check:
    """A display, and whether the screen can be captured."""
    from engine.senses import screen

    probe = screen.probe()
    session = (
        "Wayland"
        if os.environ.get("WAYLAND_DISPLAY")
        else "X11"
        if os.environ.get("DISPLAY")
        else "none"
    )
    if probe.available:
        return Check("display", "ok", f"{session}: {probe.detail}")
    fix = "run Tandem in your desktop session (DISPLAY or WAYLAND_DISPLAY must be set)"
    if session == "Wayland":
        fix = "Wayland capture goes through the desktop portal (not wired yet): use X11"
    return Check("display", "warn", f"{session}: {probe.detail}", fix)


def focus_check() -> Check:
    """The focused-window backend: X11's ``_NET_ACTIVE_WINDOW`` (set by the window manager)."""
    if not os.environ.get("DISPLAY"):
        return Check(
            "focus",
            "warn",
            "no X display: per-app rules cannot follow the focus",
            "run in an X11 session (Wayland has no focus query for apps)",
        )
    if not shutil.which("xprop"):
        return Check(
            "focus", "warn", "xprop is missing (the check needs it)", "apt install x11-utils"
        )
    try:
        out = processes.run(["xprop", "-root", "_NET_ACTIVE_WINDOW"], timeout_s=5).decode()
    except processes.ProcessError as e:
        return Check("focus", "warn", str(e), "check that the X display is reachable")
    if "window id" not in out:
        return Check(
            "focus",
            "warn",
            "the window manager does not set _NET_ACTIVE_WINDOW",
            "use an EWMH window manager (GNOME, KDE, Xfce, fluxbox ...)",
        )
    return Check("focus", "ok", "X11 _NET_ACTIVE_WINDOW")


def tray_check() -> Check:
    """Whether something hosts tray icons (a panel, or a window manager's slit)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return Check("tray", "warn", "no display", "start Tandem in your desktop session")
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    app = QApplication.instance() or QApplication(["tandem-doctor"])
    available = QSystemTrayIcon.isSystemTrayAvailable()
    platform = QApplication.platformName()
    del app
    if available:
        return Check("tray", "ok", f"a tray host is running ({platform})")
    return Check(
        "tray",
        "warn",
        f"no tray host ({platform}): Tandem runs as a window only",
        "enable your panel's tray (GNOME: the AppIndicator extension)",
    )


def keyring_check() -> Check:
    """A secure keyring backend for the remote servers' API keys."""
    import keyring

    from permissions import secrets
    from permissions.errors import SecretsError

    try:
        secrets.get_secret("doctor:probe")  # refuses plaintext and null backends
    except SecretsError as e:
        return Check(
            "keyring",
            "warn",
            " ".join(str(e).split())[:300],
            "start GNOME Keyring / KWallet in a D-Bus session",
        )
    backend = keyring.get_keyring()
    return Check("keyring", "ok", f"{type(backend).__module__}.{type(backend).__name__}")


def model_checks() -> list[Check]:
    """Every embedded model, verified by its SHA-256."""
    from engine.model import embedded, registry

    out: list[Check] = []
    for name, model in registry.EMBEDDED.items():
        optional = name not in (registry.DEFAULT_MODEL, registry.FALLBACK_MODEL)
        try:
            if isinstance(model, embedded.PartedModel):
                embedded.find_parts(model)
                joined = embedded.models_dir() / model.filename
                if joined.is_file():
                    registry.verified_file(joined, model.sha256, f"model {name}")
                    detail = f"joined file verified ({joined})"
                else:
                    detail = "parts installed and size-checked; joined and verified at first load"
            else:
                path = registry.verified_file(registry.embedded_path(model), model.sha256, name)
                detail = f"verified ({path})"
            out.append(Check(f"model {name}", "ok", detail))
        except ModelFileError as e:
            fix = getattr(model, "install", None) or "make install"
            status: Status = "warn" if optional else "fail"
            out.append(Check(f"model {name}", status, _first_line(e), fix))
    out += [_file_check(label, finder) for label, finder in _sense_models()]
    return out


def _sense_models() -> list[tuple[str, Callable[[], object]]]:
    from engine.hearing import smart_turn, vad
    from engine.model import registry

    def voice() -> object:
        return registry.verified_file(
            registry.embedded_path(registry.PIPER_VOICE), registry.PIPER_VOICE.sha256, "voice"
        )

    def asr() -> object:
        from engine.hearing import asr as asr_module

        return asr_module.embedded_model_dir()

    return [
        ("model vad (silero)", vad.embedded_model),
        ("model asr (whisper tiny.en)", asr),
        ("model end of turn (smart turn)", smart_turn.embedded_model),
        ("model voice (piper joe)", voice),
    ]


def _file_check(label: str, finder: Callable[[], object]) -> Check:
    try:
        path = finder()
    except (ModelFileError, MissingDependencyError) as e:
        return Check(label, "fail", _first_line(e), "make install")
    return Check(label, "ok", f"verified ({path})")


def _first_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


def run_checks(*, models: bool = True) -> list[Check]:
    """Every check, in the report's order."""
    checks = [
        python_check(),
        llama_check(),
        audio_check(),
        display_check(),
        focus_check(),
        tray_check(),
        keyring_check(),
    ]
    if models:
        checks += model_checks()
    return checks


def report(checks: list[Check]) -> dict[str, object]:
    """The ``--json`` object: every check and whether Tandem can run (no ``fail``)."""
    return {"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]}


def lines(checks: list[Check]) -> list[str]:
    """The human report, one line per check and one per fix."""
    out = []
    for c in checks:
        out.append(f"{c.status:4}  {c.name:32} {c.detail}")
        if c.fix:
            out.append(f"      {'':32} fix: {c.fix}")
    return out
