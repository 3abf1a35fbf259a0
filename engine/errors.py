"""The engine's error hierarchy: one root, a few leaves, each message says what to do."""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class ModelFileError(EngineError):
    """A model file is missing, truncated, corrupt or fails its checksum."""


class ModelServerError(EngineError):
    """A remote model server is unreachable, returned an error, or answered malformed data."""


class ScenarioError(EngineError):
    """A replay scenario folder is missing files or holds malformed input."""


class MissingDependencyError(EngineError):
    """An optional package is not installed; the message carries the install hint."""
