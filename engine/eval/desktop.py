"""A virtual X11 desktop for tests and benches: Xvfb on a free display, fluxbox, xterms.

Everything started here is a real program (``engine.core.processes.spawn``) and is stopped
by ``VirtualDesktop.close`` (the context manager does it). Waits poll with a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from engine.core import processes
from engine.senses.focus import FocusError, X11Focus

START_TIMEOUT_S = 10.0
FONT = "DejaVu Sans Mono"


class VirtualDesktop:
    """Xvfb + fluxbox on a display of its own."""

    def __init__(self, width: int = 1920, height: int = 1080) -> None:
        self.number = _free_display()
        self.display = f":{self.number}"
        self.env = {**os.environ, "DISPLAY": self.display}
        self._children: list[processes.Spawned] = []
        self._children.append(
            processes.spawn(
                ["Xvfb", self.display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                env=self.env,
                name="Xvfb",
            )
        )
        try:
            _until(lambda: Path(f"/tmp/.X11-unix/X{self.number}").exists(), "Xvfb to start")
            self.xvfb_pid = self._children[0].pid
            self._children.append(processes.spawn(["fluxbox"], env=self.env, name="fluxbox"))
            _until(self._wm_ready, "fluxbox to manage the display")
        except BaseException:
            self.close()
            raise

    def xterm(
        self,
        command: Sequence[str],
        *,
        app_class: str = "XTerm",
        title: str = "",
        size: int = 14,
        geometry: str = "100x30",
    ) -> processes.Spawned:
        """An xterm of WM_CLASS ``app_class`` running ``command`` (``geometry``: X11's
        ``COLSxROWS+X+Y``)."""
        argv = ["xterm", "-class", app_class, "-fa", FONT, "-fs", str(size), "-geometry", geometry]
        if title:
            argv += ["-T", title]
        child = processes.spawn([*argv, "-e", *command], env=self.env, name="xterm")
        self._children.append(child)
        return child

    def activate(self, pid: int) -> None:
        """Focus the window of process ``pid`` and wait until the window manager did."""
        out = processes.run(
            ["xdotool", "search", "--sync", "--pid", str(pid)], env=self.env, timeout_s=10
        )
        wid = out.split()[0].decode()
        processes.run(["xdotool", "windowactivate", "--sync", wid], env=self.env, timeout_s=10)

    def wait_window(self, pid: int) -> None:
        """Wait until the process has a mapped window."""
        processes.run(
            ["xdotool", "search", "--sync", "--onlyvisible", "--pid", str(pid)],
            env=self.env,
            timeout_s=START_TIMEOUT_S,
        )

    def close(self) -> None:
        """Stop every program started here, newest first."""
        while self._children:
            self._children.pop().stop()

    def _wm_ready(self) -> bool:
        try:
            focus = X11Focus(self.display)
        except FocusError:
            return False
        try:
            root = focus._root
            prop = root.get_full_property(focus._d.intern_atom("_NET_SUPPORTING_WM_CHECK"), 0)
            return prop is not None
        finally:
            focus.close()


@contextmanager
def virtual_desktop(width: int = 1920, height: int = 1080) -> Iterator[VirtualDesktop]:
    """A ``VirtualDesktop`` for the duration of a ``with`` block."""
    desk = VirtualDesktop(width, height)
    try:
        yield desk
    finally:
        desk.close()


def _free_display() -> int:
    for n in range(40, 200):
        if not (Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists()):
            return n
    raise processes.ProcessError("no free X display number")


def _until(ok: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if callable(ok) and ok():
            return
        time.sleep(0.02)
    raise processes.ProcessError(f"timed out waiting for {what}")
