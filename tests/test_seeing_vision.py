"""Looking with a vision model: the changed region goes as an image to a real HTTP server.

No vision-language weights can be had here, so the server is a small scripted
OpenAI-compatible one on 127.0.0.1 that decodes what it got and checks it is the region.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from engine.core.frames import ScreenText
from engine.seeing.ocr import OcrLine
from engine.seeing.reader import ReadJob, ScreenReader
from engine.seeing.regions import Box, Frame
from engine.seeing.state import ScreenState
from engine.seeing.vision import Looker, VisionClient, VisionError, png

LEAKED = "sk-proj-Qm7Xv2Lp9Rt4Wz8Kc3Hn6Bd1Fy5Gs0Ja2Ue7Io4"


def decode_png(data: bytes) -> np.ndarray:
    """A minimal PNG reader for what ``png`` writes (8-bit RGB or gray, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h, color = 8, b"", 0, 0, 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            w, h, _, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    channels = 3 if color == 2 else 1
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * channels)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, channels) if channels == 3 else rows[:, 1:]


class Scripted(ThreadingHTTPServer):
    """Answers chat completions; keeps every request body it got."""

    answer = "test_parser fails with a KeyError on 'name'."
    status = 200

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        self.server.paths.append(self.path)
        reply = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": self.server.answer}}]}
        ).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, name="test-vision-server")
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        thread.join()
        srv.server_close()


def url(srv: Scripted) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def the_image(body: dict[str, Any]) -> np.ndarray:
    (msg,) = body["messages"]
    parts = {p["type"]: p for p in msg["content"]}
    data_url = parts["image_url"]["image_url"]["url"]
    assert data_url.startswith("data:image/png;base64,")
    return decode_png(base64.b64decode(data_url.split(",", 1)[1]))


def test_png_round_trips_the_pixels() -> None:
    bgra = np.zeros((5, 7, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 10, 20, 30  # B, G, R
    rgb = decode_png(png(bgra))
    assert rgb.shape == (5, 7, 3) and tuple(rgb[0, 0]) == (30, 20, 10)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (decode_png(png(gray)) == gray).all()


def test_the_region_is_sent_as_an_image_and_the_answer_comes_back(server: Scripted) -> None:
    region = np.zeros((40, 60, 4), dtype=np.uint8)
    region[10:20, 5:50, :3] = 255  # a bright line of "text"
    client = VisionClient(url(server), model="qwen2.5-vl")
    try:
        answer = client.describe(region, "what's wrong on my screen?")
    finally:
        client.close()
    assert answer == Scripted.answer
    (body,) = server.bodies
    assert server.paths == ["/v1/chat/completions"] and body["model"] == "qwen2.5-vl"
    assert body["messages"][0]["content"][0] == {
        "type": "text",
        "text": "what's wrong on my screen?",
    }
    image = the_image(body)
    assert image.shape == (40, 60, 3)
    assert (image[10:20, 5:50] == 255).all() and (image[:10] == 0).all()


def test_a_server_error_is_one_clear_line(server: Scripted) -> None:
    server.status = 500
    client = VisionClient(url(server))
    try:
        with pytest.raises(VisionError, match="answered HTTP 500"):
            client.describe(np.zeros((4, 4, 4), dtype=np.uint8), "?")
    finally:
        client.close()
    gone = VisionClient("http://127.0.0.1:9/v1", timeout_s=2)
    try:
        with pytest.raises(VisionError, match="unreachable"):
            gone.describe(np.zeros((4, 4, 4), dtype=np.uint8), "?")
    finally:
        gone.close()


class ScriptedOcr:
    """OCR that 'reads' a secret on the first line and code on the second."""

    def read(self, frame: Frame, region: Box) -> list[OcrLine]:
        return [
            OcrLine(f"OPENAI_API_KEY={LEAKED}", Box(region.x, region.y, 60, 10)),
            OcrLine(
                "FAILED tests/test_parser.py::test_parser", Box(region.x, region.y + 20, 60, 10)
            ),
        ]


def test_a_look_sends_the_last_region_with_secrets_blacked_out(server: Scripted) -> None:
    server.answer = f"The key {LEAKED} is shown and test_parser fails."
    state = ScreenState()
    reader = ScreenReader(ScriptedOcr(), state, lambda _f: None)
    frame = np.full((100, 100, 4), 200, dtype=np.uint8)
    reader.process(ReadJob(1.0, "XTerm", frame, (Box(0, 0, 100, 40),)))
    got: list[ScreenText] = []
    looker = Looker(VisionClient(url(server)), state.latest_region, got.append, lambda: 7.0)
    try:
        looker.ask("what's wrong on my screen?")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        looker.close()
    (seen,) = got
    assert seen.looked and seen.t == 7.0
    assert LEAKED not in seen.summary and "[redacted]" in seen.summary
    image = the_image(server.bodies[0])
    assert image.shape == (40, 100, 3)
    assert (image[0:10, 0:60] == 0).all()  # the secret's line is black
    assert (image[20:30, 0:60] == 200).all()  # the failure's line is as it was
