"""The screen sense (the only mss importer).

Today: finding out whether a display can be captured, with a reason when it cannot. The screen
issue grows this into the grabber thread (the ``MSS`` object created inside it, changed-region
detection, OCR of changed regions) behind a lease from the permission gate.
"""

from __future__ import annotations

from engine.senses import DeviceProbe


def probe() -> DeviceProbe:
    """Open the display once and report its primary monitor's size."""
    try:
        import mss
    except ImportError as e:
        return DeviceProbe(False, f"mss is not installed ({e})")
    try:
        with mss.MSS() as grabber:
            monitors = grabber.monitors
    except mss.ScreenShotError as e:
        return DeviceProbe(False, f"no display ({e})")
    if len(monitors) < 2:
        return DeviceProbe(False, "no monitor reported")
    mon = monitors[1]
    return DeviceProbe(True, f"{mon['width']}x{mon['height']} primary monitor")
