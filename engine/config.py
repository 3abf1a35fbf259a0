"""Tandem's one typed configuration: sections of frozen dataclasses, one loader, one writer.

Precedence, per key (the first that has a valid value wins):

1. the command line (``tandem run --n-ctx 4096 --server URL --mic-device 3 ...``);
2. the environment, ``TANDEM_<SECTION>_<KEY>`` (``TANDEM_TURN_TAKING_EAGERNESS=0.7``,
   ``TANDEM_MODEL_N_CTX=4096``, ``TANDEM_DEVICES_MIC=USB``);
3. the file ``config.json`` in the platform's config dir, beside the permission settings
   (``permissions.settings.config_dir()``; ``TANDEM_CONFIG_DIR`` overrides the dir);
4. the defaults: the field defaults of the section classes below (the ``turn_taking``
   section *is* the policy's ``PolicyConfig``, so its defaults live in one place).

The file holds only what the user set (``tandem config set``), so a changed default reaches
every key the user left alone::

    {"schema": 1, "turn_taking": {"eagerness": 0.7}, "devices": {"mic": "USB"}}

Sections: ``model`` (the local model: embedded id or .gguf path, sha256, n_ctx, threads, GPU
layers), ``devices`` (microphone and speaker: an index, part of a name, or null for the
default), ``voice`` (piper or espeak, piper's threads), ``turn_taking`` (``PolicyConfig``:
eagerness, waits, thresholds), ``proactivity`` (how often Tandem may speak up unasked; read by
the screen issue, **not used yet**) and ``remote`` (an OpenAI-compatible server instead of the
local model). API keys are never part of the configuration: they live in the system keyring
(``tandem secrets set server:URL``); a key that looks like one in the file or the environment
is refused and its value never repeated.

Text values (the environment, ``tandem config set``) are read per kind: numbers as numbers;
``none``, ``null``, ``auto``, ``default`` or nothing at all give null to a key that may be null
(``n_threads``: chosen for the load; ``devices.mic``: the default device); an all-digit device
is an index.

Bad input never stops Tandem and never loses the rest: each problem is one line naming the key
(``Loaded.problems``); a key whose value cannot be used takes the next source's value (the
environment's, the file's, or the default). A file that cannot be used as a whole (not a
regular file, over 1 MiB, unreadable, not JSON, nested too deeply, not an object, a schema
newer than this Tandem) is one line, and every key comes from the other sources.

Schema: ``SCHEMA`` is the version written; ``MIGRATIONS[n]`` turns a schema-``n`` document into
schema ``n + 1`` and runs on load (the file is rewritten only by the next ``config set``). A
document without ``"schema"`` is schema 0: the flat layout keyed by ``tandem run``'s option
names (``{"n_ctx": 4096, "server": "http://..."}``, what one writes by hand from ``--help``);
section objects in it are kept as they are. Writes go to a temporary file in the same dir,
are fsynced and renamed over the old file, so a crash leaves the old or the new one.

The engine's tuning constants (tick, barge-in, recognition latency model, watchdogs, ...) are
not settings: ``engine.core.tuning`` names each with where its value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.core.policy import PolicyConfig
from engine.core.proactivity import Proactivity, ProactivityConfig
from engine.errors import EngineError
from engine.model.load import DEFAULT_N_CTX, ModelConfig
from permissions import settings
from permissions.errors import SettingsError

if TYPE_CHECKING:
    from engine.voice.synthesis import Synthesizer

log = logging.getLogger(__name__)

SCHEMA = 1
FILE_NAME = "config.json"
ENV_PREFIX = "TANDEM_"
MAX_BYTES = settings.MAX_BYTES
"""A config file larger than this (1 MiB, as for the permission settings) is not read."""
MAX_DEPTH = 32
"""Unknown values nested deeper than this are not kept when the file is rewritten."""
MAX_TEXT = 4096
"""The longest text value (a model path, a device name, a URL)."""
MAX_PROBLEMS = 20
"""Problems reported per source; the rest are counted in one more line."""
NONE_WORDS = frozenset({"", "none", "null", "auto", "default"})
"""Text that means null for a key that may be null."""
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential")
"""A key whose name contains one of these is taken for a secret: refused, never echoed."""
KEYRING_HINT = "API keys live only in the system keyring: tandem secrets set server:URL"


class ConfigError(EngineError):
    """The configuration file cannot be written, or cannot be read well enough to rewrite."""


class ConfigUsageError(ConfigError):
    """An unknown key or a bad value given on the command line (a usage error)."""


class Source(enum.Enum):
    """Where a key's value came from (highest precedence first)."""

    CLI = "cli"
    ENV = "env"
    FILE = "file"
    DEFAULT = "default"


class VoiceEngine(enum.Enum):
    """The voice that speaks the replies."""

    PIPER = "piper"
    """piper en_US-joe-medium (embedded); espeak-ng's own voice if it is missing or corrupt."""
    ESPEAK = "espeak"
    """espeak-ng's own voice (robotic, a few ms to first audio)."""


# --- the sections ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """The local interaction model (``remote.url`` replaces it with a server)."""

    name: str | None = None
    """An embedded model id (``smollm2-135m``) or a path to a .gguf; None: the embedded default."""
    sha256: str | None = None
    """The SHA-256 ``name`` must have when it is a path (embedded models carry their own)."""
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    """llama.cpp threads; None: chosen for the load (every core, less one while hearing, the
    voice or OCR compute: ``engine.core.cpu``)."""
    gpu_layers: int | None = None
    """Layers offloaded to a GPU; None: all of them when llama.cpp was built with a GPU."""


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """Sound devices: an index or part of a name (``tandem devices``), None for the default."""

    mic: int | str | None = None
    speaker: int | str | None = None


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """The voice."""

    engine: VoiceEngine = VoiceEngine.PIPER
    piper_threads: int = 1
    """onnxruntime threads: one on the 2-core machine (``tandem bench tts``, PiperVoice)."""


@dataclass(frozen=True, slots=True)
class ProactivitySettings:
    """Speaking up unasked about what is on screen (``engine.core.proactivity``)."""

    level: Proactivity = Proactivity.NORMAL
    max_interjections_per_10_min: int = 3
    min_gap_s: float = 20.0
    """Seconds between two remarks (chatty: half)."""

    def policy(self) -> ProactivityConfig:
        """The proactivity policy's configuration."""
        return ProactivityConfig(
            level=self.level,
            max_per_10_min=self.max_interjections_per_10_min,
            min_gap_s=self.min_gap_s,
        )


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    """The screen sense: off until the user turns it on (first-run consent comes later)."""

    enabled: bool = False
    all_monitors: bool = False
    """Grab every monitor instead of the one under the focused window."""
    max_fps: float = 5.0
    """Frames per second at most (slower when nothing changes)."""
    vision_url: str | None = None
    """An OpenAI-compatible server that takes images (``.../v1``): a question about the screen
    also sends it the changed region (its API key: ``tandem secrets set server:URL``)."""
    vision_model: str = "default"


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """An OpenAI-compatible server instead of the local model. Its API key is in the keyring."""

    url: str | None = None
    model: str = "default"
    """The model name to ask the server for."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``Config()`` is the defaults."""

    model: ModelSettings = field(default_factory=ModelSettings)
    devices: DeviceSettings = field(default_factory=DeviceSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    turn_taking: PolicyConfig = field(default_factory=PolicyConfig)
    proactivity: ProactivitySettings = field(default_factory=ProactivitySettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    screen: ScreenSettings = field(default_factory=ScreenSettings)


SECTIONS: dict[str, type[Any]] = {
    "model": ModelSettings,
    "devices": DeviceSettings,
    "voice": VoiceSettings,
    "turn_taking": PolicyConfig,
    "proactivity": ProactivitySettings,
    "remote": RemoteSettings,
    "screen": ScreenSettings,
}


# --- value kinds: JSON values and text to typed values, with one-line reasons --------------


class Kind(Protocol):
    """How one key's value is read: from JSON (the file) and from text (env, command line)."""

    def from_json(self, value: object) -> object:
        """The typed value; raises ``ValueError`` with a short reason."""
        ...

    def from_text(self, text: str) -> object:
        """The typed value for text; raises ``ValueError`` with a short reason."""
        ...

    def describe(self) -> str:
        """What the key takes, for help and errors (``a number from 0 to 1``)."""
        ...


@dataclass(frozen=True, slots=True)
class Number:
    """A finite number in ``[lo, hi]``; a whole one when ``integer``; maybe null."""

    lo: float
    hi: float
    integer: bool = False
    optional: bool = False

    def from_json(self, value: object) -> object:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected {self.describe()}, got {_json_type(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if self.integer and not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {_show(value)}")
        number: int | float = value if self.integer else float(value)
        if not self.lo <= number <= self.hi:
            raise ValueError(f"{_show(number)} is out of range ({self._range()})")
        return number

    def from_text(self, text: str) -> object:
        t = text.strip()
        if self.optional and t.lower() in NONE_WORDS:
            return None
        what = "a whole number" if self.integer else "a number"
        if len(t) > 40:
            raise ValueError(f"{_quote(t)} is not {what}")
        try:
            value: int | float = int(t, 10) if self.integer else float(t)
        except ValueError:
            raise ValueError(f"{_quote(t)} is not {what}") from None
        return self.from_json(value)

    def describe(self) -> str:
        what = "a whole number" if self.integer else "a number"
        return f"{what} from {self._range()}" + (", or null" if self.optional else "")

    def _range(self) -> str:
        return f"{_show(self.lo)} to {_show(self.hi)}"


@dataclass(frozen=True, slots=True)
class Choice:
    """One of an enum's values."""

    choices: type[enum.Enum]

    def from_json(self, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected {self.describe()}, got {_json_type(value)}")
        try:
            return self.choices(value.strip().lower())
        except ValueError:
            raise ValueError(f"{_quote(value)} is not {self.describe()}") from None

    def from_text(self, text: str) -> object:
        return self.from_json(text)

    def describe(self) -> str:
        return "one of " + ", ".join(str(c.value) for c in self.choices)


@dataclass(frozen=True, slots=True)
class Flag:
    """true or false (text: true/false, yes/no, on/off, 1/0)."""

    def from_json(self, value: object) -> object:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_json_type(value)}")
        return value

    def from_text(self, text: str) -> object:
        t = text.strip().lower()
        if t in ("true", "yes", "on", "1"):
            return True
        if t in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{_quote(text)} is not true or false")

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True, slots=True)
class Text:
    """One line of text, checked by ``check`` (which may normalise it); maybe null."""

    optional: bool = False
    check: Callable[[str], str] | None = None
    what: str = "text"
    max_len: int = MAX_TEXT

    def from_json(self, value: object) -> object:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected {self.describe()}, got {_json_type(value)}")
        if not value.strip():
            raise ValueError("is empty" + (" (null means the default)" if self.optional else ""))
        if len(value) > self.max_len:
            raise ValueError(f"is longer than {self.max_len} characters")
        if not value.isprintable():
            raise ValueError("contains control characters")
        return self.check(value) if self.check else value

    def from_text(self, text: str) -> object:
        if self.optional and text.strip().lower() in NONE_WORDS:
            return None
        return self.from_json(text)

    def describe(self) -> str:
        return self.what + (", or null" if self.optional else "")


@dataclass(frozen=True, slots=True)
class Device:
    """A sound device: an index, part of its name, or null for the default."""

    def from_json(self, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 100_000:
                raise ValueError(f"device index {value} is out of range (0 to 100000)")
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected {self.describe()}, got {_json_type(value)}")
        name = Text(optional=True, max_len=200).from_json(value)
        assert isinstance(name, str)  # a str in gives a str out (or raises)
        return int(name) if name.strip().isdecimal() and name.strip().isascii() else name

    def from_text(self, text: str) -> object:
        return None if text.strip().lower() in NONE_WORDS else self.from_json(text)

    def describe(self) -> str:
        return "a device index or part of its name (tandem devices), or null for the default"


def _sha256(text: str) -> str:
    digest = text.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("is not a SHA-256 (64 hexadecimal digits)")
    return digest


def _url(text: str) -> str:
    url = text.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{_quote(url)} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_quote(url)} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"must not carry credentials; {KEYRING_HINT}")  # never echo them
    return url


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: ``section.name``, how its value is read, what it means."""

    section: str
    name: str
    kind: Kind
    help: str

    @property
    def dotted(self) -> str:
        """``section.name``, as ``tandem config set`` takes it."""
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        """The environment variable: ``TANDEM_<SECTION>_<KEY>``."""
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"

    def default(self) -> object:
        """The default: the section class's field default."""
        return getattr(SECTIONS[self.section](), self.name)


KEYS: tuple[Key, ...] = (
    Key(
        "model",
        "name",
        Text(True, what="an embedded model id or a .gguf path"),
        "embedded model id or .gguf path (null: smollm2-135m)",
    ),
    Key("model", "sha256", Text(True, _sha256, "a SHA-256"), "expected SHA-256 of a .gguf"),
    Key("model", "n_ctx", Number(128, 1 << 20, integer=True), "context window in tokens"),
    Key(
        "model",
        "n_threads",
        Number(1, 1024, integer=True, optional=True),
        "llama.cpp threads (null: chosen for the load)",
    ),
    Key(
        "model",
        "gpu_layers",
        Number(0, 100_000, integer=True, optional=True),
        "layers offloaded to a GPU (null: all, when the build has a GPU)",
    ),
    Key("devices", "mic", Device(), "microphone (null: the default, followed when it changes)"),
    Key("devices", "speaker", Device(), "speaker (null: the default)"),
    Key("voice", "engine", Choice(VoiceEngine), "piper (espeak if piper is missing) or espeak"),
    Key("voice", "piper_threads", Number(1, 64, integer=True), "onnxruntime threads for piper"),
    Key("turn_taking", "eagerness", Number(0, 1), "higher answers sooner and more often"),
    Key(
        "turn_taking",
        "interject_threshold",
        Number(0, 1),
        "model confidence needed to interject unasked",
    ),
    Key("turn_taking", "interject_cooldown_s", Number(0, 86_400), "seconds between interjections"),
    Key(
        "turn_taking",
        "backchannel_threshold",
        Number(0, 1),
        "model confidence needed for a backchannel",
    ),
    Key("turn_taking", "backchannel_gap_s", Number(0, 3600), "seconds between backchannels"),
    Key(
        "turn_taking",
        "model_stop_threshold",
        Number(0, 1),
        "model confidence needed to stop mid-reply on its own",
    ),
    Key("turn_taking", "max_wait_s", Number(0.1, 10), "longest wait after the user's words"),
    Key(
        "proactivity",
        "level",
        Choice(Proactivity),
        "speaking up unasked: off, critical (destructive commands), normal, chatty",
    ),
    Key(
        "proactivity",
        "max_interjections_per_10_min",
        Number(0, 100, integer=True),
        "cap on unasked remarks (critical ones are exempt)",
    ),
    Key("proactivity", "min_gap_s", Number(0, 86_400), "seconds between unasked remarks"),
    Key(
        "remote",
        "url",
        Text(True, _url, "an http:// or https:// URL"),
        "OpenAI-compatible server instead of the local model (API key: the keyring)",
    ),
    Key("remote", "model", Text(max_len=200), "model name to ask the server for"),
    Key("screen", "enabled", Flag(), "see the screen (under a lease; off until turned on)"),
    Key("screen", "all_monitors", Flag(), "grab every monitor, not the focused window's one"),
    Key("screen", "max_fps", Number(0.2, 30), "screen frames per second at most"),
    Key(
        "screen",
        "vision_url",
        Text(True, _url, "an http:// or https:// URL"),
        "vision model server (OpenAI-compatible, takes images) for questions about the screen",
    ),
    Key("screen", "vision_model", Text(max_len=200), "model name to ask the vision server for"),
)
BY_NAME: dict[str, Key] = {k.dotted: k for k in KEYS}
BY_ENV: dict[str, Key] = {k.env: k for k in KEYS}

FLAG_KEYS: dict[str, str] = {
    "model": "model.name",
    "sha256": "model.sha256",
    "n_ctx": "model.n_ctx",
    "threads": "model.n_threads",
    "gpu_layers": "model.gpu_layers",
    "server": "remote.url",
    "server_model": "remote.model",
    "mic_device": "devices.mic",
    "speaker_device": "devices.speaker",
}
"""``tandem run``'s options (argparse names) -> keys: the command line's level, and the layout
of a schema-0 file."""


# --- migrations ------------------------------------------------------------------------------

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _from_schema_0(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 0 (no ``"schema"``): flat ``tandem run`` option names -> sections. Section
    objects already there are kept; a flat name's value wins over the same key in one."""
    out: dict[str, Any] = {}
    flat: dict[str, tuple[str, Any]] = {}
    for k, v in doc.items():
        option = k.replace("-", "_") if isinstance(k, str) else k
        if option in FLAG_KEYS and not (option == "model" and isinstance(v, dict)):
            flat[k] = (FLAG_KEYS[option], v)
        else:
            out[k] = v
    for dotted, v in flat.values():
        section, name = dotted.split(".")
        existing = out.get(section)
        out[section] = {**(existing if isinstance(existing, dict) else {}), name: v}
    out["schema"] = 1
    return out


MIGRATIONS: dict[int, Migration] = {0: _from_schema_0}
"""``MIGRATIONS[n]`` turns a schema-``n`` document into schema ``n + 1``."""


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one source; ``line`` is for the user."""

    source: Source
    line: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Loaded:
    """The effective configuration, where each key's value came from, and what was wrong."""

    config: Config
    sources: Mapping[str, Source]
    problems: tuple[Problem, ...]
    path: Path
    file_found: bool = False

    def lines(self, source: Source | None = None) -> list[str]:
        """The problem lines (of one source, or all)."""
        return [p.line for p in self.problems if source is None or p.source is source]

    def to_json(self) -> dict[str, Any]:
        """What ``tandem config show --json`` prints."""
        return {
            "path": str(self.path),
            "file_found": self.file_found,
            "schema": SCHEMA,
            "config": to_json(self.config),
            "sources": {k: s.value for k, s in self.sources.items()},
            "problems": self.lines(),
        }


def config_path() -> Path:
    """``config.json`` in the permission settings' dir (``TANDEM_CONFIG_DIR`` overrides it)."""
    return settings.config_dir() / FILE_NAME


def load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, object] | None = None,
) -> Loaded:
    """The configuration from defaults < file < environment < command line.

    Args:
        path: the file (default: ``config_path()``).
        env: the environment (default: ``os.environ``).
        cli: dotted key -> value from the command line; None values are "not given". Text is
            read like the environment's; other values like the file's.

    Never raises for bad input: see ``Loaded.problems``.
    """
    path = path or config_path()
    env = os.environ if env is None else env
    problems: list[tuple[Source, str | None, str]] = []
    found, file_values, file_problems = _read_file(path)
    problems += [(Source.FILE, k, m) for k, m in file_problems]
    env_values, env_problems = _read_env(env)
    problems += [(Source.ENV, k, m) for k, m in env_problems]
    cli_values: dict[str, object] = {}
    for dotted, raw in (cli or {}).items():
        if raw is None:
            continue
        key = BY_NAME.get(dotted)
        if key is None:
            problems.append((Source.CLI, None, f"command line: unknown key {_quote(dotted)}"))
            continue
        try:
            cli_values[dotted] = (
                key.kind.from_text(raw) if isinstance(raw, str) else key.kind.from_json(raw)
            )
        except ValueError as e:
            problems.append((Source.CLI, dotted, f"command line: {dotted}: {e}"))
    layers = ((Source.CLI, cli_values), (Source.ENV, env_values), (Source.FILE, file_values))
    chosen: dict[str, tuple[object, Source]] = {}
    for key in KEYS:
        chosen[key.dotted] = next(
            ((layer[key.dotted], src) for src, layer in layers if key.dotted in layer),
            (key.default(), Source.DEFAULT),
        )
    cfg = _build(chosen)
    lines: list[Problem] = []
    for src in (Source.CLI, Source.ENV, Source.FILE):
        mine = [(k, m) for s, k, m in problems if s is src]
        for k, m in mine[:MAX_PROBLEMS]:
            then = ""
            if k is not None:
                value, from_src = chosen[k]
                then = f"; using {_show_value(value)} ({from_src.value})"
            lines.append(Problem(src, _one_line(m + then), k))
        if len(mine) > MAX_PROBLEMS:
            more = f"... and {len(mine) - MAX_PROBLEMS} more {src.value} problems"
            lines.append(Problem(src, more))
    return Loaded(cfg, {k: s for k, (_, s) in chosen.items()}, tuple(lines), path, found)


def _build(chosen: Mapping[str, tuple[object, Source]]) -> Config:
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        fields = {f.name: chosen[f"{name}.{f.name}"][0] for f in dataclasses.fields(cls)}
        sections[name] = cls(**fields)
    return Config(**sections)


def _read_file(path: Path) -> tuple[bool, dict[str, object], list[tuple[str | None, str]]]:
    """(file found, valid values by dotted key, problems as (key, line))."""
    where = f"config {path}"
    try:
        doc = read_document(path)
    except FileNotFoundError:
        return False, {}, []
    except ConfigError as e:
        return (
            True,
            {},
            [(None, f"{where}: {e}; the file is not used (its keys take their defaults)")],
        )
    values: dict[str, object] = {}
    problems: list[tuple[str | None, str]] = []
    for top, body in doc.items():
        if top == "schema":
            continue
        if top not in SECTIONS:
            problems.append((None, f"{where}: {_unknown(top, is_section=True)}; ignored"))
            continue
        if not isinstance(body, dict):
            what = f"expected an object of settings, got {_json_type(body)}"
            problems.append((None, f"{where}: {top}: {what}; its keys are not used"))
            continue
        for name, value in body.items():
            dotted = f"{top}.{name}"
            key = BY_NAME.get(dotted)
            if key is None:
                problems.append((None, f"{where}: {_unknown(dotted)}; ignored"))
                continue
            try:
                values[dotted] = key.kind.from_json(value)
            except ValueError as e:
                problems.append((dotted, f"{where}: {dotted}: {e}"))
    return True, values, problems


def read_document(path: Path) -> dict[str, Any]:
    """The file as a migrated schema-``SCHEMA`` document.

    Raises:
        FileNotFoundError: there is no file.
        ConfigError: it cannot be used as a whole (one line, without the path).
    """
    try:
        raw = settings.read_capped(path)
    except SettingsError as e:
        raise ConfigError(str(e)) from e
    try:
        parsed: object = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid JSON (not UTF-8 at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except RecursionError as e:
        raise ConfigError("not valid JSON (nested too deeply)") from e
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"not valid JSON ({_one_line(str(e))[:80]})") from e
    if not isinstance(parsed, dict):
        raise ConfigError(f"expected a JSON object, got {_json_type(parsed)}")
    doc: dict[str, Any] = parsed
    schema = doc.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise ConfigError(f"'schema' must be a whole number from 0 to {SCHEMA}")
    if schema > SCHEMA:
        raise ConfigError(f"schema {schema} is newer than this Tandem's ({SCHEMA})")
    while schema < SCHEMA:
        try:
            doc = MIGRATIONS[schema](doc)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"cannot migrate schema {schema} ({_one_line(str(e))[:80]})") from e
        schema += 1
    return doc


def _read_env(env: Mapping[str, str]) -> tuple[dict[str, object], list[tuple[str | None, str]]]:
    values: dict[str, object] = {}
    problems: list[tuple[str | None, str]] = []
    prefixes = tuple(f"{ENV_PREFIX}{s.upper()}_" for s in SECTIONS)
    for name in sorted(env):
        key = BY_ENV.get(name)
        if key is None:
            if name.startswith(prefixes):
                if _secret_like(name):
                    problems.append((None, f"{name}: not read; {KEYRING_HINT}"))
                    continue
                close = difflib.get_close_matches(name, BY_ENV, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append((None, f"{name}: not a configuration key{hint}; ignored"))
            continue
        try:
            values[key.dotted] = key.kind.from_text(env[name])
        except ValueError as e:
            problems.append((key.dotted, f"{name} ({key.dotted}): {e}"))
    return values, problems


# --- writing -------------------------------------------------------------------------------


def parse_value(dotted: str, text: str) -> tuple[Key, object]:
    """The key and the typed value of ``tandem config set KEY VALUE``.

    Raises:
        ConfigUsageError: the key is unknown or the value is not valid for it (one line).
    """
    key = BY_NAME.get(dotted)
    if key is None:
        raise ConfigUsageError(f"{_unknown(dotted)}; every key: tandem config show")
    try:
        value = key.kind.from_text(text)
    except ValueError as e:
        raise ConfigUsageError(_one_line(f"{dotted}: {e}")) from e
    if dotted == "model.name" and isinstance(value, str) and _looks_like_path(value):
        value = str(Path(value).expanduser().resolve())  # the file is read from any directory
    return key, value


def set_value(dotted: str, text: str, path: Path | None = None) -> tuple[Path, object]:
    """Validate one value and write it into the file (atomically); returns the path and the
    typed value. The file's other entries are kept as they are, unknown ones included (a later
    Tandem's, or the user's own mistakes, which load keeps reporting), except anything that
    looks like a secret and values nested more than ``MAX_DEPTH`` deep.

    Raises:
        ConfigUsageError: unknown key or bad value (nothing was written).
        ConfigError: the file cannot be used or written (nothing was written).
    """
    key, value = parse_value(dotted, text)
    path = path or config_path()
    try:
        doc = read_document(path)
    except FileNotFoundError:
        doc = {}
    except ConfigError as e:
        raise ConfigError(
            f"config {path}: {e}; nothing was written (fix or remove the file first)"
        ) from e
    section = doc.get(key.section)
    section = dict(section) if isinstance(section, dict) else {}
    section[key.name] = to_json_value(value)
    doc[key.section] = section
    out = {"schema": SCHEMA, **_without_secrets(_ordered(doc))}
    data = (json.dumps(out, indent=2) + "\n").encode("utf-8")  # kept NaNs stay as read
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        settings.atomic_write(path, data, prefix=".config.")
    except OSError as e:
        raise ConfigError(f"config {path}: cannot be written ({e.strerror or e})") from e
    return path, value


def _ordered(doc: dict[str, Any]) -> dict[str, Any]:
    """Sections and keys in ``KEYS`` order, unknown ones after them (``schema`` left out)."""
    rank = {name: i for i, name in enumerate(SECTIONS)}
    out: dict[str, Any] = {}
    for k in sorted((k for k in doc if k != "schema"), key=lambda k: rank.get(k, len(rank))):
        body = doc[k]
        if k in SECTIONS and isinstance(body, dict):
            names = [f.name for f in dataclasses.fields(SECTIONS[k])]
            body = {n: body[n] for n in sorted(body, key=lambda n: _index(names, n))}
        out[k] = body
    return out


def _index(names: list[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def _without_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if _secret_like(k) or _deeper_than(v, MAX_DEPTH):
            continue
        out[k] = _without_secrets(v) if isinstance(v, dict) else v
    return out


# --- using it ------------------------------------------------------------------------------


def to_json(cfg: Config) -> dict[str, dict[str, Any]]:
    """The configuration as JSON values, section by section."""
    return {
        name: {
            f.name: to_json_value(getattr(getattr(cfg, name), f.name))
            for f in dataclasses.fields(cls)
        }
        for name, cls in SECTIONS.items()
    }


def tuning_rows() -> list[dict[str, Any]]:
    """``engine.core.tuning``'s table with the values in force (imports the engine's modules)."""
    from engine.core.tuning import TUNING

    rows: list[dict[str, Any]] = []
    for t in TUNING:
        value = t.value()
        shown = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        rows.append(
            {
                "name": t.name,
                "value": shown if shown is not None else repr(value),
                "source": t.source,
            }
        )
    return rows


def policy_config(cfg: Config) -> PolicyConfig:
    """The turn-taking section, for ``Engine(policy=...)``."""
    return cfg.turn_taking


def model_config(cfg: Config) -> ModelConfig:
    """The model session's config (the server's when ``remote.url`` is set)."""
    m, r = cfg.model, cfg.remote
    return ModelConfig(
        model=m.name,
        sha256=m.sha256,
        n_ctx=m.n_ctx,
        n_threads=m.n_threads,
        n_gpu_layers=m.gpu_layers,
        server_url=r.url,
        server_model=r.model,
    )


def device_choice(choice: int | str | None) -> str | None:
    """A device setting as ``engine.senses.sound.resolve`` takes it (an index as text)."""
    return None if choice is None else str(choice)


def make_synthesizer(voice: VoiceSettings, *, deterministic: bool = False) -> Synthesizer:
    """The configured voice: piper with ``piper_threads`` (espeak-ng's own voice when the
    piper voice is missing or corrupt), or espeak-ng."""
    from engine.voice.synthesis import EspeakSynthesizer, default_synthesizer

    if voice.engine is VoiceEngine.ESPEAK:
        log.info("voice: espeak-ng (configured)")
        return EspeakSynthesizer()
    return default_synthesizer(deterministic=deterministic, threads=voice.piper_threads)


# --- small helpers -------------------------------------------------------------------------


def _unknown(name: object, *, is_section: bool = False) -> str:
    text = _quote(name)
    if isinstance(name, str) and _secret_like(name):
        return f"{text} is not read; {KEYRING_HINT}"
    if not isinstance(name, str):
        return f"unknown key {text}"
    if is_section and name in BY_NAME:
        section, key = name.split(".")
        return f"{text} must be nested: {{{json.dumps(section)}: {{{json.dumps(key)}: ...}}}}"
    pool = list(SECTIONS) if is_section else list(BY_NAME)
    close = difflib.get_close_matches(name, pool, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {'section' if is_section else 'key'} {text}{hint}"


def _secret_like(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in SECRET_WORDS)


def _looks_like_path(value: str) -> bool:
    from engine.model.registry import EMBEDDED

    return value not in EMBEDDED and (
        value.lower().endswith(".gguf") or os.sep in value or value.startswith("~")
    )


def to_json_value(value: object) -> object:
    """A typed value as JSON (an enum as its value)."""
    return value.value if isinstance(value, enum.Enum) else value


def _show_value(value: object) -> str:
    return json.dumps(to_json_value(value))


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else repr(number)


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = _one_line(text)
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {_show(value)}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return f"the text {_quote(value)}"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


def _one_line(text: str) -> str:
    """``text`` with control characters replaced, so a hostile file cannot forge lines."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


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
