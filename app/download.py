"""Download a model file from a URL: progress and ETA, resume after an interruption, SHA-256.

The bytes go to ``<dest>.part``; an interrupted download (a dropped connection, the user's
cancel, a crash) leaves it there, and the next call asks the server for the rest
(``Range: bytes=N-``). A server that ignores ranges (``200``) restarts the file from zero.
Once complete, the whole file is checked against the expected SHA-256 (the part already on
disk is hashed first, so a resumed file is checked as a whole) and only then renamed to
``dest``: a file at ``dest`` is always complete and verified. A mismatch deletes the part.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.errors import EngineError

TIMEOUT_S = 30.0
PART_SUFFIX = ".part"


class DownloadError(EngineError):
    """A download failed (one line: what, and what to do); the part kept can be resumed."""


class DownloadCancelledError(DownloadError):
    """The user cancelled; the part is kept for a later resume."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a download is."""

    done: int
    """Bytes on disk (including those of an earlier, resumed attempt)."""
    total: int | None
    """The file's size, when the server said it."""
    rate_bps: float
    """Bytes a second in this attempt."""
    resumed_from: int = 0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None when unknown)."""
        if self.total is None or self.rate_bps <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate_bps)

    @property
    def fraction(self) -> float | None:
        """Done as a fraction of the total (None when unknown)."""
        return None if not self.total else min(1.0, self.done / self.total)


def part_path(dest: Path) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept."""
    return dest.with_name(dest.name + PART_SUFFIX)


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    client: httpx.Client | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` (see the module docstring); returns ``dest``.

    Raises:
        DownloadError: a bad URL, an HTTP error, a dropped connection (the part is kept), or
            a SHA-256 mismatch (the part is deleted).
        DownloadCancelledError: ``cancel`` was set (the part is kept).
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"not an http:// or https:// URL: {url[:200]!r}")
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and (
        len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)
    ):
        raise DownloadError("the SHA-256 must be 64 hexadecimal digits")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S, follow_redirects=True)
    try:
        _fetch(http, url, part, progress, cancel)
    finally:
        if own:
            http.close()
    digest = _sha256(part)
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the download failed its SHA-256 check (expected {expected}, got {digest}); "
            "it was deleted - check the URL and the checksum"
        )
    os.replace(part, dest)
    return dest


def _fetch(
    http: httpx.Client,
    url: str,
    part: Path,
    progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
) -> None:
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    started = time.monotonic()
    try:
        with http.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416 and have:  # nothing left to send: the part is whole
                return
            if resp.status_code not in (200, 206):
                raise DownloadError(f"the server answered HTTP {resp.status_code} for {url[:200]}")
            if resp.status_code == 200:
                have = 0  # the server ignored the range: start over
            total = _total(resp, have)
            got = 0
            with part.open("ab" if have else "wb") as f:
                for chunk in resp.iter_bytes():  # as received: nothing buffered is lost on a drop
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelledError(
                            "download cancelled; it resumes where it stopped"
                        )
                    f.write(chunk)
                    got += len(chunk)
                    if progress is not None:
                        elapsed = max(1e-6, time.monotonic() - started)
                        progress(Progress(have + got, total, got / elapsed, have))
            if total is not None and have + got < total:
                raise DownloadError(
                    f"the connection ended at {have + got} of {total} bytes; try again to resume"
                )
    except httpx.HTTPError as e:
        raise DownloadError(
            f"download interrupted ({type(e).__name__}: {e}); try again to resume"
        ) from e


def _total(resp: httpx.Response, have: int) -> int | None:
    if resp.status_code == 206:
        rng = resp.headers.get("content-range", "")
        size = rng.rpartition("/")[2]
        if size.isdigit():
            return int(size)
    length = resp.headers.get("content-length", "")
    return have + int(length) if length.isdigit() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
