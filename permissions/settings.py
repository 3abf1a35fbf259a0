"""Persisted permission settings: the user's rules, schema-versioned, written atomically.

The file lives in the platform's config dir (``platformdirs``; ``TANDEM_CONFIG_DIR``
overrides it, for tests and portable installs)::

    {"schema": 1, "rules": [{"id": "...", "decision": "allow", "tool": "read_file", ...}]}

Loading fails closed, never open, and never crashes Tandem; whatever is wrong is said in one
line (``Loaded.problem``; every detail in ``Loaded.issues``):

- Rules are read one by one. A malformed allow or ask rule, or one with a key ``Rule`` does
  not know, is dropped. A malformed deny rule is kept in its broadest readable form: the
  fields that cannot be read are left out, which makes it deny *more* (a deny rule with no
  readable tool or sense denies every tool).
- When the file as a whole is unusable (unreadable, not a regular file, over ``MAX_BYTES``,
  not JSON, nested too deeply, the wrong shape), the deny rules of the last good copy
  (``permissions.json.last-good``, refreshed on each clean load) are kept; every other
  request asks. The line says how many of the user's deny rules are in force, including
  when none are. A file from a newer Tandem, or with more than ``MAX_RULES`` rules, keeps
  its own readable deny rules and nothing else.
- A missing file with a last good copy beside it keeps that copy's deny rules, and says so:
  deleting the file does not silently drop them (delete both to start afresh).

Rules are parsed once, at load: the gate never re-reads the file per decision. Only
``always`` rules are added to the file at run time (see ``gate``); ``once`` and ``session``
rules written here by hand hold for one request per run and for each run respectively.
Writes go to a temporary file, are fsynced, then renamed over the old one, so a crash leaves
either the old or the new file, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from permissions import model
from permissions.errors import SettingsError
from permissions.model import Decision, Rule, Sense

SCHEMA = 1
FILE_NAME = "permissions.json"
LAST_GOOD_SUFFIX = ".last-good"
ENV_CONFIG_DIR = "TANDEM_CONFIG_DIR"
ENV_DATA_DIR = "TANDEM_DATA_DIR"
MAX_BYTES = 1 << 20
"""A settings file larger than this (1 MiB) is not read."""
MAX_RULES = 10_000
"""A file with more rules than this keeps only its deny rules."""
MAX_DEPTH = 32
"""Values nested deeper than this are not kept (rules themselves are flat objects)."""

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
    """Settings as loaded, and what was wrong with the file (if anything).

    Attributes:
        settings: the rules in force.
        problem: one line for the user; None when the file was read cleanly.
        path: the settings file.
        issues: every problem found, one line each (rules dropped or broadened).
    """

    settings: Settings
    problem: str | None
    path: Path
    issues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Parsed:
    """A settings document read rule by rule: what is kept, and what was wrong."""

    settings: Settings
    issues: tuple[str, ...]
    denies_only: bool = False
    """True when only the document's deny rules were kept (newer schema, too many rules)."""


def rule_keys() -> frozenset[str]:
    """The keys a rule may have in the file (``model.RULE_KEYS``; without it, ``Rule``'s
    fields less those only presets have)."""
    known = getattr(model, "RULE_KEYS", None)
    if isinstance(known, frozenset):
        return known
    return frozenset(f.name for f in dataclasses.fields(Rule)) - {"builtin", "matcher"}


def load(path: Path | None = None) -> Loaded:
    """Read the settings; fail closed on any problem and say it in one line."""
    path = path or config_dir() / FILE_NAME
    last_good = path.with_name(path.name + LAST_GOOD_SUFFIX)
    try:
        raw = read_capped(path)
    except FileNotFoundError:
        if path.is_symlink():
            return _fallback(path, "is a broken symbolic link")
        if not last_good.is_file():
            return Loaded(Settings(), None, path)
        return _fallback(path, "is missing but a last good copy is beside it")
    except SettingsError as e:
        return _fallback(path, str(e))
    try:
        parsed = parse_document(raw)
    except SettingsError as e:
        return _fallback(path, str(e))
    if not parsed.issues:
        _keep_last_good(last_good, raw)
        return Loaded(parsed.settings, None, path)
    first = parsed.issues[0]
    more = f" (and {len(parsed.issues) - 1} more)" if len(parsed.issues) > 1 else ""
    n_deny = sum(r.decision is Decision.DENY for r in parsed.settings.rules)
    if parsed.denies_only:
        then = f"using safe defaults: only its {n_deny} deny rules apply, every other request asks"
    else:
        then = (
            "the rest of the file applies (unreadable allow and ask rules are left out,"
            " unreadable deny rules are kept and deny more)"
        )
    return Loaded(parsed.settings, _one_line(f"{path}: {first}{more}; {then}"), path, parsed.issues)


def read_capped(path: Path) -> bytes:
    """The bytes of a settings-like file, refusing what is not a small regular file.

    Raises:
        FileNotFoundError: there is no file.
        SettingsError: anything else is wrong (one line).
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise SettingsError("is a directory, not a file")
            if not stat.S_ISREG(mode):
                raise SettingsError("is not a regular file")
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise
    except IsADirectoryError as e:
        raise SettingsError("is a directory, not a file") from e
    except OSError as e:
        raise SettingsError(f"cannot be read ({e.strerror or e})") from e
    if len(data) > MAX_BYTES:
        raise SettingsError(f"is larger than {MAX_BYTES} bytes, the most a settings file may be")
    return data


def parse(raw: bytes) -> Settings:
    """Parse and migrate a settings document strictly; raises ``SettingsError`` on the
    first problem, whether with the document or with one rule."""
    parsed = parse_document(raw)
    if parsed.issues:
        raise SettingsError(parsed.issues[0])
    return parsed.settings


def parse_document(raw: bytes) -> Parsed:
    """Parse and migrate a settings document, rule by rule.

    Raises:
        SettingsError: the document as a whole is unusable (then no rule of it is kept).
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SettingsError(f"not valid JSON (not UTF-8 at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise SettingsError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except RecursionError as e:
        raise SettingsError("not valid JSON (nested too deeply)") from e
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise SettingsError(f"not valid JSON ({_one_line(str(e))[:80]})") from e
    if not isinstance(doc, dict):
        raise SettingsError("expected a JSON object")
    rules_raw = doc.get("rules", [])
    if not isinstance(rules_raw, list):
        raise SettingsError("'rules' must be a list")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        return _denies_only(rules_raw, "missing or invalid 'schema'")
    if schema > SCHEMA:
        return _denies_only(rules_raw, f"schema {schema} is newer than this Tandem ({SCHEMA})")
    if len(rules_raw) > MAX_RULES:
        return _denies_only(rules_raw, f"{len(rules_raw)} rules, more than {MAX_RULES}")
    try:
        while schema < SCHEMA:
            doc = MIGRATIONS[schema](doc)
            schema += 1
    except (KeyError, TypeError, ValueError) as e:
        return _denies_only(rules_raw, f"cannot migrate schema {schema} ({e})")
    rules_raw = doc.get("rules", [])
    if not isinstance(rules_raw, list):
        raise SettingsError("'rules' must be a list")
    rules, issues = _read_rules(rules_raw, denies_only=False)
    extra = {}
    for k, v in doc.items():
        if k in ("schema", "rules"):
            continue
        if _deeper_than(v, MAX_DEPTH):
            issues.append(f"setting {k[:40]!r} is nested more than {MAX_DEPTH} levels deep")
        else:
            extra[k] = v
    return Parsed(Settings(tuple(rules), extra), tuple(issues))


def _denies_only(rules_raw: list[Any], why: str) -> Parsed:
    rules, issues = _read_rules(rules_raw, denies_only=True)
    return Parsed(Settings(tuple(rules)), (why, *issues), denies_only=True)


def _read_rules(rules_raw: list[Any], *, denies_only: bool) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    issues: list[str] = []
    for i, obj in enumerate(rules_raw):
        if not isinstance(obj, dict):
            issues.append(f"rule {i} is not an object")
            continue
        is_deny = _is_deny(obj.get("decision"))
        if denies_only and not is_deny:
            continue
        try:
            rule = _strict_rule(obj)
        except (ValueError, KeyError, TypeError, SettingsError) as e:
            if not is_deny:
                issues.append(f"rule {i}: {_one_line(str(e))}")
                continue
            kept, missing = _broad_deny(obj, i)
            issues.append(f"rule {i}: {_one_line(str(e))}; kept as a broader deny ({missing})")
            rules.extend(kept)
            continue
        if rule.id.startswith("preset:"):
            if not is_deny:
                issues.append(f"rule {i}: ids starting with 'preset:' are reserved")
                continue
            rule = dataclasses.replace(rule, id=f"settings:{rule.id}")
            issues.append(
                f"rule {i}: ids starting with 'preset:' are reserved; renamed {rule.id!r}"
            )
        rules.append(rule)
    return rules, issues


def _is_deny(decision: object) -> bool:
    return isinstance(decision, str) and decision.strip().lower() == Decision.DENY.value


def _strict_rule(obj: Mapping[str, Any]) -> Rule:
    unknown = sorted(str(k)[:40] for k in obj if k not in rule_keys())
    if unknown:
        known = ", ".join(sorted(rule_keys()))
        raise ValueError(f"unknown key {', '.join(map(repr, unknown))} (a rule has {known})")
    return Rule.from_json(obj)


def _broad_deny(obj: Mapping[str, Any], i: int) -> tuple[list[Rule], str]:
    """A deny rule that does not parse, with every unreadable field left out (so it denies
    more, never less); and a note of what was left out."""
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid or rid.startswith("preset:"):
        rid = f"settings:{i}"
    strings: dict[str, Any] = {}
    dropped = [str(k)[:40] for k in obj if k not in rule_keys()]
    for f in dataclasses.fields(Rule):
        if f.name in ("id", "decision", "sense", "scope") or f.name not in rule_keys():
            continue
        if f.name not in obj:
            continue
        if f.type == "str" and isinstance(obj[f.name], str):
            strings[f.name] = obj[f.name]
        else:
            dropped.append(f.name)
    senses: list[Sense] = []
    if obj.get("sense") is not None:
        try:
            senses = [Sense(obj["sense"])]
        except (ValueError, TypeError):
            senses = list(Sense)  # which sense was meant cannot be read: deny them all
            dropped.append("sense")
    kept = [
        Rule(f"{rid}:{s.value}" if len(senses) > 1 else rid, Decision.DENY, sense=s, **strings)
        for s in senses
    ]
    if not senses or ("tool" in obj and "tool" not in strings):
        tool_fields = {**strings, "tool": strings.get("tool") or "*"}
        kept.append(Rule(f"{rid}:tools" if senses else rid, Decision.DENY, **tool_fields))
    note = f"left out: {', '.join(dropped)}" if dropped else "as written"
    return kept, note


def _fallback(path: Path, why: str) -> Loaded:
    """The file is unusable: keep the last good copy's deny rules, and say how many."""
    last_good = path.with_name(path.name + LAST_GOOD_SUFFIX)
    denies: tuple[Rule, ...] = ()
    try:
        parsed = parse_document(read_capped(last_good))
        denies = tuple(r for r in parsed.settings.rules if r.decision is Decision.DENY)
        kept = f"kept the {len(denies)} deny rules of {last_good.name}"
    except FileNotFoundError:
        kept = "none of your own deny rules could be read (no last good copy)"
    except SettingsError as e:
        kept = f"none of your own deny rules could be read ({last_good.name} {e})"
    if not denies:
        kept += ", only the built-in ones apply"
    line = f"{path}: {why}; using safe defaults: {kept}, every other request asks"
    return Loaded(Settings(denies), _one_line(line), path, (why,))


def _keep_last_good(last_good: Path, raw: bytes) -> None:
    """Refresh the last good copy after a clean load (best effort: the load's result does
    not depend on it, and a read-only config dir must not stop Tandem)."""
    try:
        if last_good.is_file() and last_good.read_bytes() == raw:
            return
        atomic_write(last_good, raw, prefix=".permissions.")
    except OSError:
        return


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _one_line(text: str) -> str:
    """``text`` with control characters replaced, so a hostile file cannot forge lines."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings atomically (temp file, fsync, rename, fsync the directory)."""
    path = path or config_dir() / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, **settings.extra, "rules": [r.to_json() for r in settings.rules]}
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), prefix=".permissions.")
    return path


def atomic_write(
    path: Path, data: bytes, *, prefix: str = ".tandem.", sync_dir: bool = True
) -> None:
    """Replace ``path`` atomically: a temp file in the same folder, fsync, rename (and fsync
    the folder, so the rename survives a crash). No temp file is left behind on an error.
    The one implementation for every file Tandem rewrites (settings, config, audit side files).
    """
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir and os.name == "posix":  # a directory cannot be opened for fsync on Windows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
