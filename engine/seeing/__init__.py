"""Seeing: what the screen shows, made small and safe for the micro-turn stream.

The grabber (``engine.senses.screen``) hands full-resolution frames in; this package finds the
changed regions (``regions``), reads their text (``ocr``, tesseract 5 on its own thread via
``reader``), removes secrets (``redact``), spots failures and risks (``cues``) and turns the
difference into a few tokens of micro-turn content (``summary``). ``ScreenState`` holds the
latest redacted text for whoever asks (the engine when the user asks about the screen, the
background agent, the app). Nothing here writes a frame to disk or logs screen text.
"""

from engine.seeing.state import ScreenState

__all__ = ["ScreenState"]
