"""Persisted permission settings: the user's rules, schema-versioned, written atomically.

The file lives in the platform's config dir (``platformdirs``; ``TANDEM_CONFIG_DIR``
overrides it, for tests and portable installs)::

    {"schema": 1, "rules": [{"id": "...", "decision": "allow", "tool": "read_file", ...}]}

A file that cannot be read or parsed never crashes Tandem and never allows anything: the
loader returns safe defaults (the built-in presets alone, so everything else *asks*) together
with a message the UI shows. Writes go to a temporary file, are fsynced, then renamed over the
old one, so a crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from permissions.errors import SettingsError
from permissions.model import Rule

SCHEMA = 1
FILE_NAME = "permissions.json"
ENV_CONFIG_DIR = "TANDEM_CONFIG_DIR"
ENV_DATA_DIR = "TANDEM_DATA_DIR"

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}
"""``MIGRATIONS[n]`` turns a schema-``n`` document into schema ``n + 1``."""


def config_dir() -> Path:
    """Where settings live."""
    env = os.environ.get(ENV_CONFIG_DIR)
    return Path(env) if env else Path(platformdirs.user_config_dir("tandem"))


def data_dir() -> Path:
    """Where the audit log lives."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env) if env else Path(platformdirs.user_data_dir("tandem"))


@dataclass(frozen=True, slots=True)
class Settings:
    """The user's rules (the presets are added by the gate, not stored)."""

    rules: tuple[Rule, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Settings as loaded, and the problem that forced safe defaults (if any)."""

    settings: Settings
    problem: str | None
    path: Path


def load(path: Path | None = None) -> Loaded:
    """Read the settings; on any problem return safe defaults and say why."""
    path = path or config_dir() / FILE_NAME
    if not path.exists():
        return Loaded(Settings(), None, path)
    try:
        return Loaded(parse(path.read_bytes()), None, path)
    except (OSError, SettingsError) as e:
        return Loaded(Settings(), f"{path}: {e}; using safe defaults (every request asks)", path)


def parse(raw: bytes) -> Settings:
    """Parse and migrate a settings document; raises ``SettingsError``."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SettingsError(f"not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise SettingsError("expected a JSON object")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise SettingsError("missing or invalid 'schema'")
    if schema > SCHEMA:
        raise SettingsError(f"schema {schema} is newer than this Tandem ({SCHEMA})")
    while schema < SCHEMA:
        doc = MIGRATIONS[schema](doc)
        schema += 1
    rules_raw = doc.get("rules", [])
    if not isinstance(rules_raw, list):
        raise SettingsError("'rules' must be a list")
    rules = []
    for i, obj in enumerate(rules_raw):
        if not isinstance(obj, dict):
            raise SettingsError(f"rule {i} is not an object")
        try:
            rule = Rule.from_json(obj)
        except (ValueError, KeyError) as e:
            raise SettingsError(f"rule {i}: {e}") from e
        if rule.id.startswith("preset:"):
            raise SettingsError(f"rule {i}: ids starting with 'preset:' are reserved")
        rules.append(rule)
    extra = {k: v for k, v in doc.items() if k not in ("schema", "rules")}
    return Settings(tuple(rules), extra)


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings atomically (temp file, fsync, rename, fsync the directory)."""
    path = path or config_dir() / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, **settings.extra, "rules": [r.to_json() for r in settings.rules]}
    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".permissions.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
