"""Cheap change detection: compare packed pixels tile by tile, merge changed tiles into boxes.

A frame is an ``(H, W, 4)`` uint8 array (BGRA as mss grabs it) or ``(H, W)`` gray; pixels are
compared as one uint32 each (measured: a 1080p diff in ~1.3 ms). Changed tiles are merged into
rectangles (8-connected), which is what OCR reads at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TILE = 32
"""Tile edge in pixels: about two lines of terminal text at 1080p."""
MERGE_GAP_TILES = 1
"""Changed tiles this many tiles apart are one region (a line of text with spaces in it)."""
MAX_REGIONS = 8
"""More changed regions than this are read as their bounding box (a whole-window repaint)."""

Frame = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in frame pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        """Pixels covered."""
        return self.w * self.h

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def crop(self, frame: Frame) -> Frame:
        """The pixels of this box."""
        return frame[self.y : self.y + self.h, self.x : self.x + self.w]


def packed(frame: Frame) -> npt.NDArray[np.uint32]:
    """The frame as one uint32 per pixel (a view when the frame is contiguous BGRA)."""
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.ascontiguousarray(frame).view(np.uint32)[..., 0]
    if frame.ndim == 2:
        return frame.astype(np.uint32)
    raise ValueError(f"expected an (H, W, 4) or (H, W) frame, got shape {frame.shape}")


def changed_tiles(prev: Frame, cur: Frame, tile: int = TILE) -> npt.NDArray[np.bool_]:
    """A boolean grid, True where any pixel of the tile differs (shapes must match)."""
    if prev.shape != cur.shape:
        raise ValueError(f"frame size changed: {prev.shape} -> {cur.shape}")
    diff = packed(prev) != packed(cur)
    h, w = diff.shape
    gh, gw = -(-h // tile), -(-w // tile)
    padded = np.zeros((gh * tile, gw * tile), dtype=np.bool_)
    padded[:h, :w] = diff
    return np.asarray(padded.reshape(gh, tile, gw, tile).any(axis=(1, 3)), dtype=np.bool_)


def changed_regions(prev: Frame | None, cur: Frame, tile: int = TILE) -> list[Box]:
    """The changed rectangles of ``cur`` against ``prev`` (all of it when there is none)."""
    h, w = cur.shape[:2]
    if prev is None or prev.shape != cur.shape:
        return [Box(0, 0, w, h)]
    if np.array_equal(packed(prev), packed(cur)):
        return []  # the common case, at half the cost of the tile grid
    grid = changed_tiles(prev, cur, tile)
    if not grid.any():
        return []
    boxes = [_to_pixels(b, tile, w, h) for b in _components(grid)]
    if len(boxes) > MAX_REGIONS:
        whole = boxes[0]
        for b in boxes[1:]:
            whole = whole.union(b)
        return [whole]
    return boxes


class ChangeTracker:
    """Changed regions worth reading, frame after frame.

    A change of a single tile (a blinking cursor, one typed character, a clock's seconds) is
    not read on its own: it is remembered, and read once the changes around it grow past one
    tile (the rest of a typed command) -- so a blinking cursor costs no OCR at all.
    """

    def __init__(self, tile: int = TILE) -> None:
        self.tile = tile
        self._prev: Frame | None = None
        self._dirty: npt.NDArray[np.bool_] | None = None

    def reset(self) -> None:
        """Forget the last frame (the next one is read whole)."""
        self._prev, self._dirty = None, None

    def update(self, cur: Frame) -> list[Box]:
        """The regions of ``cur`` to read now (all of it for the first frame)."""
        prev, self._prev = self._prev, cur
        h, w = cur.shape[:2]
        if prev is None or prev.shape != cur.shape:
            self._dirty = None
            return [Box(0, 0, w, h)]
        if np.array_equal(packed(prev), packed(cur)):
            return []
        grid = changed_tiles(prev, cur, self.tile)
        if self._dirty is not None and self._dirty.shape == grid.shape:
            grid = grid | self._dirty
        ready = [b for b in _components(grid) if (b[2] - b[0]) * (b[3] - b[1]) > 1]
        held = grid.copy()
        for r0, c0, r1, c1 in ready:
            held[r0:r1, c0:c1] = False
        self._dirty = held
        boxes = [_to_pixels(b, self.tile, w, h) for b in ready]
        if len(boxes) > MAX_REGIONS:
            whole = boxes[0]
            for b in boxes[1:]:
                whole = whole.union(b)
            return [whole]
        return boxes


def mask(frame: Frame, boxes: list[Box]) -> Frame:
    """A copy of ``frame`` with ``boxes`` blacked out (Tandem's own windows)."""
    if not boxes:
        return frame
    out = frame.copy()
    h, w = out.shape[:2]
    for b in boxes:
        x0, y0 = max(0, b.x), max(0, b.y)
        x1, y1 = min(w, b.x + b.w), min(h, b.y + b.h)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = 0
    return out


def _components(grid: npt.NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (row0, col0, row1, col1, exclusive) of groups of changed tiles, joining
    tiles up to ``MERGE_GAP_TILES`` apart."""
    gh, gw = grid.shape
    seen = np.zeros_like(grid)
    out: list[tuple[int, int, int, int]] = []
    reach = MERGE_GAP_TILES + 1
    for r0, c0 in zip(*np.nonzero(grid), strict=True):
        if seen[r0, c0]:
            continue
        stack = [(int(r0), int(c0))]
        seen[r0, c0] = True
        top, left, bottom, right = int(r0), int(c0), int(r0), int(c0)
        while stack:
            r, c = stack.pop()
            top, bottom = min(top, r), max(bottom, r)
            left, right = min(left, c), max(right, c)
            rs, re_ = max(0, r - reach), min(gh, r + reach + 1)
            cs, ce = max(0, c - reach), min(gw, c + reach + 1)
            near = grid[rs:re_, cs:ce] & ~seen[rs:re_, cs:ce]
            for dr, dc in zip(*np.nonzero(near), strict=True):
                rr, cc = rs + int(dr), cs + int(dc)
                seen[rr, cc] = True
                stack.append((rr, cc))
        out.append((top, left, bottom + 1, right + 1))
    return out


def _to_pixels(b: tuple[int, int, int, int], tile: int, w: int, h: int) -> Box:
    r0, c0, r1, c1 = b
    x0, y0 = c0 * tile, r0 * tile
    return Box(x0, y0, min(w, c1 * tile) - x0, min(h, r1 * tile) - y0)
