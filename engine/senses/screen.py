"""The screen sense (the only mss importer): the grabber thread, every grab under a lease.

``ScreenSense`` runs one thread, ``tandem-screen``, which creates and owns the ``MSS`` object
and the focus source (neither is thread-safe). Each round it:

1. asks which window is focused; when that changed, tells the gate (``Gate.focus_changed``),
   which revokes the screen lease before any further grab if the app is excluded, and posts
   a ``FocusChange``; a revoked lease is reported (``LEASE_REVOKED``) and the last frame and
   screen text are forgotten;
2. without an active lease, opens a new one once the gate allows the focused app again
   (``LEASE_OPENED``), or skips the grab;
3. grabs the monitor under the focused window (or all monitors) inside ``Lease.hold``, so a
   revocation waits for the grab in progress and blocks every later one; a frame during
   which focus moved is thrown away unread (the next round tells the gate first);
4. blacks out Tandem's own windows (found by process id and window id), finds the changed
   regions against the previous frame, and hands them to the OCR thread (``ScreenReader``;
   a job still waiting there is replaced, so memory is bounded: the previous frame, one job
   waiting and one being read);
5. waits: ``1 / max_fps`` after a change, growing by ``IDLE_GROWTH`` per unchanged frame up
   to ``IDLE_INTERVAL_S`` (adaptive: a still screen costs ~1 grab a second).

Frames live only in memory; nothing here writes one to disk or logs screen text.
``probe`` reports whether a display can be captured at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np

from engine.core.frames import ControlEvent, ControlKind, DataFrame, FocusChange
from engine.seeing.reader import ReadJob
from engine.seeing.regions import Box, ChangeTracker, mask
from engine.senses import DeviceProbe
from engine.senses.focus import Focused, FocusSource, Rect
from permissions.errors import LeaseRevokedError
from permissions.gate import Gate, Lease
from permissions.model import AppContext, Decision, Sense

log = logging.getLogger(__name__)

DEFAULT_FPS = 5.0
"""Frames per second at most (the issue's default)."""
IDLE_INTERVAL_S = 1.0
"""The slowest grab interval while nothing changes."""
IDLE_GROWTH = 1.5
"""Each unchanged frame multiplies the interval by this, up to ``IDLE_INTERVAL_S``."""
SCREEN = Sense.SCREEN.value


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


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """How the grabber runs."""

    max_fps: float = DEFAULT_FPS
    all_monitors: bool = False
    own_pids: frozenset[int] = field(default_factory=lambda: frozenset({os.getpid()}))
    """Processes whose windows are Tandem's own (masked out of every frame)."""
    own_windows: frozenset[int] = frozenset()
    """Window ids that are Tandem's own (a window found by id rather than process)."""
    display: str | None = None
    """The X display to grab (None: ``DISPLAY``)."""


@dataclass(slots=True)
class CaptureStats:
    """What the grabber did (counts only, no content)."""

    grabs: int = 0
    changed: int = 0
    skipped_no_lease: int = 0
    grab_s: float = 0.0
    """Wall time spent grabbing and comparing."""
    errors: int = 0
    dropped_focus_moved: int = 0
    """Frames thrown away because focus moved while they were grabbed."""


class ScreenSense:
    """The grabber thread (``start``/``stop``); see the module docstring."""

    def __init__(  # noqa: PLR0917 (the composition root passes its parts in order)
        self,
        gate: Gate,
        submit: Callable[[ReadJob], object],
        post_control: Callable[[ControlEvent], object],
        post_data: Callable[[DataFrame], object],
        now: Callable[[], float],
        focus_factory: Callable[[], FocusSource | None],
        settings: CaptureSettings | None = None,
        on_revoked: Callable[[], None] | None = None,
    ) -> None:
        self.gate = gate
        self.submit = submit
        self.post_control = post_control
        self.post_data = post_data
        self.now = now
        self.focus_factory = focus_factory
        self.settings = settings or CaptureSettings()
        self.on_revoked = on_revoked
        """Called when the lease goes (the screen text it held is to be forgotten)."""
        self.stats = CaptureStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: str | None = None
        """Why the grabber could not run (no display, no mss), once it stopped."""

    def start(self) -> None:
        """Start the grabber thread; returns once it has opened the display (or failed)."""
        self._thread = threading.Thread(target=self._run, name="tandem-screen", daemon=False)
        self._thread.start()
        self._ready.wait(10.0)

    def stop(self) -> None:
        """Stop and join the grabber thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            import mss
        except ImportError as e:
            self.error = f"mss is not installed ({e})"
            self._ready.set()
            return
        try:
            grabber = mss.MSS(display=self.settings.display) if self.settings.display else mss.MSS()
        except mss.ScreenShotError as e:
            self.error = f"no display ({e})"
            self._ready.set()
            return
        focus = self.focus_factory()
        self._ready.set()
        try:
            self._loop(grabber, focus, mss.ScreenShotError)
        finally:
            grabber.close()
            if focus is not None:
                focus.close()

    def _loop(
        self, grabber: object, focus: FocusSource | None, grab_error: type[Exception]
    ) -> None:
        lease: Lease | None = None
        changes = ChangeTracker()
        last: Focused | None = None
        ctx = AppContext("", "")
        interval = 1.0 / self.settings.max_fps
        fastest = interval
        while not self._stop.is_set():
            t = self.now()
            focused = focus.current() if focus is not None else None
            if _moved(focused, last):
                ctx = self._context(focused)
                revoked = self.gate.focus_changed(ctx)
                self.post_data(FocusChange(t, ctx.app_id, ctx.title))
                if lease is not None and any(r is lease for r in revoked):
                    lease = None
                    changes.reset()
                    self._revoked(t)
            last = focused
            if lease is not None and not lease.active:  # mute, kill switch, a rule changed
                lease = None
                changes.reset()
                self._revoked(t)
            if lease is None:
                lease = self._reopen(ctx, t)
                if lease is None:
                    self.stats.skipped_no_lease += 1
                    self._stop.wait(fastest)
                    continue
            started = time.perf_counter()
            try:
                monitor = self._monitor(grabber, focused)
                with lease.hold():
                    shot = grabber.grab(monitor)  # type: ignore[attr-defined]
                    frame = np.frombuffer(shot.raw, dtype=np.uint8).reshape(
                        shot.height, shot.width, 4
                    )
            except LeaseRevokedError:
                continue  # reported at the top of the next round
            except grab_error as e:
                self.stats.errors += 1
                log.warning("screen grab failed: %s", e)
                self._stop.wait(IDLE_INTERVAL_S)
                continue
            if focus is not None and _moved(focus.current(), focused):
                self.stats.dropped_focus_moved += 1
                continue  # focus moved during the grab: this frame is not used; the gate next
            own = (
                focus.own_windows(self.settings.own_pids, self.settings.own_windows)
                if focus
                else []
            )
            frame = mask(frame, _local(own, monitor))
            regions = changes.update(frame)
            self.stats.grabs += 1
            self.stats.grab_s += time.perf_counter() - started
            if regions:
                self.stats.changed += 1
                self.submit(ReadJob(t, ctx.app_id, frame, tuple(regions)))
                interval = fastest
            else:
                interval = min(IDLE_INTERVAL_S, interval * IDLE_GROWTH)
            self._stop.wait(interval)

    def _context(self, focused: Focused | None) -> AppContext:
        """The app the gate judges: the focused app under whichever of its names the gate
        refuses (an instance name may be excluded where the class is not)."""
        if focused is None:
            return AppContext("", "")
        ctx = AppContext(focused.app, focused.title)
        for other in focused.other_ids:
            alt = AppContext(other, focused.title)
            if self.gate.explain_sense(Sense.SCREEN, alt).decision is Decision.DENY:
                return alt
        return ctx

    def _reopen(self, ctx: AppContext, t: float) -> Lease | None:
        if self.gate.explain_sense(Sense.SCREEN, ctx).decision is not Decision.ALLOW:
            return None
        lease = self.gate.open_sense(Sense.SCREEN, ctx)
        if lease is not None:
            self.post_control(ControlEvent(t, ControlKind.LEASE_OPENED, SCREEN))
        return lease

    def _revoked(self, t: float) -> None:
        self.post_control(ControlEvent(t, ControlKind.LEASE_REVOKED, SCREEN))
        if self.on_revoked is not None:
            self.on_revoked()

    def _monitor(self, grabber: object, focused: Focused | None) -> dict[str, int]:
        monitors: list[dict[str, int]] = grabber.monitors  # type: ignore[attr-defined]
        if self.settings.all_monitors or len(monitors) < 2:
            return monitors[0]
        if focused is not None and focused.rect is not None:
            cx = focused.rect.x + focused.rect.w // 2
            cy = focused.rect.y + focused.rect.h // 2
            for mon in monitors[1:]:
                if (
                    mon["left"] <= cx < mon["left"] + mon["width"]
                    and mon["top"] <= cy < mon["top"] + mon["height"]
                ):
                    return mon
        return monitors[1]


def _moved(a: Focused | None, b: Focused | None) -> bool:
    """Another app, window or title in front (a window only moving is not a focus change)."""
    if a is None or b is None:
        return a is not b
    return (a.app, a.title, a.window) != (b.app, b.title, b.window)


def _local(rects: Collection[Rect], monitor: dict[str, int]) -> list[Box]:
    """Desktop rectangles in the grabbed monitor's pixel coordinates."""
    return [Box(r.x - monitor["left"], r.y - monitor["top"], r.w, r.h) for r in rects]
