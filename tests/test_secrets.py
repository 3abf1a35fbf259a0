"""Secrets through a real gnome-keyring in a private D-Bus session; never in clear anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from permissions import secrets
from permissions.errors import SecretsError

WRAPPER = Path(__file__).with_name("with_keyring.sh")
PROGRAM = """
import json, subprocess
from permissions import secrets
secrets.set_secret("server:http://127.0.0.1:8080", "sk-test-123")
out = {"got": secrets.get_secret("server:http://127.0.0.1:8080")}
out["secret_tool"] = subprocess.run(
    ["secret-tool", "lookup", "service", "tandem", "username", "server:http://127.0.0.1:8080"],
    capture_output=True, text=True, check=False).stdout
out["deleted"] = secrets.delete_secret("server:http://127.0.0.1:8080")
out["after"] = secrets.get_secret("server:http://127.0.0.1:8080")
out["deleted_again"] = secrets.delete_secret("server:http://127.0.0.1:8080")
import keyring
out["backend"] = type(keyring.get_keyring()).__module__
print(json.dumps(out))
"""


def test_a_real_secret_service_stores_reads_and_deletes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TANDEM_CONFIG_DIR": str(tmp_path / "cfg"),
        "TANDEM_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("PYTHON_KEYRING_BACKEND", None)
    proc = subprocess.run(
        ["bash", str(WRAPPER), sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "keyring.backends.SecretService"
    assert out["got"] == "sk-test-123"
    assert out["secret_tool"] == "sk-test-123"  # cross-checked without the keyring library
    assert out["deleted"] is True and out["after"] is None and out["deleted_again"] is False
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"sk-test-123" not in stored  # nothing in Tandem's own files


def test_no_secure_store_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    with pytest.raises(SecretsError, match="no secure secret store"):
        secrets.set_secret("x", "y")
    with pytest.raises(SecretsError, match="no secure secret store"):
        secrets.get_secret("x")


def test_empty_names_or_values_are_refused() -> None:
    with pytest.raises(SecretsError, match="non-empty"):
        secrets.set_secret("", "y")


def test_the_cli_stores_a_key_from_a_pipe_never_from_argv(tmp_path: Path) -> None:
    script = (
        f"printf 'sk-piped-456\\n' | {sys.executable} -m app secrets set server:http://h:1 && "
        f"{sys.executable} -c 'from engine.model.load import server_api_key; "
        'print(server_api_key("http://h:1/"))\''
    )
    proc = subprocess.run(
        ["bash", str(WRAPPER), "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["stored server:http://h:1", "sk-piped-456"]
