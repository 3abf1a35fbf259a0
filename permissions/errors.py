"""The permission layer's errors: one root, a few leaves."""

from __future__ import annotations


class PermissionsError(Exception):
    """Root of every error this package raises on purpose."""


class SettingsError(PermissionsError):
    """The settings file is unreadable, malformed or from an unknown schema."""


class AuditError(PermissionsError):
    """The audit log cannot be written or read."""


class SecretsError(PermissionsError):
    """No secure secret store is available, or it refused the operation."""


class LeaseRevokedError(PermissionsError):
    """A capture was attempted on a lease the gate has revoked."""
