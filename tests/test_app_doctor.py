"""``tandem doctor``: every check has a status, and a fix when something is missing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import doctor
from engine.model import registry

NAMES = {"python", "llama.cpp", "audio", "display", "focus", "tray", "keyring"}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_doctor_json_without_a_display_says_what_is_missing_and_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["TANDEM_CONFIG_DIR"] = str(tmp_path)
    proc = _run("--json", "--no-models", env=env)
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    checks = {c["name"]: c for c in result["checks"]}
    assert set(checks) == NAMES
    assert all(c["status"] in ("ok", "warn", "fail") for c in checks.values())
    assert checks["python"]["status"] == "ok"
    assert checks["llama.cpp"]["status"] in ("ok", "warn")
    assert any(
        b in checks["llama.cpp"]["detail"] for b in ("CPU", "CUDA", "ROCm", "Metal", "Vulkan")
    )
    for name in ("display", "focus", "tray"):
        assert checks[name]["status"] == "warn", name
        assert checks[name]["fix"], f"{name}: a missing part needs its fix"
    assert result["ok"] is True  # nothing required is missing
    assert proc.returncode == 0
    human = _run("--no-models", env=env)
    assert "fix:" in human.stdout and "display" in human.stdout


def test_each_embedded_model_is_verified_by_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF good")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF truncated")
    models = {
        registry.FALLBACK_MODEL: registry.EmbeddedModel(
            registry.FALLBACK_MODEL,
            "pkg",
            "1",
            "good.gguf",
            hashlib.sha256(b"GGUF good").hexdigest(),
        ),
        "other": registry.EmbeddedModel("other", "pkg", "1", "bad.gguf", "0" * 64),
    }
    monkeypatch.setattr(registry, "EMBEDDED", models)
    monkeypatch.setattr(registry, "embedded_path", lambda m: tmp_path / m.relpath)
    checks = {c.name: c for c in doctor.model_checks()}
    assert checks[f"model {registry.FALLBACK_MODEL}"].status == "ok"
    assert "verified" in checks[f"model {registry.FALLBACK_MODEL}"].detail
    broken = checks["model other"]
    assert broken.status == "warn"  # an optional model: Tandem still runs
    assert "SHA-256" in broken.detail and broken.fix
    # the sense models (VAD, ASR, end of turn, voice) are checked the same way
    assert {"model vad (silero)", "model asr (whisper tiny.en)", "model voice (piper joe)"} <= set(
        checks
    )


def test_llama_backends_are_read_from_the_installed_libraries(tmp_path: Path) -> None:
    assert doctor.llama_backends(tmp_path) == []
    (tmp_path / "libggml-cpu.so").touch()
    assert doctor.llama_backends(tmp_path) == []
    (tmp_path / "libggml-cuda.so").touch()
    (tmp_path / "libggml-vulkan.so.0").touch()
    assert doctor.llama_backends(tmp_path) == ["CUDA", "Vulkan"]


def test_the_app_without_a_display_says_so_in_one_line(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env["TANDEM_CONFIG_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "app"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "tandem: error: no display: the desktop app needs a graphical session"
        " (in a terminal: tandem run --mic)"
    ]
