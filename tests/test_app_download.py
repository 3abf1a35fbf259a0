"""Model download against a real HTTP server on 127.0.0.1: progress, resume, SHA-256."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt makes its QApplication

import hashlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.download import (
    DownloadCancelledError,
    DownloadError,
    Progress,
    download,
    part_path,
)

BODY = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(BODY).hexdigest()


@dataclass
class Behaviour:
    """How the server answers: ranges honoured or not, where to drop the connection."""

    ranges: bool = True
    drop_after: int | None = None
    status: int = 200
    seen_ranges: list[str | None] = field(default_factory=list)


def _handler(b: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the test output clean
            return

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            b.seen_ranges.append(rng)
            if b.status != 200:
                self.send_error(b.status)
                return
            start = 0
            if rng and b.ranges:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(BODY):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(BODY)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
            else:
                self.send_response(200)
            body = BODY[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if b.drop_after is not None:
                self.wfile.write(body[: b.drop_after])
                b.drop_after = None  # the next try gets the rest
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    httpd = HTTPServer(("127.0.0.1", 0), _handler(behaviour))
    thread = threading.Thread(target=httpd.serve_forever, name="test-http")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/model.gguf", behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_reports_progress_and_verifies(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, _ = server
    seen: list[Progress] = []
    dest = download(url, tmp_path / "m.gguf", SHA, progress=seen.append)
    assert dest.read_bytes() == BODY
    assert not part_path(dest).exists()
    assert seen[-1].done == len(BODY) and seen[-1].total == len(BODY)
    assert seen[-1].fraction == 1.0 and seen[-1].eta_s == 0.0
    assert all(a.done < b.done for a, b in itertools.pairwise(seen))
    assert seen[0].eta_s is not None and seen[0].eta_s > 0


def test_a_dropped_connection_resumes_where_it_stopped(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, b = server
    b.drop_after = 1_000_000
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match="try again to resume"):
        download(url, dest, SHA)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == 1_000_000
    seen: list[Progress] = []
    download(url, dest, SHA, progress=seen.append)
    assert b.seen_ranges[-1] == "bytes=1000000-"
    assert seen[0].resumed_from == 1_000_000
    assert dest.read_bytes() == BODY  # the whole file was checked, not only the rest


def test_a_server_without_ranges_restarts_from_zero(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, b = server
    b.ranges = False
    dest = tmp_path / "m.gguf"
    part_path(dest).write_bytes(b"x" * 5000)  # junk from an earlier try
    download(url, dest, SHA)
    assert dest.read_bytes() == BODY


def test_a_checksum_mismatch_deletes_the_download(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, _ = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match="SHA-256 check"):
        download(url, dest, "0" * 64)
    assert not dest.exists() and not part_path(dest).exists()


def test_cancel_keeps_the_part_for_later(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    url, _ = server
    cancel = threading.Event()
    dest = tmp_path / "m.gguf"

    def progress(p: Progress) -> None:
        if p.done > 500_000:
            cancel.set()

    with pytest.raises(DownloadCancelledError):
        download(url, dest, SHA, progress=progress, cancel=cancel)
    kept = part_path(dest).stat().st_size
    assert 500_000 < kept < len(BODY)
    download(url, dest, SHA)
    assert dest.read_bytes() == BODY


@pytest.mark.parametrize(
    ("url", "sha", "message"),
    [
        ("ftp://127.0.0.1/m.gguf", None, "http:// or https://"),
        ("file:///etc/passwd", None, "http:// or https://"),
        ("http://127.0.0.1:1/m.gguf", "abc", "64 hexadecimal"),
    ],
)
def test_bad_input_is_one_clear_line(
    url: str, sha: str | None, message: str, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match=message) as e:
        download(url, tmp_path / "m.gguf", sha)
    assert "\n" not in str(e.value)


def test_http_errors_are_one_line(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    url, b = server
    b.status = 404
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(url, tmp_path / "m.gguf", SHA)


def test_the_settings_panel_downloads_with_progress(
    server: tuple[str, Behaviour], tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytestqt")
    from app.desktop.bridge import Bridge
    from app.desktop.settings_panel import SettingsPanel
    from engine.model import embedded

    monkeypatch.setenv("TANDEM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(embedded, "models_dir", lambda: tmp_path / "models")
    url, _ = server
    bridge = Bridge()
    panel = SettingsPanel(bridge)
    qtbot.addWidget(panel)
    panel.url.setText(url)
    panel.sha.setText(SHA.upper())
    panel.fetch.click()
    qtbot.waitUntil(lambda: "verified and saved" in panel.eta.text(), timeout=20_000)
    assert (tmp_path / "models" / "model.gguf").read_bytes() == BODY
    assert panel.editors["model.name"].currentText() == str(tmp_path / "models" / "model.gguf")  # type: ignore[union-attr]
    assert panel.bar.value() == panel.bar.maximum()
    panel.close_download()
    bridge.close()
