"""The Linux installer and uninstaller, run for real into a temporary home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINUX = REPO / "installers" / "linux"
VENV = Path(sys.prefix)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "TANDEM_"))}
    env.update(HOME=str(home), TANDEM_CONFIG_DIR=str(home / "tandem-config"), **extra)
    env.pop("DISPLAY", None)
    return env


def _sh(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(LINUX / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the project's virtual env")
def test_install_puts_launcher_entry_icons_autostart_and_uninstall_removes_them(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    proc = _sh("install.sh", "--reuse-venv", "--venv", str(VENV), "--autostart", env=env)
    assert proc.returncode == 0, proc.stderr
    launcher = tmp_path / ".local" / "bin" / "tandem"
    entry = tmp_path / ".local" / "share" / "applications" / "tandem.desktop"
    autostart = tmp_path / ".config" / "autostart" / "tandem.desktop"
    icons = tmp_path / ".local" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    assert launcher.is_file() and os.access(launcher, os.X_OK)
    assert f"Exec={launcher} app\n" in entry.read_text()
    assert f"Exec={launcher} app --minimized\n" in autostart.read_text()
    assert {"tandem.svg", "tandem-muted.svg", "tandem-listening.svg"} <= {
        p.name for p in icons.iterdir()
    }
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout
    # the launcher runs the installed Tandem
    doctor = subprocess.run(
        [str(launcher), "doctor", "--json", "--no-models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert json.loads(doctor.stdout)["ok"] is True, doctor.stderr
    gone = _sh("uninstall.sh", env=env)
    assert gone.returncode == 0, gone.stderr
    for path in (launcher, entry, autostart, icons / "tandem.svg"):
        assert not path.exists(), path
    assert VENV.is_dir() and "kept" in gone.stdout  # an environment it did not create is kept


def test_a_fresh_install_builds_llama_cpp_for_the_gpu_found(tmp_path: Path) -> None:
    env = _env(tmp_path, CMAKE_ARGS="-DGGML_CUDA=on")
    proc = _sh("install.sh", "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "llama.cpp build: -DGGML_CUDA=on" in out
    assert "CMAKE_ARGS=-DGGML_CUDA=on" in out and "pip install" in out
    assert "--require-hashes" in out  # the model parts are pinned by hash
    assert not (tmp_path / ".local").exists()  # a dry run changes nothing


def test_unknown_options_are_one_clear_line(tmp_path: Path) -> None:
    proc = _sh("install.sh", "--frobnicate", env=_env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "install.sh: unknown option --frobnicate (see --help)"
