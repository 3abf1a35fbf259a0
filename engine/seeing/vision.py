"""Looking when asked, with a vision model: the changed region sent as an image.

A vision-language model behind an OpenAI-compatible server that takes images
(``llama_cpp.server`` with a multimodal chat handler and its mmproj, vLLM, Ollama's ``/v1``,
a hosted API): ``VisionClient.describe`` posts ``/chat/completions`` with the question and
the region as a ``data:image/png`` URL and returns the answer's text. No such weights can be
had here, so the path is tested against a scripted server on 127.0.0.1 that checks it got a
real PNG (``tests/test_seeing_vision.py``).

``Looker`` runs the looks on its own thread (``tandem-look``), one at a time, the newest
question only: the answer re-enters the engine as a ``ScreenText`` with ``looked=True`` on
the data lane. The region is the latest changed region the OCR thread kept
(``ScreenState.latest_region``), with Tandem's own windows and every line OCR found a secret
in blacked out; the answer is redacted like screen text. It is never written to disk. The
PNG is encoded here (zlib), so no image library loads at run time.
"""

from __future__ import annotations

import base64
import logging
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from engine.core.frames import ScreenText
from engine.errors import EngineError
from engine.seeing.redact import redact_line
from engine.seeing.regions import Frame

log = logging.getLogger(__name__)

VISION_TIMEOUT_S = 30.0
"""A look that takes longer than this is given up (a remote model on a slow link)."""
MAX_ANSWER_TOKENS = 120
"""An answer is a few sentences, spoken or shown."""
MAX_IMAGE_EDGE = 1600
"""Regions larger than this are halved until they fit (servers cap image sizes)."""


class VisionError(EngineError):
    """The vision server could not be reached or gave no usable answer."""


def png(frame: Frame) -> bytes:
    """A PNG of a BGRA, BGR or gray frame (RGB or gray, 8-bit, no compression tricks)."""
    if frame.ndim == 3:
        rgb = np.ascontiguousarray(frame[..., 2::-1] if frame.shape[2] >= 3 else frame)
        color, data = 2, rgb
    else:
        color, data = 0, np.ascontiguousarray(frame)
    h, w = data.shape[:2]
    rows = data.reshape(h, -1)
    raw = np.hstack([np.zeros((h, 1), dtype=np.uint8), rows]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def fit(frame: Frame, edge: int = MAX_IMAGE_EDGE) -> Frame:
    """Halve the frame until its longer edge fits ``edge``."""
    while max(frame.shape[:2]) > edge:
        frame = frame[::2, ::2]
    return frame


class VisionClient:
    """An OpenAI-compatible chat endpoint that takes images (``base_url`` ends in ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout_s: float = VISION_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def describe(self, region: Frame, question: str) -> str:
        """The model's answer to ``question`` about the image ``region``.

        Raises:
            VisionError: unreachable, an HTTP error, or an answer without text.
        """
        url = "data:image/png;base64," + base64.b64encode(png(fit(region))).decode("ascii")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": MAX_ANSWER_TOKENS,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": question},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        }
        try:
            resp = self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.HTTPError as e:
            raise VisionError(f"vision server at {self.base_url} is unreachable ({e})") from e
        if resp.status_code >= 400:
            raise VisionError(f"vision server at {self.base_url} answered HTTP {resp.status_code}")
        try:
            text = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise VisionError(f"vision server at {self.base_url}: malformed answer ({e})") from e
        if not isinstance(text, str) or not text.strip():
            raise VisionError(f"vision server at {self.base_url}: empty answer")
        return text.strip()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class Looker:
    """Looks on its own thread; answers go to ``emit`` as ``ScreenText(looked=True)``."""

    def __init__(
        self,
        client: VisionClient,
        region: Callable[[], Frame | None],
        emit: Callable[[ScreenText], object],
        now: Callable[[], float],
    ) -> None:
        self.client, self.region, self.emit, self.now = client, region, emit, now
        self._question: str | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tandem-look", daemon=False)
        self._thread.start()

    def ask(self, question: str) -> None:
        """Look at the latest changed region for this question (a waiting one is replaced)."""
        with self._cond:
            self._question = question
            self._cond.notify()

    def close(self) -> None:
        """Stop after the look in hand; joined."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self.client.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._question is not None)
                if self._closed:
                    return
                question, self._question = self._question, None
            region = self.region()
            if question is None or region is None:
                continue
            try:
                answer = self.client.describe(region, question)
            except VisionError as e:
                log.warning("screen: %s", e)
                continue
            self.emit(ScreenText(self.now(), "", redact_line(answer), looked=True))
