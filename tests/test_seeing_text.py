"""Seeing, the pure parts: redaction, cue detectors, change detection, OCR output parsing."""

from __future__ import annotations

import numpy as np
import pytest

from engine.seeing.cues import CueKind, destructive_command, detect
from engine.seeing.ocr import OcrLine, gray, parse_tsv, pgm
from engine.seeing.reader import summarize
from engine.seeing.redact import MARK, redact_line, redact_lines
from engine.seeing.regions import Box, ChangeTracker, changed_regions, mask

# --- redaction -----------------------------------------------------------------------------

SECRETS = [
    "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5",
    "sk-ant-api03-Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Jh0Gf9Ed8Cb7Aa",
    "ghp_R4nd0mT0k3nF0rG1tHubAcc3ssXyZ123456789",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "glpat-x7Yz9Ab3Cd5Ef7Gh9Ij1",
    "AKIAIOSFODNN7EXAMPLQ",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_51HxYzAbCdEfGhIjKlMnOpQr",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_provider_keys_are_redacted_wherever_they_appear(secret: str) -> None:
    for line in (secret, f"key: {secret} (copied)", f'client = Client("{secret}")'):
        out = redact_line(line)
        assert secret not in out and MARK in out
        assert secret[8:24] not in out


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("password=hunter2", "password="),
        ("DB_PASSWORD: 'correct horse battery'", "DB_PASSWORD: "),
        ('"api_key": "abc123def456"', '"api_key": '),
        ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "export "),
        ("DATABASE_URL=postgres://app:pa55word@db:5432/app", "DATABASE_URL="),
        ("STRIPE_WEBHOOK=whsec_abcdefgh", "STRIPE_WEBHOOK="),
        ("curl -H 'Authorization: Bearer abcdefghijklmnop1234'", "curl -H"),
        ("git clone https://bob:tok3nvalue@github.com/x/y", "git clone https://bob:"),
    ],
)
def test_key_value_env_and_url_secrets_lose_their_value(line: str, kept: str) -> None:
    out = redact_line(line)
    assert out.startswith(kept) and MARK in out
    for word in (
        "hunter2",
        "horse",
        "abc123def456",
        "wJalr",
        "pa55word",
        "whsec",
        "abcdefghij",
        "tok3n",
    ):
        assert word not in out


def test_a_private_key_block_is_removed_line_by_line() -> None:
    lines = [
        "$ cat id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
        "QyNTUxOQAAACB8+3qfXxLz0Y5aQ1dQmB6U1xq7bZ0r3b7Zc0u4qg3XhQAAAJg",
        "-----END OPENSSH PRIVATE KEY-----",
        "$ ls",
    ]
    out = redact_lines(lines)
    assert out[0] == "$ cat id_ed25519" and out[-1] == "$ ls"
    assert out[1:5] == [MARK] * 4


@pytest.mark.parametrize(
    "line",
    [
        "def parse(text: str) -> dict[str, int]:",
        "FAILED tests/test_parser.py::test_parse - KeyError: 'name'",
        "commit 3f5a1c2e9b8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
        "/home/user/projects/tandem/engine/seeing/redact.py",
        "PATH_TO_FILE_WITHOUT_VALUE",
        "token = get_token()",  # code that names a token but holds none is rewritten safely
    ],
)
def test_ordinary_text_survives(line: str) -> None:
    out = redact_line(line)
    if line.startswith("token ="):
        assert out.startswith("token =")
    else:
        assert out == line


# --- cues ----------------------------------------------------------------------------------


def lines(*texts: str) -> list[OcrLine]:
    return [OcrLine(t, Box(0, 20 * i, 400, 18)) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("texts", "kind", "summary"),
    [
        (
            ("FAILED tests/test_parser.py::test_parse - KeyError: 'name'",),
            CueKind.TEST_FAILURE,
            "test_parse fails with KeyError",
        ),
        (("____________ test_parse ____________",), CueKind.TEST_FAILURE, "test_parse fails"),
        (
            ("FAIL: test_split (tests.test_text.TextTest)",),
            CueKind.TEST_FAILURE,
            "test_split fails",
        ),
        (("ERROR: test_load (tests.test_io.IoTest)",), CueKind.TEST_FAILURE, "test_load fails"),
        (("--- FAIL: TestParse (0.00s)",), CueKind.TEST_FAILURE, "TestParse fails"),
        (("test parser::tests::splits ... FAILED",), CueKind.TEST_FAILURE, "splits fails"),
        (
            ("===== 2 failed, 10 passed in 0.31s =====",),
            CueKind.TEST_FAILURE,
            "===== 2 failed, 10 passed in 0.31s =====",
        ),
        (
            (
                "Traceback (most recent call last):",
                '  File "/p/app/parser.py", line 12, in parse',
                "    return d['name']",
                "KeyError: 'name'",
            ),
            CueKind.TRACEBACK,
            "KeyError: 'name' (parser.py line 12)",
        ),
        (
            ("src/main.c:12:5: error: expected ';' before 'return'",),
            CueKind.BUILD_ERROR,
            "main.c line 12: expected ';' before 'return'",
        ),
        (("error[E0308]: mismatched types",), CueKind.BUILD_ERROR, "error E0308: mismatched types"),
        (
            ("./main.go:7:2: undefined: fmtx",),
            CueKind.BUILD_ERROR,
            "main.go line 7: undefined: fmtx",
        ),
        (("npm ERR! code ELIFECYCLE",), CueKind.BUILD_ERROR, "npm ERR! code ELIFECYCLE"),
        (
            ("make: *** [Makefile:12: all] Error 2",),
            CueKind.BUILD_ERROR,
            "make: *** [Makefile:12: all] Error 2",
        ),
        (
            ("app/models.py:31: error: Incompatible return value type  [return-value]",),
            CueKind.TYPE_ERROR,
            "models.py line 31: Incompatible return value type",
        ),
        (
            ("src/app.ts(4,7): error TS2322: Type 'string' is not assignable to type 'number'.",),
            CueKind.TYPE_ERROR,
            "app.ts line 4: TS2322 Type 'string' is not assignable to type 'number'.",
        ),
        (("user@box:~/proj$ rm -rf build",), CueKind.DESTRUCTIVE_COMMAND, "rm -rf build"),
        (
            ("$ git push --force origin main",),
            CueKind.DESTRUCTIVE_COMMAND,
            "git push --force origin main",
        ),
        (("❯ git reset --hard HEAD~3",), CueKind.DESTRUCTIVE_COMMAND, "git reset --hard HEAD~3"),
        (("mysql> DROP TABLE users;",), CueKind.DESTRUCTIVE_COMMAND, "DROP TABLE users"),
    ],
)
def test_detectors(texts: tuple[str, ...], kind: CueKind, summary: str) -> None:
    found = detect(lines(*texts))
    assert [(c.kind, c.summary) for c in found][:1] == [(kind, summary)]
    assert found[0].box.w > 0


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf build",
        "rm -fr build",
        "rm -r -f build",
        "rm -Rf build",
        "rm --recursive --force build",
        "sudo rm -rf /",
        "sudo -u root rm -rf /srv",
        "cd /tmp && rm -rf x",
        "git push --force",
        "git push -f origin main",
        "git push origin +main",
        "git push --force-with-lease",
        "git -C repo push -f",
        "git reset --hard",
        "git reset --hard origin/main",
        "git clean -fdx",
    ],
)
def test_destructive_commands_in_every_spelling(command: str) -> None:
    assert destructive_command(command)


@pytest.mark.parametrize(
    "command",
    [
        "rm -r build",
        "rm -f x.txt",
        "git push origin main",
        "git reset HEAD~1",
        "ls -la",
        "echo rm -rf",
    ],
)
def test_safe_commands_raise_nothing(command: str) -> None:
    assert destructive_command(command) == ""


def test_ordinary_output_raises_no_cue() -> None:
    ordinary = lines(
        "[Running] python -u test.py",
        "hello world",
        "[Done] exited with code=0 in 0.08 seconds",
        "===== 12 passed in 0.31s =====",
        "def test_parse(): assert parse('a') == 'a'",
        "Compiling tandem v0.1.0",
    )
    assert detect(ordinary) == []


def test_the_same_failure_has_the_same_key_on_every_frame() -> None:
    a = detect(lines("FAILED tests/test_parser.py::test_parse - KeyError: 'name'"))
    b = detect(lines("", "", "FAILED tests/test_parser.py::test_parse - KeyError: 'name'"))
    assert a[0].key == b[0].key and a[0].box != b[0].box


# --- change detection ----------------------------------------------------------------------


def frame(h: int = 256, w: int = 320) -> np.ndarray:
    return np.zeros((h, w, 4), dtype=np.uint8)


def test_changed_regions_find_each_changed_block() -> None:
    a, b = frame(), frame()
    b[10:20, 10:100] = 255  # a line of text near the top
    b[200:210, 250:300] = 255  # another far away
    boxes = changed_regions(a, b)
    assert len(boxes) == 2
    assert all(box.w <= 128 and box.h <= 64 for box in boxes)
    assert changed_regions(a, a.copy()) == []
    assert changed_regions(None, a) == [Box(0, 0, 320, 256)]


def test_a_blinking_cursor_is_never_read_but_typing_is() -> None:
    tracker = ChangeTracker()
    base = frame()
    assert tracker.update(base) == [Box(0, 0, 320, 256)]
    blink = base.copy()
    blink[100:116, 40:48] = 255
    for _ in range(3):
        assert tracker.update(blink) == []
        assert tracker.update(base) == []
    typed = base.copy()
    typed[100:116, 40:48] = 255
    typed[100:116, 72:80] = 255  # the next character, in the next tile
    assert len(tracker.update(typed)) == 1


def test_mask_blacks_out_tandems_own_window() -> None:
    f = frame()
    f[:] = 200
    out = mask(f, [Box(10, 10, 50, 50), Box(300, 200, 100, 100)])
    assert (out[10:60, 10:60] == 0).all() and (out[200:, 300:] == 0).all()
    assert (out[100:150, 100:150] == 200).all() and (f == 200).all()


# --- OCR plumbing ----------------------------------------------------------------------------


def test_tsv_lines_come_back_in_frame_coordinates() -> None:
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "5\t1\t1\t1\t1\t1\t10\t4\t40\t12\t96.0\tKeyError:\n"
        "5\t1\t1\t1\t1\t2\t56\t4\t30\t12\t91.0\t'name'\n"
        "5\t1\t1\t1\t2\t1\t10\t24\t20\t12\t5.0\t|~\n"
    )
    (line,) = parse_tsv(tsv, Box(100, 200, 400, 100), scale=2)
    assert line.text == "KeyError: 'name'"
    assert line.box == Box(105, 202, 38, 6)


def test_dark_terminals_are_inverted_and_pgm_is_well_formed() -> None:
    dark = frame(4, 6)
    dark[..., :3] = 20
    g = gray(dark)
    assert g.dtype == np.uint8 and int(g[0, 0]) == 235
    assert pgm(g).startswith(b"P5\n6 4\n255\n") and len(pgm(g)) == len(b"P5\n6 4\n255\n") + 24


def test_a_summary_is_a_few_words_not_the_screen() -> None:
    new = [f"line {i} " + "x" * 200 for i in range(50)]
    s = summarize(new)
    assert s.startswith("+50 lines, last: line 49") and len(s) < 90
    assert summarize(["", "  "]) == ""
