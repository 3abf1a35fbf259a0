"""Text from changed regions, at full resolution: tesseract 5 through its command line.

Chosen by measurement here (2-core CPU, a 1500x1600 code window, ``/tmp`` bench of
2026-12-02): tesseract 5.3 with ``OMP_THREAD_LIMIT=1`` 0.74 s, rapidocr 3.10.0 (PP-OCR ONNX)
6.1 s for the same text, both while llama.cpp compiled on the other core; the design notes
measured 0.3 s vs ~1 s idle. tesseract runs as a child program (``engine.core.processes``), the
image goes in through its standard input as a PGM (never a file on disk), and TSV comes back,
so every line keeps its box on screen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.core import processes
from engine.errors import EngineError
from engine.seeing.regions import Box, Frame

TESSERACT_TIMEOUT_S = 10.0
"""A region that takes longer than this is dropped (tesseract hung or the box is huge)."""
MIN_CONFIDENCE = 30.0
"""Words tesseract is less sure of than this are noise (icons, borders)."""
SMALL_TEXT_PX = 800
"""Regions narrower than this are read at twice their size (small fonts read better)."""


class OcrError(EngineError):
    """The OCR program is missing or failed."""


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One line of text and where it is, in the coordinates of the frame it came from."""

    text: str
    box: Box


class Ocr(Protocol):
    """Reads the text lines of one region of a frame."""

    def read(self, frame: Frame, region: Box) -> list[OcrLine]:
        """The text lines inside ``region`` of ``frame`` (boxes in frame coordinates)."""
        ...


def gray(frame: Frame) -> Frame:
    """8-bit luminance of a BGRA/BGR/RGB-ish frame (channel weights are order-agnostic enough
    for text), dark backgrounds inverted so text is always dark on light."""
    g: Frame
    if frame.ndim == 3:
        g = (frame[..., :3].astype(np.uint16).sum(axis=2) // 3).astype(np.uint8)
    else:
        g = frame.astype(np.uint8)
    if g.size and float(g.mean()) < 128:
        g = (255 - g).astype(np.uint8)
    return g


def pgm(image: Frame) -> bytes:
    """A binary PGM (P5) of a gray image."""
    h, w = image.shape
    return b"P5\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(image).tobytes()


class TesseractOcr:
    """tesseract 5 as a child per region (``--psm 6``: a uniform block of text)."""

    def __init__(self, language: str = "eng", timeout_s: float = TESSERACT_TIMEOUT_S) -> None:
        self.language = language
        self.timeout_s = timeout_s
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(self, frame: Frame, region: Box) -> list[OcrLine]:
        """Read one region (see ``Ocr.read``).

        Raises:
            OcrError: tesseract is not installed, failed or ran past its timeout.
        """
        crop = gray(region.crop(frame))
        if crop.size == 0:
            return []
        scale = 2 if crop.shape[1] < SMALL_TEXT_PX else 1
        if scale == 2:
            crop = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
        argv = ["tesseract", "stdin", "stdout", "-l", self.language, "--psm", "6", "tsv"]
        try:
            out = processes.run(argv, stdin=pgm(crop), timeout_s=self.timeout_s, env=self._env)
        except processes.ProcessError as e:
            raise OcrError(f"OCR failed: {e} (install tesseract-ocr)") from e
        return parse_tsv(out.decode("utf-8", "replace"), region, scale)


def parse_tsv(tsv: str, region: Box, scale: int = 1) -> list[OcrLine]:
    """tesseract's TSV output -> lines, with boxes moved back into frame coordinates."""
    lines: dict[tuple[str, str, str], list[tuple[int, int, int, int, str]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        text = cols[11].strip()
        try:
            conf = float(cols[10])
            left, top, width, height = (int(c) for c in cols[6:10])
        except ValueError:
            continue
        if not text or conf < MIN_CONFIDENCE:
            continue
        lines.setdefault((cols[2], cols[3], cols[4]), []).append((left, top, width, height, text))
    out: list[OcrLine] = []
    for words in lines.values():
        x0 = min(w[0] for w in words)
        y0 = min(w[1] for w in words)
        x1 = max(w[0] + w[2] for w in words)
        y1 = max(w[1] + w[3] for w in words)
        box = Box(
            region.x + x0 // scale,
            region.y + y0 // scale,
            max(1, (x1 - x0) // scale),
            max(1, (y1 - y0) // scale),
        )
        out.append(OcrLine(" ".join(w[4] for w in words), box))
    out.sort(key=lambda line: (line.box.y, line.box.x))
    return out
