"""Which application is in front: one protocol, an adapter per desktop.

``FocusSource.current()`` names the focused window (app id, title, process id, geometry);
``own_windows(pids)`` finds Tandem's own windows so the grabber masks them out of every frame.
A source is created and used on one thread (the screen grabber's): display connections are
not thread-safe.

- X11 (tested here, under Xvfb + fluxbox): python-xlib, EWMH ``_NET_ACTIVE_WINDOW``,
  ``WM_CLASS`` (the class, as desktop files' ``StartupWMClass`` spell it, and the instance),
  ``_NET_WM_NAME``/``WM_NAME``, ``_NET_WM_PID``, ``_NET_CLIENT_LIST``.
- Wayland (sway and other wlroots compositors with ``swaymsg``): the focused node of
  ``swaymsg -t get_tree`` (``app_id`` or X11 class, ``name``, ``pid``, ``rect``).
  **Untested here** (no Wayland compositor in this environment). GNOME and KDE Wayland expose
  no focus to other programs without an extension; there the source reports no focus, and the
  gate's title/app rules cannot apply, so the sense stays as the user's rules say.
- Windows: ``GetForegroundWindow`` and friends through ctypes, the exe name via psutil.
  **Untested here.**
- macOS: the frontmost process's bundle id and name through ``osascript`` (System Events).
  **Untested here** (needs the Accessibility permission).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from engine.core import processes
from engine.errors import EngineError


class FocusError(EngineError):
    """The desktop cannot be asked what is focused."""


@dataclass(frozen=True, slots=True)
class Rect:
    """A window's rectangle in desktop (root) coordinates."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Focused:
    """The focused window."""

    app: str
    """The application id (WM_CLASS class, Wayland app id, bundle id, exe name)."""
    title: str = ""
    pid: int | None = None
    window: int | None = None
    rect: Rect | None = None
    other_ids: tuple[str, ...] = ()
    """Other names the same app goes by (the WM_CLASS instance), checked by the gate too."""


class FocusSource(Protocol):
    """Asks the desktop what is focused."""

    def current(self) -> Focused | None:
        """The focused window, or None when nothing is focused."""
        ...

    def own_windows(self, pids: Collection[int], windows: Collection[int] = ()) -> list[Rect]:
        """Rectangles of the visible windows of these processes (and these window ids)."""
        ...

    def close(self) -> None:
        """Release the connection to the desktop."""
        ...


class X11Focus:
    """EWMH focus on an X11 display (``DISPLAY``), via python-xlib."""

    def __init__(self, display: str | None = None) -> None:
        try:
            from Xlib import X
            from Xlib import display as xdisplay
            from Xlib import error as xerror
        except ImportError as e:
            raise FocusError(f"python-xlib is not installed ({e})") from e
        try:
            self._d = xdisplay.Display(display)
        except (xerror.DisplayError, xerror.ConnectionClosedError) as e:
            raise FocusError(f"cannot open the X display ({e})") from e
        self._X = X
        self._errors: tuple[type[BaseException], ...] = (xerror.XError, xerror.BadWindow)
        self._root = self._d.screen().root
        atom = self._d.intern_atom
        self._active = atom("_NET_ACTIVE_WINDOW")
        self._client_list = atom("_NET_CLIENT_LIST")
        self._pid = atom("_NET_WM_PID")
        self._name = atom("_NET_WM_NAME")
        self._utf8 = atom("UTF8_STRING")

    def current(self) -> Focused | None:
        """See ``FocusSource.current``."""
        wid = self._window_prop(self._root, self._active)
        if not wid:
            return None
        try:
            win = self._d.create_resource_object("window", wid)
            cls = win.get_wm_class() or ("", "")
            title = self._title(win)
            pid = self._window_prop(win, self._pid)
            rect = self._rect(win)
        except self._errors:
            return None  # the window closed while we asked
        instance, klass = cls
        app = klass or instance
        others = (instance,) if instance and instance != app else ()
        return Focused(app, title, pid or None, wid, rect, others)

    def own_windows(self, pids: Collection[int], windows: Collection[int] = ()) -> list[Rect]:
        """See ``FocusSource.own_windows``."""
        out: list[Rect] = []
        prop = self._root.get_full_property(self._client_list, self._X.AnyPropertyType)
        for wid in [] if prop is None else list(prop.value):
            try:
                win = self._d.create_resource_object("window", int(wid))
                pid = self._window_prop(win, self._pid)
                if (pid and pid in pids) or int(wid) in windows:
                    rect = self._rect(win)
                    if rect is not None:
                        out.append(rect)
            except self._errors:
                continue
        return out

    def close(self) -> None:
        """See ``FocusSource.close``."""
        self._d.close()

    def _window_prop(self, win: Any, atom: int) -> int:
        try:
            prop = win.get_full_property(atom, self._X.AnyPropertyType)
        except self._errors:
            return 0
        if prop is None or not len(prop.value):
            return 0
        return int(prop.value[0])

    def _title(self, win: Any) -> str:
        prop = win.get_full_property(self._name, self._utf8)
        if prop is not None and prop.value:
            value = prop.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        name = win.get_wm_name()
        return name if isinstance(name, str) else ""

    def _rect(self, win: Any) -> Rect | None:
        geo = win.get_geometry()
        pos = self._root.translate_coords(win, 0, 0)
        if geo.width <= 1 or geo.height <= 1:
            return None
        return Rect(int(pos.x), int(pos.y), int(geo.width), int(geo.height))


class SwayFocus:
    """Wayland (sway/wlroots) through ``swaymsg -t get_tree``. **Untested here.**"""

    def current(self) -> Focused | None:
        """See ``FocusSource.current``."""
        node = _focused_node(self._tree())
        if node is None:
            return None
        x11 = node.get("window_properties") or {}
        app = str(node.get("app_id") or x11.get("class") or "")
        r = node.get("rect") or {}
        rect = Rect(
            int(r.get("x", 0)), int(r.get("y", 0)), int(r.get("width", 0)), int(r.get("height", 0))
        )
        pid = node.get("pid")
        return Focused(
            app, str(node.get("name") or ""), pid if isinstance(pid, int) else None, None, rect
        )

    def own_windows(self, pids: Collection[int], windows: Collection[int] = ()) -> list[Rect]:
        """See ``FocusSource.own_windows``."""
        out: list[Rect] = []
        stack = [self._tree()]
        while stack:
            node = stack.pop()
            stack.extend(node.get("nodes", []) + node.get("floating_nodes", []))
            if node.get("pid") in pids and node.get("visible"):
                r = node.get("rect") or {}
                out.append(
                    Rect(r.get("x", 0), r.get("y", 0), r.get("width", 0), r.get("height", 0))
                )
        return out

    def close(self) -> None:
        """Nothing to release."""

    def _tree(self) -> dict[str, Any]:
        try:
            out = processes.run(["swaymsg", "-t", "get_tree"], timeout_s=2.0)
            tree = json.loads(out)
        except (processes.ProcessError, json.JSONDecodeError) as e:
            raise FocusError(f"swaymsg: {e}") from e
        return tree if isinstance(tree, dict) else {}


def _focused_node(tree: dict[str, Any]) -> dict[str, Any] | None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.get("focused") and node.get("type") in ("con", "floating_con"):
            return node
        stack.extend(node.get("nodes", []) + node.get("floating_nodes", []))
    return None


class WindowsFocus:
    """Windows: user32 through ctypes, the exe name through psutil. **Untested here.**"""

    def __init__(self) -> None:
        self._ctypes = ctypes
        self._user32 = ctypes.windll.user32  # type: ignore[attr-defined]

    def current(self) -> Focused | None:
        """See ``FocusSource.current``."""
        import psutil

        ct, u = self._ctypes, self._user32
        hwnd = u.GetForegroundWindow()
        if not hwnd:
            return None
        n = u.GetWindowTextLengthW(hwnd)
        buf = ct.create_unicode_buffer(n + 1)
        u.GetWindowTextW(hwnd, buf, n + 1)
        pid = ct.c_ulong()
        u.GetWindowThreadProcessId(hwnd, ct.byref(pid))
        try:
            exe = psutil.Process(pid.value).name()
        except psutil.Error:
            exe = ""
        return Focused(exe.lower(), buf.value, pid.value or None, int(hwnd), self._rect(hwnd))

    def own_windows(self, pids: Collection[int], windows: Collection[int] = ()) -> list[Rect]:
        """See ``FocusSource.own_windows``."""
        ct, u = self._ctypes, self._user32
        found: list[Rect] = []
        proto = ct.WINFUNCTYPE(ct.c_bool, ct.c_void_p, ct.c_void_p)

        def each(hwnd: int, _: object) -> bool:
            pid = ct.c_ulong()
            u.GetWindowThreadProcessId(hwnd, ct.byref(pid))
            if u.IsWindowVisible(hwnd) and (pid.value in pids or hwnd in windows):
                rect = self._rect(hwnd)
                if rect is not None:
                    found.append(rect)
            return True

        u.EnumWindows(proto(each), 0)
        return found

    def close(self) -> None:
        """Nothing to release."""

    def _rect(self, hwnd: int) -> Rect | None:
        r = _RECT()
        if not self._user32.GetWindowRect(hwnd, ctypes.byref(r)):
            return None
        return Rect(r.l, r.t, r.r - r.l, r.b - r.t)


class _RECT(ctypes.Structure):
    _fields_ = (
        ("l", ctypes.c_long),
        ("t", ctypes.c_long),
        ("r", ctypes.c_long),
        ("b", ctypes.c_long),
    )


class MacFocus:
    """macOS: the frontmost process through ``osascript``. **Untested here.**"""

    SCRIPT = (
        'tell application "System Events" to tell (first application process whose frontmost '
        "is true) to return {bundle identifier, unix id, name of front window}"
    )

    def current(self) -> Focused | None:
        """See ``FocusSource.current``."""
        try:
            out = processes.run(["osascript", "-e", self.SCRIPT], timeout_s=2.0).decode()
        except processes.ProcessError as e:
            raise FocusError(f"osascript: {e}") from e
        parts = [p.strip() for p in out.strip().split(",", 2)]
        if not parts or not parts[0]:
            return None
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        return Focused(parts[0], parts[2] if len(parts) > 2 else "", pid)

    def own_windows(self, pids: Collection[int], windows: Collection[int] = ()) -> list[Rect]:
        """Not available through System Events without more permissions: none are masked
        (Tandem's own windows are excluded from capture by the app on macOS instead)."""
        return []

    def close(self) -> None:
        """Nothing to release."""


def open_focus(display: str | None = None) -> FocusSource | None:
    """The focus source for this desktop, or None when none can be had."""
    if sys.platform == "win32":
        return WindowsFocus()
    if sys.platform == "darwin":
        return MacFocus()
    if os.environ.get("WAYLAND_DISPLAY") and os.environ.get("SWAYSOCK"):
        return SwayFocus()
    if display or os.environ.get("DISPLAY"):
        try:
            return X11Focus(display)
        except FocusError:
            return None
    return None
