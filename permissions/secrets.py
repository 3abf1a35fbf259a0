"""Secrets (API keys for remote model servers) live only in the system keyring.

Never in settings, logs or the audit log: the audit records that a secret was stored or read,
by name, never its value. Plaintext or null keyring backends are refused, so a machine with
no secure store gets a clear error instead of a key written to a file in clear.
"""

from __future__ import annotations

import keyring
import keyring.errors
from keyring.backend import KeyringBackend

from permissions.errors import SecretsError

SERVICE = "tandem"
INSECURE_BACKENDS = ("keyrings.alt", "keyring.backends.fail", "keyring.backends.null")


def _backend() -> KeyringBackend:
    backend = keyring.get_keyring()
    chain = getattr(backend, "backends", None) or [backend]
    names = [type(b).__module__ for b in chain]
    if any(n.startswith(INSECURE_BACKENDS) for n in names) or backend.priority <= 0:
        raise SecretsError(
            "no secure secret store: start your desktop's keyring (GNOME Keyring, KWallet, "
            f"macOS Keychain, Windows Credential Locker); found {', '.join(names)}"
        )
    return backend


def set_secret(name: str, value: str) -> None:
    """Store ``value`` under ``name`` (e.g. ``server:https://host``)."""
    if not name or not value:
        raise SecretsError("secret name and value must be non-empty")
    try:
        _backend().set_password(SERVICE, name, value)
    except keyring.errors.KeyringError as e:
        raise SecretsError(f"the keyring refused to store {name!r}: {e}") from e


def get_secret(name: str) -> str | None:
    """The secret stored under ``name``, or None."""
    try:
        return _backend().get_password(SERVICE, name)
    except keyring.errors.KeyringError as e:
        raise SecretsError(f"the keyring refused to read {name!r}: {e}") from e


def delete_secret(name: str) -> bool:
    """Delete a secret; False when there was none."""
    try:
        _backend().delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as e:
        raise SecretsError(f"the keyring refused to delete {name!r}: {e}") from e
    return True
