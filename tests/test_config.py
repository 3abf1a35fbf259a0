"""The one typed configuration: precedence, the file, the environment, bad input, the CLI."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from engine import config
from engine.config import Config, Proactivity, Source, VoiceEngine
from engine.core.policy import PolicyConfig
from engine.core.tuning import KINDS, TUNED_MODULES, TUNING

CONFIG_ENV = re.compile(r"^TANDEM_(" + "|".join(s.upper() for s in config.SECTIONS) + r")_")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own config dir and no TANDEM_<SECTION>_* variables of the caller."""
    home = tmp_path / "config"
    monkeypatch.setenv("TANDEM_CONFIG_DIR", str(home))
    for name in list(os.environ):
        if CONFIG_ENV.match(name):
            monkeypatch.delenv(name)
    yield home / config.FILE_NAME


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def value(cfg: Config, dotted: str) -> object:
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


# --- the schema ---------------------------------------------------------------------------


def test_keys_are_exactly_the_section_fields() -> None:
    declared = {
        f"{s}.{f.name}" for s, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)
    }
    assert set(config.BY_NAME) == declared
    assert [f.name for f in dataclasses.fields(Config)] == list(config.SECTIONS)


def test_the_defaults_are_the_engines_own() -> None:
    cfg = Config()
    assert config.policy_config(cfg) == PolicyConfig()  # one home for the policy's defaults
    assert cfg.proactivity.level is Proactivity.NORMAL
    assert config.model_config(cfg) == config.ModelConfig()
    loaded = config.load(env={})
    assert loaded.config == cfg and not loaded.problems and not loaded.file_found
    assert set(loaded.sources.values()) == {Source.DEFAULT}


def test_policy_and_model_configs_follow_the_settings() -> None:
    cfg = config.load(
        env={
            "TANDEM_TURN_TAKING_EAGERNESS": "0.9",
            "TANDEM_TURN_TAKING_MAX_WAIT_S": "2",
            "TANDEM_REMOTE_URL": "http://127.0.0.1:8080",
            "TANDEM_REMOTE_MODEL": "qwen",
            "TANDEM_MODEL_N_THREADS": "3",
            "TANDEM_MODEL_GPU_LAYERS": "0",
        }
    ).config
    assert config.policy_config(cfg) == PolicyConfig(eagerness=0.9, max_wait_s=2.0)
    m = config.model_config(cfg)
    assert (m.server_url, m.server_model, m.n_threads, m.n_gpu_layers) == (
        "http://127.0.0.1:8080",
        "qwen",
        3,
        0,
    )
    assert config.device_choice(3) == "3" and config.device_choice(None) is None


# --- precedence: command line > environment > file > defaults, per key ----------------------

SAMPLES: dict[str, tuple[object, str, object]] = {
    # key: (in the file, in the environment, on the command line)
    "model.name": ("/m/a.gguf", "/m/b.gguf", "smollm2-135m"),
    "model.sha256": ("a" * 64, "B" * 64, "c" * 64),
    "model.n_ctx": (1024, "4096", 8192),
    "model.n_threads": (1, "2", 3),
    "model.gpu_layers": (0, "10", 20),
    "devices.mic": ("USB", "2", "Blue Yeti"),
    "devices.speaker": (1, "HDMI", "4"),
    "voice.engine": ("espeak", "piper", "espeak"),
    "voice.piper_threads": (2, "3", 4),
    "turn_taking.eagerness": (0.2, "0.7", 0.9),
    "turn_taking.interject_threshold": (0.1, "0.2", 0.3),
    "turn_taking.interject_cooldown_s": (10, "20", 40.0),
    "turn_taking.backchannel_threshold": (0.1, "0.2", 0.3),
    "turn_taking.backchannel_gap_s": (1, "2", 3.0),
    "turn_taking.model_stop_threshold": (0.1, "0.2", 0.3),
    "turn_taking.max_wait_s": (1.0, "2.0", 3.0),
    "proactivity.level": ("off", "chatty", "critical"),
    "proactivity.max_interjections_per_10_min": (1, "2", 5),
    "proactivity.min_gap_s": (5, "10", 15.0),
    "screen.enabled": (True, "off", "yes"),
    "screen.all_monitors": (True, "no", "on"),
    "screen.max_fps": (1, "2", 3.0),
    "screen.vision_url": ("http://a:1/v1", "https://b:2/v1", "http://127.0.0.1:3/v1"),
    "screen.vision_model": ("one", "two", "three"),
    "remote.url": ("http://a:1", "https://b:2/v1", "http://127.0.0.1:3"),
    "remote.model": ("one", "two", "three"),
}


def test_every_key_has_a_precedence_sample() -> None:
    assert set(SAMPLES) == set(config.BY_NAME)


@pytest.mark.parametrize("dotted", sorted(SAMPLES))
def test_precedence_per_key(dotted: str, isolated: Path) -> None:
    key = config.BY_NAME[dotted]
    in_file, in_env, on_cli = SAMPLES[dotted]
    section, name = dotted.split(".")
    expect_file = key.kind.from_json(in_file)
    expect_env = key.kind.from_text(in_env)
    expect_cli = key.kind.from_text(on_cli) if isinstance(on_cli, str) else on_cli
    # Each level's value differs from the one below it, so the winner is visible.
    assert key.default() != expect_file != expect_env != expect_cli

    loaded = config.load(env={}, cli={dotted: None})  # None: the option was not given
    assert value(loaded.config, dotted) == key.default()
    assert loaded.sources[dotted] is Source.DEFAULT
    write(isolated, {"schema": 1, section: {name: in_file}})
    env = {key.env: in_env}
    levels: list[tuple[Source, dict[str, str], dict[str, object], object]] = [
        (Source.FILE, {}, {}, expect_file),
        (Source.ENV, env, {}, expect_env),
        (Source.CLI, env, {dotted: on_cli}, expect_cli),
    ]
    for source, env_level, cli_level, expected in levels:
        loaded = config.load(env=env_level, cli=cli_level)
        assert value(loaded.config, dotted) == expected, source
        assert loaded.sources[dotted] is source
        assert not loaded.problems
        others = {k: s for k, s in loaded.sources.items() if k != dotted}
        assert set(others.values()) == {Source.DEFAULT}  # only this key moved


def test_a_bad_value_falls_back_to_the_next_level(isolated: Path) -> None:
    write(isolated, {"schema": 1, "model": {"n_ctx": 4096}})
    loaded = config.load(env={"TANDEM_MODEL_N_CTX": "lots"}, cli={"model.n_ctx": 10})
    assert loaded.config.model.n_ctx == 4096 and loaded.sources["model.n_ctx"] is Source.FILE
    cli_line, env_line = loaded.lines(Source.CLI), loaded.lines(Source.ENV)
    assert cli_line == [
        "command line: model.n_ctx: 10 is out of range (128 to 1048576); using 4096 (file)"
    ]
    assert env_line == [
        "TANDEM_MODEL_N_CTX (model.n_ctx): 'lots' is not a whole number; using 4096 (file)"
    ]


# --- the environment ---------------------------------------------------------------------


def test_environment_names_and_text_values() -> None:
    assert config.BY_NAME["turn_taking.eagerness"].env == "TANDEM_TURN_TAKING_EAGERNESS"
    loaded = config.load(
        env={
            "TANDEM_TURN_TAKING_EAGERNESS": " 0.7 ",
            "TANDEM_DEVICES_MIC": "3",
            "TANDEM_DEVICES_SPEAKER": "USB Audio 2",
            "TANDEM_MODEL_N_THREADS": "auto",
            "TANDEM_MODEL_NAME": "default",
            "TANDEM_VOICE_ENGINE": "ESPEAK",
            "TANDEM_REMOTE_URL": "none",
            "TANDEM_CONFIG_DIR": "/elsewhere",  # not a setting, and not flagged as one
            "TANDEM_DATA_DIR": "/elsewhere",
            "PATH": "/bin",
        }
    )
    cfg = loaded.config
    assert cfg.turn_taking.eagerness == 0.7
    assert cfg.devices.mic == 3 and cfg.devices.speaker == "USB Audio 2"
    assert cfg.model.n_threads is None and cfg.model.name is None and cfg.remote.url is None
    assert cfg.voice.engine is VoiceEngine.ESPEAK
    assert loaded.sources["model.n_threads"] is Source.ENV  # an explicit "auto" still counts
    assert not loaded.problems


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("TANDEM_MODEL_N_CTX", "4096.5", "'4096.5' is not a whole number"),
        ("TANDEM_MODEL_N_CTX", "9" * 60, "is not a whole number"),
        ("TANDEM_TURN_TAKING_EAGERNESS", "inf", "inf is not a finite number"),
        ("TANDEM_TURN_TAKING_EAGERNESS", "nan", "nan is not a finite number"),
        ("TANDEM_TURN_TAKING_EAGERNESS", "", "'' is not a number"),
        ("TANDEM_TURN_TAKING_EAGERNESS", "-0.1", "-0.1 is out of range (0 to 1)"),
        ("TANDEM_VOICE_ENGINE", "opera", "'opera' is not one of piper, espeak"),
        ("TANDEM_MODEL_SHA256", "abc", "is not a SHA-256"),
        ("TANDEM_REMOTE_URL", "ftp://host", "is not an http:// or https:// URL"),
        ("TANDEM_REMOTE_URL", "http://h:port", "is not a URL"),
        ("TANDEM_DEVICES_MIC", "mic\x1b[2J", "contains control characters"),
        ("TANDEM_REMOTE_MODEL", "", "is empty"),
    ],
)
def test_bad_environment_values_are_one_line_each(
    name: str, text: str, says: str, isolated: Path
) -> None:
    write(isolated, {"schema": 1, "model": {"n_threads": 2}})
    loaded = config.load(env={name: text, "TANDEM_MODEL_GPU_LAYERS": "5"})
    (line,) = loaded.lines()
    key = config.BY_ENV[name]
    assert line.startswith(f"{name} ({key.dotted}): ") and says in line
    assert f"using {json.dumps(config.to_json_value(key.default()))} (default)" in line
    assert line.isprintable()
    assert loaded.config.model.gpu_layers == 5 and loaded.config.model.n_threads == 2  # the rest


def test_unknown_and_secret_environment_variables() -> None:
    loaded = config.load(
        env={"TANDEM_TURN_TAKING_EAGERNES": "0.9", "TANDEM_REMOTE_API_KEY": "sk-secret-1"}
    )
    lines = loaded.lines(Source.ENV)
    assert lines[0].startswith("TANDEM_REMOTE_API_KEY: not read; API keys live only in")
    assert lines[1] == (
        "TANDEM_TURN_TAKING_EAGERNES: not a configuration key"
        " (did you mean TANDEM_TURN_TAKING_EAGERNESS?); ignored"
    )
    assert "sk-secret-1" not in " ".join(lines)
    assert loaded.config == Config()


# --- the file: migrations ------------------------------------------------------------------


def test_a_schema_0_file_migrates(isolated: Path) -> None:
    # Schema 0: no "schema", the flat layout keyed by `tandem run`'s options.
    write(
        isolated,
        {
            "model": "/models/a.gguf",
            "n-ctx": 4096,
            "threads": 2,
            "server": "http://127.0.0.1:8080",
            "mic_device": "USB",
            "turn_taking": {"eagerness": 0.9},  # a section already there is kept
        },
    )
    loaded = config.load(env={})
    cfg = loaded.config
    assert not loaded.problems
    assert (cfg.model.name, cfg.model.n_ctx, cfg.model.n_threads) == ("/models/a.gguf", 4096, 2)
    assert cfg.remote.url == "http://127.0.0.1:8080" and cfg.devices.mic == "USB"
    assert cfg.turn_taking.eagerness == 0.9
    # The next write stores schema 1, nested.
    assert main(["config", "set", "voice.engine", "espeak"]) == 0
    doc = json.loads(isolated.read_text())
    assert doc == {
        "schema": 1,
        "model": {"name": "/models/a.gguf", "n_ctx": 4096, "n_threads": 2},
        "devices": {"mic": "USB"},
        "voice": {"engine": "espeak"},
        "turn_taking": {"eagerness": 0.9},
        "remote": {"url": "http://127.0.0.1:8080"},
    }
    assert config.load(env={}).config == dataclasses.replace(
        cfg, voice=config.VoiceSettings(engine=VoiceEngine.ESPEAK)
    )


def test_migrations_run_in_order_to_the_current_schema(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A future schema 2 renames a key: the hook is a dict of version -> function.
    def rename(doc: dict[str, Any]) -> dict[str, Any]:
        tt = dict(doc.get("turn_taking", {}))
        tt["eagerness"] = tt.pop("eager", 0.5)
        return {**doc, "turn_taking": tt, "schema": 2}

    monkeypatch.setattr(config, "SCHEMA", 2)
    monkeypatch.setitem(config.MIGRATIONS, 1, rename)
    write(isolated, {"schema": 1, "turn_taking": {"eager": 0.8}})
    assert config.load(env={}).config.turn_taking.eagerness == 0.8
    write(isolated, {"turn_taking": {"eager": 0.3}})  # schema 0 -> 1 -> 2
    assert config.load(env={}).config.turn_taking.eagerness == 0.3

    def broken(doc: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("rules")

    monkeypatch.setitem(config.MIGRATIONS, 1, broken)
    (line,) = config.load(env={}).lines()
    assert "cannot migrate schema 1" in line and "the file is not used" in line


# --- the file: malformed input, one line each, the rest kept -------------------------------

GOOD: dict[str, dict[str, Any]] = {"remote": {"model": "kept"}}
"""A valid key beside the bad one: it must survive."""


def _nested(depth: int) -> object:
    value: object = "piper"
    for _ in range(depth):
        value = [value]
    return value


PER_KEY: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, the bad part of the file, the key the line names, what the line says)
    (
        "unknown key",
        {"turn_taking": {"eagernes": 0.9}},
        "turn_taking.eagernes",
        "did you mean 'turn_taking.eagerness'",
    ),
    (
        "unknown section",
        {"turntaking": {"eagerness": 0.9}},
        "'turntaking'",
        "did you mean 'turn_taking'",
    ),
    ("dotted at the top", {"turn_taking.eagerness": 0.9}, "turn_taking", "must be nested"),
    (
        "section not an object",
        {"turn_taking": [0.9]},
        "turn_taking",
        "expected an object of settings, got a list",
    ),
    (
        "wrong type",
        {"turn_taking": {"eagerness": "high"}},
        "turn_taking.eagerness",
        "expected a number from 0 to 1, got the text 'high'",
    ),
    ("bool for a number", {"model": {"n_ctx": True}}, "model.n_ctx", "got true"),
    ("float for a whole", {"model": {"n_ctx": 4096.0}}, "model.n_ctx", "expected a whole number"),
    ("null for a required key", {"model": {"n_ctx": None}}, "model.n_ctx", "got null"),
    (
        "out of range",
        {"turn_taking": {"eagerness": 1.5}},
        "turn_taking.eagerness",
        "1.5 is out of range (0 to 1)",
    ),
    ("negative device", {"devices": {"mic": -1}}, "devices.mic", "out of range"),
    ("object for a device", {"devices": {"speaker": {"x": 1}}}, "devices.speaker", "an object"),
    (
        "not a choice",
        {"proactivity": {"level": "loud"}},
        "proactivity.level",
        "is not one of off, critical, normal, chatty",
    ),
    (
        "URL with credentials",
        {"remote": {"url": "https://me:pw@host"}},
        "remote.url",
        "must not carry credentials",
    ),
    ("deeply nested value", {"voice": {"engine": _nested(40)}}, "voice.engine", "got a list"),
    (
        "an API key",
        {"remote": {"api_key": "sk-secret-1"}},
        "remote.api_key",
        "API keys live only in the system keyring",
    ),
    (
        "a control character",
        {"devices": {"mic": "USB\ntandem: forged line"}},
        "devices.mic",
        "contains control characters",
    ),
    (
        "huge text",
        {"model": {"name": "x" * 5000}},
        "model.name",
        "is longer than 4096 characters",
    ),
]


@pytest.mark.parametrize(("case", "bad", "key", "says"), PER_KEY, ids=[c[0] for c in PER_KEY])
def test_a_bad_entry_is_one_line_and_the_rest_is_kept(
    case: str, bad: dict[str, Any], key: str, says: str, isolated: Path
) -> None:
    doc: dict[str, Any] = {"schema": 1, **bad}
    doc["remote"] = {**doc.get("remote", {}), **GOOD["remote"]}
    write(isolated, doc)
    loaded = config.load(env={"TANDEM_MODEL_N_THREADS": "2"})
    (line,) = loaded.lines()
    assert line.startswith(f"config {isolated}: ") and key in line and says in line, line
    assert line.isprintable() and "sk-secret-1" not in line
    assert loaded.config.remote.model == "kept" and loaded.config.model.n_threads == 2
    assert loaded.sources["remote.model"] is Source.FILE


RAW_NAN = '{"schema": 1, "turn_taking": {"eagerness": NaN, "max_wait_s": 2.5}}'
RAW_INF = '{"schema": 1, "turn_taking": {"eagerness": Infinity, "max_wait_s": 2.5}}'
RAW_BIG = '{"schema": 1, "turn_taking": {"eagerness": 1e999, "max_wait_s": 2.5}}'


@pytest.mark.parametrize(("raw", "says"), [(RAW_NAN, "nan"), (RAW_INF, "inf"), (RAW_BIG, "inf")])
def test_non_finite_numbers_are_refused_by_key(raw: str, says: str, isolated: Path) -> None:
    write(isolated, raw)
    loaded = config.load(env={})
    (line,) = loaded.lines()
    assert f"turn_taking.eagerness: {says} is not a finite number; using 0.5 (default)" in line
    assert loaded.config.turn_taking.max_wait_s == 2.5


def _directory(p: Path) -> None:
    p.mkdir(parents=True)


def _huge(p: Path) -> None:
    p.parent.mkdir(parents=True)
    p.write_text('{"schema": 1, "pad": "' + "x" * (config.MAX_BYTES + 10) + '"}')


def _symlink_loop(p: Path) -> None:  # unreadable whoever runs the test, root included
    p.parent.mkdir(parents=True)
    p.symlink_to(p)


def _fifo(p: Path) -> None:
    p.parent.mkdir(parents=True)
    os.mkfifo(p)


def _text(text: str | bytes) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        p.parent.mkdir(parents=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)

    return make


DEEP = "[" * 100_000 + "]" * 100_000
ENDLESS = '{"schema": 1, "model": {"n_ctx": ' + "9" * 5000 + "}}"
WHOLE_FILE: list[tuple[str, Callable[[Path], None], str]] = [
    ("a directory", _directory, "is a directory, not a file"),
    ("over 1 MiB", _huge, "is larger than 1048576 bytes"),
    ("unreadable", _symlink_loop, "cannot be read"),
    ("a FIFO", _fifo, "is not a regular file"),
    ("not JSON", _text('{"schema": 1, "model": {'), "not valid JSON (Expecting"),
    ("not UTF-8", _text(b'{"schema": 1, "x": "\xff"}'), "not valid JSON (not UTF-8 at byte"),
    ("nested too deeply", _text(DEEP), "not valid JSON (nested too deeply)"),
    ("a list", _text("[1, 2]"), "expected a JSON object, got a list"),
    ("a newer schema", _text('{"schema": 2, "model": {}}'), "schema 2 is newer than this"),
    ("a schema that is text", _text('{"schema": "1"}'), "'schema' must be a whole number"),
    ("an endless integer", _text(ENDLESS), "not valid JSON"),
]


@pytest.mark.parametrize(("case", "make", "says"), WHOLE_FILE, ids=[c[0] for c in WHOLE_FILE])
def test_an_unusable_file_is_one_line_and_the_other_sources_still_apply(
    case: str, make: Callable[[Path], None], says: str, isolated: Path
) -> None:
    make(isolated)
    loaded = config.load(env={"TANDEM_MODEL_N_THREADS": "2"}, cli={"model.n_ctx": 1024})
    (line,) = loaded.lines()
    assert line.startswith(f"config {isolated}: {says}") and "the file is not used" in line, line
    assert line.isprintable() and len(line) < 300
    assert loaded.config.model.n_threads == 2 and loaded.config.model.n_ctx == 1024
    assert loaded.config.turn_taking == PolicyConfig()


def test_many_problems_are_capped(isolated: Path) -> None:
    write(isolated, {"schema": 1, "model": {f"k{i}": i for i in range(100)}})
    lines = config.load(env={}).lines()
    assert len(lines) == config.MAX_PROBLEMS + 1
    assert lines[-1] == f"... and {100 - config.MAX_PROBLEMS} more file problems"


# --- writing -------------------------------------------------------------------------------


def test_set_validates_and_writes_atomically(isolated: Path) -> None:
    path, v = config.set_value("turn_taking.eagerness", "0.7")
    assert path == isolated and v == 0.7
    config.set_value("devices.mic", "2")
    config.set_value("model.n_threads", "auto")
    assert json.loads(isolated.read_text()) == {
        "schema": 1,
        "model": {"n_threads": None},
        "devices": {"mic": 2},
        "turn_taking": {"eagerness": 0.7},
    }
    assert sorted(p.name for p in isolated.parent.iterdir()) == [config.FILE_NAME]  # no temp
    with pytest.raises(config.ConfigUsageError, match=r"^turn_taking.eagerness: 2 is out"):
        config.set_value("turn_taking.eagerness", "2")
    with pytest.raises(config.ConfigUsageError, match=r"^unknown key 'turn.eagerness'"):
        config.set_value("turn.eagerness", "2")
    assert json.loads(isolated.read_text())["turn_taking"] == {"eagerness": 0.7}


def test_set_keeps_unknown_entries_but_drops_secrets(isolated: Path) -> None:
    write(
        isolated,
        {
            "schema": 1,
            "remote": {"api_key": "sk-secret-1", "url": "http://h:1"},
            "screen": {"fps": 2},  # a later Tandem's section: kept for it
            "model": {"n_ctx": "big"},  # invalid, but the user's: kept as written
        },
    )
    config.set_value("remote.model", "qwen")
    doc = json.loads(isolated.read_text())
    assert doc == {
        "schema": 1,
        "model": {"n_ctx": "big"},
        "remote": {"url": "http://h:1", "model": "qwen"},
        "screen": {"fps": 2},
    }


def test_set_keeps_an_unknown_non_finite_entry_as_it_was(isolated: Path) -> None:
    write(isolated, '{"schema": 1, "hologram": {"gamma": NaN}}')
    config.set_value("voice.engine", "espeak")
    assert '"gamma": NaN' in isolated.read_text()
    (line,) = config.load(env={}).lines()
    assert "unknown section 'hologram'" in line


def test_set_refuses_to_overwrite_a_file_it_cannot_read(isolated: Path) -> None:
    write(isolated, '{"schema": 2, "from": "a newer Tandem"}')
    before = isolated.read_bytes()
    with pytest.raises(config.ConfigError, match=r"schema 2 is newer.*nothing was written"):
        config.set_value("turn_taking.eagerness", "0.7")
    assert isolated.read_bytes() == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.set_value("turn_taking.eagerness", "0.7")
    before = isolated.read_bytes()

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config.os, "replace", fail)
    with pytest.raises(config.ConfigError, match=r"cannot be written \(No space left on device"):
        config.set_value("turn_taking.eagerness", "0.8")
    assert isolated.read_bytes() == before
    assert sorted(p.name for p in isolated.parent.iterdir()) == [config.FILE_NAME]


def test_set_stores_a_model_path_as_an_absolute_path(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, v = config.set_value("model.name", "models/a.gguf")
    assert v == str(tmp_path / "models" / "a.gguf")
    _, v = config.set_value("model.name", "smollm2-135m")  # an embedded id stays an id
    assert v == "smollm2-135m"


# --- the command line ----------------------------------------------------------------------


def test_config_path(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(isolated)


def test_config_set_then_show_round_trip(
    isolated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["config", "set", "turn_taking.eagerness", "0.7"]) == 0
    assert main(["config", "set", "proactivity.level", "Chatty"]) == 0
    assert main(["config", "set", "devices.speaker", "HDMI 1"]) == 0
    out = capsys.readouterr().out
    assert f'proactivity.level = "chatty" (written to {isolated})' in out
    monkeypatch.setenv("TANDEM_MODEL_N_CTX", "4096")
    assert main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["path"] == str(isolated) and shown["schema"] == 1 and shown["file_found"]
    assert shown["config"]["turn_taking"]["eagerness"] == 0.7
    assert shown["config"]["proactivity"]["level"] == "chatty"
    assert shown["config"]["devices"]["speaker"] == "HDMI 1"
    assert shown["config"]["model"]["n_ctx"] == 4096
    assert shown["sources"]["turn_taking.eagerness"] == "file"
    assert shown["sources"]["model.n_ctx"] == "env"
    assert shown["sources"]["model.n_threads"] == "default"
    assert shown["problems"] == []
    # What show prints is what set takes.
    assert main(["config", "show"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"# {isolated}"
    rows: dict[str, tuple[object, str]] = {}
    for line in text[1:]:
        dotted, rest = line.split(None, 1)
        shown_value, end = json.JSONDecoder().raw_decode(rest)
        source, comment = rest[end:].split("  # ")
        rows[dotted] = (shown_value, source.strip())
        assert comment == config.BY_NAME[dotted].help
    assert set(rows) == set(config.BY_NAME)
    assert rows["turn_taking.eagerness"] == (0.7, "file")
    assert rows["devices.speaker"] == ("HDMI 1", "file")
    assert rows["model.n_ctx"] == (4096, "env TANDEM_MODEL_N_CTX")
    assert rows["voice.engine"] == ("piper", "default")
    # What show prints, set takes back: writing every shown value changes nothing.
    before = config.load().config
    for dotted, (shown_value, _) in rows.items():
        text_value = "null" if shown_value is None else str(shown_value)
        assert main(["config", "set", dotted, text_value]) == 0
    monkeypatch.delenv("TANDEM_MODEL_N_CTX")
    after = config.load()
    assert after.config == before and set(after.sources.values()) == {Source.FILE}


def test_config_set_usage_errors_exit_2_with_one_line(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "set", "turn_taking.eagernes", "0.7"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "tandem: error: unknown key 'turn_taking.eagernes' (did you mean"
        " 'turn_taking.eagerness'?); every key: tandem config show\n"
    )
    assert main(["config", "set", "model.n_ctx", "-5"]) == 2
    assert capsys.readouterr().err == (
        "tandem: error: model.n_ctx: -5 is out of range (128 to 1048576)\n"
    )
    assert main(["config", "set", "remote.api_key", "sk-secret-1"]) == 2
    err = capsys.readouterr().err
    assert "keyring" in err and "sk-secret-1" not in err and err.count("\n") == 1
    assert not isolated.exists()


def test_config_set_on_an_unusable_file_exits_1(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated, "{not json")
    assert main(["config", "set", "turn_taking.eagerness", "0.7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tandem: error: config {isolated}: not valid JSON")
    assert "nothing was written" in err and err.count("\n") == 1
    assert isolated.read_text() == "{not json"


def test_config_show_warns_and_goes_on(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(isolated, {"schema": 1, "turn_taking": {"eagerness": 7}, "voice": {"engine": "espeak"}})
    assert main(["config", "show"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"tandem: warning: config {isolated}: turn_taking.eagerness: 7 is out of range"
        " (0 to 1); using 0.5 (default)\n"
    )
    assert '"espeak"' in captured.out and "Traceback" not in captured.err


def test_config_show_tuning_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--json", "--tuning"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["tuning"]}
    assert rows["engine.core.frames.TICK_S"]["value"] == 0.2
    assert rows["engine.hearing.bargein.BACKCHANNEL_MAX_S"]["source"].startswith("chosen")
    assert "ReplyBudget(" in rows["engine.core.engine.LIVE_BUDGET"]["value"]


# --- `tandem run` reads the configuration under its flags ----------------------------------


@pytest.fixture
def fake_run_live(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import app.terminal

    calls: list[dict[str, Any]] = []

    async def run_live(cfg: object, out: object, stdin: object, *args: Any, **kw: Any) -> None:
        calls.append({"cfg": cfg, "duration": args[0] if args else None, **kw})

    monkeypatch.setattr(app.terminal, "run_live", run_live)
    return calls


def test_run_flags_override_environment_and_file(
    isolated: Path, fake_run_live: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        isolated,
        {
            "schema": 1,
            "model": {"n_ctx": 1024, "n_threads": 1, "name": "/m/file.gguf"},
            "devices": {"mic": 3, "speaker": "HDMI"},
            "remote": {"model": "from-file"},
        },
    )
    monkeypatch.setenv("TANDEM_MODEL_N_CTX", "4096")
    monkeypatch.setenv("TANDEM_MODEL_N_THREADS", "2")
    assert main(["run", "--mic", "--threads", "3", "--speaker-device", "USB"]) == 0
    (call,) = fake_run_live
    cfg, audio = call["cfg"], call["audio"]
    assert cfg.n_threads == 3  # command line
    assert cfg.n_ctx == 4096  # environment
    assert cfg.model == "/m/file.gguf" and cfg.server_model == "from-file"  # file
    assert cfg.sha256 is None and cfg.server_url is None  # defaults
    assert audio.mic == "3" and audio.speaker == "USB" and call["listen"] is True


def test_run_refuses_a_bad_flag_and_warns_about_a_bad_file(
    isolated: Path,
    fake_run_live: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--n-ctx", "5"]) == 2
    assert capsys.readouterr().err == (
        "tandem: error: command line: model.n_ctx: 5 is out of range (128 to 1048576);"
        " using 2048 (default)\n"
    )
    write(isolated, "[]")
    assert main(["run", "--duration", "1"]) == 0
    assert capsys.readouterr().err.startswith(f"tandem: warning: config {isolated}: expected")
    assert fake_run_live[0]["cfg"] == config.ModelConfig()


# --- the voice ------------------------------------------------------------------------------


def test_the_voice_setting_picks_the_synthesizer(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import ModelFileError
    from engine.voice import synthesis

    made: list[tuple[str, dict[str, Any]]] = []

    class Piper:
        def __init__(self, **kw: Any) -> None:
            made.append(("piper", kw))
            if kw["threads"] == 9:
                raise ModelFileError("piper voice missing\nmore detail")

    class Espeak:
        def __init__(self) -> None:
            made.append(("espeak", {}))

    monkeypatch.setattr(synthesis, "PiperSynthesizer", Piper)
    monkeypatch.setattr(synthesis, "EspeakSynthesizer", Espeak)
    assert isinstance(config.make_synthesizer(config.VoiceSettings(piper_threads=2)), Piper)
    assert made[-1] == ("piper", {"threads": 2, "deterministic": False})
    assert isinstance(config.make_synthesizer(config.VoiceSettings(VoiceEngine.ESPEAK)), Espeak)
    assert isinstance(config.make_synthesizer(config.VoiceSettings(piper_threads=9)), Espeak)


# --- every tuning constant named in one place ------------------------------------------------


def _module_constants(module: str) -> dict[str, object]:
    """The module-level UPPER_CASE int and float constants that ``module`` itself defines."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            elts = t.elts if isinstance(t, ast.Tuple) else [t]
            names += [e.id for e in elts if isinstance(e, ast.Name)]
    mod = importlib.import_module(module)
    found: dict[str, object] = {}
    for name in names:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            continue
        v = getattr(mod, name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            found[name] = v
    return found


@pytest.mark.parametrize("module", TUNED_MODULES)
def test_the_tuning_table_covers_every_numeric_constant(module: str) -> None:
    listed = {t.attr for t in TUNING if t.module == module}
    missing = sorted(set(_module_constants(module)) - listed)
    assert not missing, f"{module}: add {missing} to engine/core/tuning.py with their sources"


def test_every_tuning_entry_resolves_and_says_where_it_came_from() -> None:
    names = [t.name for t in TUNING]
    assert len(names) == len(set(names))
    for t in TUNING:
        assert t.module in TUNED_MODULES, t.name
        assert t.source.split(" ", 1)[0].split(":")[0] in KINDS, t.name
        assert len(t.source) > len("chosen: ") + 5, t.name
        v = t.value()
        assert v is not None, t.name
    policy = {t.attr.split(".", 1)[1] for t in TUNING if t.attr.startswith("PolicyConfig.")}
    assert policy == {f.name for f in dataclasses.fields(PolicyConfig)}
    by_name = {t.name: t.value() for t in TUNING}
    assert by_name["engine.core.policy.PolicyConfig.max_wait_s"] == PolicyConfig().max_wait_s
    assert by_name["engine.hearing.vad.VadStream.min_speech_s"] == 0.1
    assert by_name["engine.core.frames.TICK_S"] == 0.2


def test_the_tuning_table_imports_none_of_the_modules_it_lists() -> None:
    code = (
        "import sys, engine.core.tuning as t;"
        " print([m for m in t.TUNED_MODULES if m in sys.modules])"
    )
    import subprocess
    import sys

    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    listed_and_loaded = set(json.loads(ran.stdout.replace("'", '"')))
    # `import engine` loads the package's public surface (the Engine, the live driver); the
    # table adds nothing to it: no native library, no voice, no model backend.
    assert not listed_and_loaded & {
        "engine.voice.piper",
        "engine.voice.synthesis",
        "engine.senses.sound",
        "engine.hearing.listener",
        "engine.model.llama_backend",
    }
