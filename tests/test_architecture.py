"""The architecture rules that a linter cannot see: one owner module per native library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.eval.bench import dropped_ticks

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "engine", "permissions", "background_agent")


def imports() -> dict[str, set[str]]:
    """Top-level module name -> project files that import it."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize(
    ("module", "owner"),
    [
        ("llama_cpp", "engine/model/llama_backend.py"),
        ("sounddevice", "engine/senses/sound.py"),
        ("mss", "engine/senses/screen.py"),
        ("Xlib", "engine/senses/focus.py"),
        ("PIL", "engine/eval/images.py"),
        ("mcp", "background_agent/mcp_tools.py"),
        ("pynput", "app/desktop/hotkey.py"),
    ],
)
def test_each_native_library_has_one_owner_module(module: str, owner: str) -> None:
    assert imports().get(module) == {owner}


def test_subprocess_and_qt_stay_where_they_belong() -> None:
    found = imports()
    # the engine's children, and the background agent's (sandboxed commands, git)
    assert found.get("subprocess") == {"engine/core/processes.py", "background_agent/processes.py"}
    assert all(p.startswith("app/") for p in found.get("PySide6", set()))


def test_no_print_outside_the_command_line() -> None:
    for pkg in ("engine", "permissions", "background_agent"):
        for path in (REPO / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            calls = [
                n
                for n in ast.walk(tree)
                if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
            ]
            assert not calls, f"{path}: use the sink or logging, not print"


@pytest.mark.parametrize(
    ("costs", "dropped"),
    [
        ([10.0] * 50, 0),
        ([190.0] * 50, 0),
        ([10.0, 450.0, 10.0, 10.0, 10.0], 1),  # a 450 ms tick runs past the next slot
        ([10.0, 390.0, 10.0, 10.0], 0),  # late, but each tick starts before the next is due
        ([250.0] * 10, 2),  # a steady 25 % overrun loses one tick in five
    ],
)
def test_dropped_ticks_follow_a_real_time_schedule(costs: list[float], dropped: int) -> None:
    assert dropped_ticks(costs) == dropped
