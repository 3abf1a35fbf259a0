"""``tandem eval screen`` and ``tandem eval build-screen``: proactive interjections, measured.

Scenarios (``docs/EVAL_FORMATS.md``: ``task`` ``screen_cue``, ``cues`` with ``expect``) are
built from the real screenshots and screen recordings in ``evaldata/screen``:

- *ordinary*: the frames of each real screen recording (GIF; at most ``MAX_GIF_FRAMES``, at
  their own times) and a slideshow of the real screenshots; every change is labelled
  ``silent``;
- *failure*: a real screenshot with a terminal panel drawn across its bottom (DejaVu Sans
  Mono), first showing an ordinary command (``silent``), then that command's failure
  (``interject``). The failure texts are the real output of the tools, recorded here on
  2026-12-02 (pytest 8, CPython 3.11, mypy, gcc 12, unittest) or copied from the tools'
  documented formats where the tool is not installed here (npm, cargo, go, tsc); the
  destructive commands are typed at a prompt. The panel is drawn, not grabbed: say so when
  quoting these figures;
- *excluded*: focus moves to a password manager before the failure shows (``silent``: the
  lease is revoked), and back again (``interject`` when it shows next);
- *speaking*: with a real speech recording as ``mic.wav`` (``--speech``), a failure shows
  while the user talks (``silent`` while they do).

Scoring: a cue labelled ``interject`` is recalled when an interjection starts within
``WINDOW_S`` after it (its latency is the difference); an interjection that no such cue
claims is false; the false rate is false interjections over ``silent`` labels (ordinary
changes); an interjection inside the user's speech (the timeline's VAD lane) is counted
apart and must be zero.
"""

from __future__ import annotations

import json
import statistics
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.eval import images

WINDOW_S = 3.0
"""A failure cue must lead to an interjection within this many seconds."""
MAX_GIF_FRAMES = 12
"""Frames taken from each screen recording (evenly spread)."""
SLIDE_S = 2.0

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failure shown in a terminal: the ordinary lines first, then the failure."""

    name: str
    app: str
    before: tuple[str, ...]
    after: tuple[str, ...]


PROMPT = "user@box:~/proj$"
FAILURES: tuple[Failure, ...] = (
    Failure(
        "pytest",
        "XTerm",
        (f"{PROMPT} pytest -q tests",),
        (
            f"{PROMPT} pytest -q tests",
            "F                                                                        [100%]",
            "=================================== FAILURES ===================================",
            "    def parse(text):",
            '        fields = dict(part.split("=") for part in text.split(";"))',
            '>       return fields["name"]',
            "E       KeyError: 'name'",
            "parser.py:3: KeyError",
            "=========================== short test summary info ============================",
            "FAILED tests/test_parser.py::test_parser - KeyError: 'name'",
            "1 failed in 0.03s",
        ),
    ),
    Failure(
        "traceback",
        "XTerm",
        (f"{PROMPT} python -m app.cli import users.csv",),
        (
            f"{PROMPT} python -m app.cli import users.csv",
            "Traceback (most recent call last):",
            '  File "/home/user/proj/app/cli.py", line 1, in <module>',
            '  File "/home/user/proj/parser.py", line 3, in parse',
            '    return fields["name"]',
            "KeyError: 'name'",
        ),
    ),
    Failure(
        "mypy",
        "code",
        (f"{PROMPT} mypy typed.py",),
        (
            f"{PROMPT} mypy typed.py",
            'typed.py:2: error: Incompatible return value type (got "int", expected "str")'
            "  [return-value]",
            "Found 1 error in 1 file (checked 1 source file)",
        ),
    ),
    Failure(
        "gcc",
        "XTerm",
        (f"{PROMPT} gcc -c m.c",),
        (
            f"{PROMPT} gcc -c m.c",
            "m.c: In function 'main':",
            "m.c:1:21: error: 'undefined_var' undeclared (first use in this function)",
            "    1 | int main() { return undefined_var }",
        ),
    ),
    Failure(
        "unittest",
        "XTerm",
        (f"{PROMPT} python -m unittest tests.test_text",),
        (
            f"{PROMPT} python -m unittest tests.test_text",
            "F",
            "======================================================================",
            "FAIL: test_split (tests.test_text.ParserTest.test_split)",
            "----------------------------------------------------------------------",
            "AssertionError: Lists differ: ['a', 'b'] != ['a', 'c']",
            "Ran 1 test in 0.002s",
            "FAILED (failures=1)",
        ),
    ),
    Failure(
        "npm",
        "XTerm",
        (f"{PROMPT} npm run build",),
        (
            f"{PROMPT} npm run build",
            "> web@1.0.0 build",
            "> tsc -p .",
            "src/app.ts(4,7): error TS2322: Type 'string' is not assignable to type 'number'.",
            "npm ERR! Lifecycle script `build` failed with error:",
        ),
    ),
    Failure(
        "cargo",
        "XTerm",
        (f"{PROMPT} cargo build",),
        (
            f"{PROMPT} cargo build",
            "   Compiling parser v0.1.0 (/home/user/proj)",
            "error[E0308]: mismatched types",
            " --> src/main.rs:4:18",
            'error: could not compile `parser` (bin "parser") due to 1 previous error',
        ),
    ),
    Failure(
        "go",
        "XTerm",
        (f"{PROMPT} go test ./...",),
        (
            f"{PROMPT} go test ./...",
            "--- FAIL: TestParse (0.00s)",
            '    parse_test.go:12: got "", want "ann"',
            "FAIL",
            "FAIL    example.com/parser    0.002s",
        ),
    ),
    Failure(
        "rm",
        "XTerm",
        (f"{PROMPT} ls", "build  dist  src  README.md"),
        (f"{PROMPT} ls", "build  dist  src  README.md", f"{PROMPT} rm -rf build dist"),
    ),
    Failure(
        "push",
        "XTerm",
        (f"{PROMPT} git status", "On branch main"),
        (f"{PROMPT} git status", "On branch main", f"{PROMPT} git push --force origin main"),
    ),
    Failure(
        "reset",
        "XTerm",
        (f"{PROMPT} git log --oneline -1", "3f5a1c2 parser: split on semicolons"),
        (
            f"{PROMPT} git log --oneline -1",
            "3f5a1c2 parser: split on semicolons",
            f"{PROMPT} git reset --hard HEAD~3",
        ),
    ),
    Failure(
        "sql",
        "XTerm",
        ("mysql> SELECT COUNT(*) FROM users;", "1 row in set (0.00 sec)"),
        (
            "mysql> SELECT COUNT(*) FROM users;",
            "1 row in set (0.00 sec)",
            "mysql> DROP TABLE users;",
        ),
    ),
)
SHOW_BEFORE_S = 0.5
SHOW_FAILURE_S = 2.0


def build_scenarios(evaldata: Path, out: Path, speech: Path | None = None) -> list[Path]:
    """Write screen scenarios made from ``evaldata/screen`` under ``out``; their folders."""
    src = evaldata / "screen" if (evaldata / "screen").is_dir() else evaldata
    shots = sorted([*src.glob("*.png"), *src.glob("freeze/*.png")])
    if not shots:
        raise FileNotFoundError(f"no screenshots under {src}")
    made: list[Path] = []
    for i, failure in enumerate(FAILURES):
        made.append(_failure(out / f"failure_{failure.name}", shots[i % len(shots)], failure))
    made.append(_excluded(out / "excluded_password_manager", shots[0], FAILURES[0]))
    for gif in sorted(src.glob("*.gif")):
        made.append(_recording(out / f"ordinary_{gif.stem}", gif))
    made.append(_slideshow(out / "ordinary_screenshots", shots))
    if speech is not None:
        made.append(_speaking(out / "speaking_failure", shots[1 % len(shots)], FAILURES[1], speech))
    return made


def _write(root: Path, script: list[Event], labels: Event) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "script.jsonl").open("w", encoding="utf-8") as f:
        for item in sorted(script, key=lambda s: s["t"]):
            f.write(json.dumps(item) + "\n")
    (root / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    return root


def _panel(root: Path, n: int, base: images.RGB, lines: tuple[str, ...]) -> str:
    """Write frame ``n``: ``base`` with a terminal panel showing ``lines``."""
    return _frame(root, n, images.with_terminal(base, list(lines)))


def _frame(root: Path, n: int, image: images.RGB) -> str:
    rel = f"frames/{n:04d}.png"
    images.save_png(image, root / rel)
    return rel


def _failure(root: Path, shot: Path, f: Failure) -> Path:
    base = images.open_rgb(shot)
    script: list[Event] = [
        {"t": 0.0, "kind": "focus", "app": f.app, "title": "proj"},
        {"t": SHOW_BEFORE_S, "kind": "screen", "image": _panel(root, 1, base, f.before)},
        {"t": SHOW_FAILURE_S, "kind": "screen", "image": _panel(root, 2, base, f.after)},
    ]
    cues = [
        {"t": SHOW_BEFORE_S, "expect": "silent", "about": f"{f.name}: ordinary command"},
        {"t": SHOW_FAILURE_S, "expect": "interject", "about": f"{f.name} failure"},
    ]
    labels = {"task": "screen_cue", "user_speech": [], "cues": cues, "source": shot.name}
    return _write(root, script, labels)


def _excluded(root: Path, shot: Path, f: Failure) -> Path:
    base = images.open_rgb(shot)
    before = _panel(root, 1, base, f.before)
    after = _panel(root, 2, base, f.after)
    script: list[Event] = [
        {"t": 0.0, "kind": "focus", "app": "XTerm", "title": "proj"},
        {"t": 0.5, "kind": "screen", "image": before},
        {"t": 1.0, "kind": "focus", "app": "KeePassXC", "title": "Passwords.kdbx - KeePassXC"},
        {"t": 2.0, "kind": "screen", "image": after},
        {"t": 4.0, "kind": "focus", "app": "XTerm", "title": "proj"},
        {"t": 4.2, "kind": "screen", "image": after},
    ]
    cues = [
        {"t": 0.5, "expect": "silent", "about": "ordinary command"},
        {"t": 2.0, "expect": "silent", "about": "failure behind an excluded app: not seen"},
        {"t": 4.2, "expect": "interject", "about": "the same failure, focus back"},
    ]
    labels = {"task": "screen_cue", "user_speech": [], "cues": cues, "source": shot.name}
    return _write(root, script, labels)


def _recording(root: Path, gif: Path) -> Path:
    frames = list(images.gif_frames(gif))
    step = max(1, len(frames) // MAX_GIF_FRAMES)
    chosen = frames[::step][:MAX_GIF_FRAMES]
    script: list[Event] = [{"t": 0.0, "kind": "focus", "app": "code", "title": gif.stem}]
    cues: list[Event] = []
    for n, (t, image) in enumerate(chosen, start=1):
        at = round(0.2 + t, 3)
        script.append({"t": at, "kind": "screen", "image": _frame(root, n, image)})
        cues.append({"t": at, "expect": "silent", "about": "ordinary change"})
    labels = {"task": "screen_cue", "user_speech": [], "cues": cues, "source": gif.name}
    return _write(root, script, labels)


def _slideshow(root: Path, shots: list[Path]) -> Path:
    script: list[Event] = [{"t": 0.0, "kind": "focus", "app": "XTerm", "title": "screenshots"}]
    cues: list[Event] = []
    for n, shot in enumerate(shots, start=1):
        at = round(0.2 + (n - 1) * SLIDE_S, 3)
        rel = _frame(root, n, images.open_rgb(shot))
        script.append({"t": at, "kind": "screen", "image": rel})
        cues.append({"t": at, "expect": "silent", "about": shot.name})
    labels = {"task": "screen_cue", "user_speech": [], "cues": cues}
    return _write(root, script, labels)


def _speaking(root: Path, shot: Path, f: Failure, speech: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with wave.open(str(speech), "rb") as w:
        duration = w.getnframes() / w.getframerate()
    (root / "mic.wav").write_bytes(speech.read_bytes())
    base = images.open_rgb(shot)
    at = round(min(3.0, duration / 3), 3)
    script: list[Event] = [
        {"t": 0.0, "kind": "focus", "app": "XTerm", "title": "proj"},
        {"t": 0.3, "kind": "screen", "image": _panel(root, 1, base, f.before)},
        {"t": at, "kind": "screen", "image": _panel(root, 2, base, f.after)},
    ]
    cues = [
        {"t": 0.3, "expect": "silent", "about": "ordinary command"},
        {"t": at, "expect": "silent", "about": "a failure while the user talks"},
    ]
    labels = {"task": "screen_cue", "user_speech": [[0.0, duration]], "cues": cues}
    return _write(root, script, labels)


# --- scoring -------------------------------------------------------------------------------


def score(labels: Event, events: list[Event]) -> dict[str, Any]:
    """One scenario's outcome (see the module docstring)."""
    starts = [
        e["t"] for e in events if e.get("lane") == "model" and e.get("decision") == "interject"
    ]
    cues = sorted(labels.get("cues", []), key=lambda c: c["t"])
    wanted = [c for c in cues if c.get("expect") == "interject"]
    claimed: set[float] = set()
    latencies: list[float] = []
    missed: list[str] = []
    for cue in wanted:
        window = [s for s in starts if cue["t"] <= s <= cue["t"] + WINDOW_S and s not in claimed]
        hit = window[0] if window else None
        if hit is None:
            missed.append(str(cue.get("about", "")))
        else:
            claimed.add(hit)
            latencies.append(round(hit - cue["t"], 3))
    speaking = _speaking_spans(labels, events)
    return {
        "cues": len(wanted),
        "recalled": len(latencies),
        "latencies": latencies,
        "missed": missed,
        "ordinary_changes": sum(1 for c in cues if c.get("expect") == "silent"),
        "false": len([s for s in starts if s not in claimed]),
        "while_user_speaking": len([s for s in starts if any(a <= s <= b for a, b in speaking)]),
    }


def _speaking_spans(labels: Event, events: list[Event]) -> list[tuple[float, float]]:
    spans = [(float(a), float(b)) for a, b in labels.get("user_speech", [])]
    start: float | None = None
    for e in events:
        if e.get("lane") == "vad" and e.get("kind") == "speech_start":
            start = e["t"]
        elif e.get("lane") == "vad" and e.get("kind") == "speech_end" and start is not None:
            spans.append((start, e["t"]))
            start = None
    if start is not None:
        spans.append((start, float("inf")))
    return spans


def find(root: Path) -> list[Path]:
    """Screen-cue scenario folders under ``root`` (``labels.json`` with task screen_cue)."""
    out = []
    for labels in sorted(root.rglob("labels.json")):
        try:
            doc = json.loads(labels.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("task") == "screen_cue":
            out.append(labels.parent)
    return out


def eval_screen(
    scenarios: list[Path],
    replay: Callable[[Path], list[Event]],
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Replay each scenario, score it, and sum up (the JSON of ``tandem eval screen``)."""
    rows = []
    duration = 0.0
    for root in scenarios:
        labels = json.loads((root / "labels.json").read_text(encoding="utf-8"))
        events = replay(root)
        row = {"scenario": root.name, **score(labels, events)}
        duration += max((e["t"] for e in events), default=0.0)
        rows.append(row)
        if progress is not None:
            progress(root.name, row)
    cues = sum(r["cues"] for r in rows)
    recalled = sum(r["recalled"] for r in rows)
    changes = sum(r["ordinary_changes"] for r in rows)
    false = sum(r["false"] for r in rows)
    latencies = [x for r in rows for x in r["latencies"]]
    return {
        "scenarios": len(rows),
        "cues": cues,
        "recall": round(recalled / cues, 4) if cues else None,
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "latency_s_max": max(latencies) if latencies else None,
        "ordinary_changes": changes,
        "false_interjections": false,
        "false_rate": round(false / changes, 4) if changes else None,
        "false_per_10_min": round(false / duration * 600, 3) if duration else None,
        "while_user_speaking": sum(r["while_user_speaking"] for r in rows),
        "per_scenario": rows,
    }
