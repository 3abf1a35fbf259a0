"""Senses: each capture device behind one module that alone imports its native library."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceProbe:
    """Whether a device is usable, and a one-line description or reason."""

    available: bool
    detail: str
