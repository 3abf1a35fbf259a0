"""Image files for replayed screens (the only Pillow importer): frames in, frames drawn.

Replay reads a scenario's ``frames/*.png`` as the grabber would have grabbed them (BGRA,
full resolution); the screen-scenario builder takes frames out of real screen recordings
(GIF) and draws terminal text onto real screenshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageSequence, UnidentifiedImageError

from engine.errors import ScenarioError
from engine.seeing.regions import Frame

RGB = Image.Image
"""An RGB image (scenario building)."""
MONO_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono.ttf",
)


def load_frame(path: Path) -> Frame:
    """An image file as an (H, W, 4) BGRA frame (what mss grabs).

    Raises:
        ScenarioError: the file is not an image Pillow can read.
    """
    try:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ScenarioError(f"{path}: not an image ({e})") from e
    return _bgra(rgba)


def gif_frames(path: Path) -> Iterator[tuple[float, RGB]]:
    """(start time in seconds, RGB image) for each frame of an animated image."""
    t = 0.0
    with Image.open(path) as im:
        for frame in ImageSequence.Iterator(im):
            yield t, frame.convert("RGB")
            t += float(frame.info.get("duration", 100)) / 1000.0


def open_rgb(path: Path) -> RGB:
    """An image file as RGB."""
    with Image.open(path) as im:
        return im.convert("RGB")


def with_terminal(base: RGB, lines: list[str], *, height_share: float = 0.4, size: int = 16) -> RGB:
    """``base`` with a dark terminal panel across its bottom showing ``lines`` (the newest at
    the bottom, as a terminal scrolls)."""
    out = base.copy()
    w, h = out.size
    panel_h = max(int(h * height_share), size * 3)
    top = h - panel_h
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, top, w, h), fill=(30, 30, 30))
    font = _font(size)
    step = int(size * 1.35)
    shown = lines[-max(1, (panel_h - 8) // step) :]
    y = h - 6 - step * len(shown)
    for line in shown:
        draw.text((8, y), line, fill=(220, 220, 220), font=font)
        y += step
    return out


def save_png(image: RGB, path: Path) -> None:
    """Write an image as PNG (scenario building only: replay never writes frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for p in MONO_FONTS:
        if Path(p).exists():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default()


def _bgra(rgba: np.ndarray) -> Frame:
    out = rgba.copy()
    out[..., 0], out[..., 2] = rgba[..., 2], rgba[..., 0]
    return out
