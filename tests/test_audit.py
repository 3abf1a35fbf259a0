"""The audit log: hash chain, tamper and truncation detection, durability under kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from permissions.audit import AuditLog

BURST = """
import sys
from permissions.audit import AuditLog
log = AuditLog(__import__("pathlib").Path(sys.argv[1]))
for i in range(100000):
    seq = log.append("decision", "read_file", "allow", "burst", args={"path": f"f{i}.py"})
    print(seq, flush=True)
"""


def filled(tmp_path: Path, n: int = 20) -> AuditLog:
    log = AuditLog(tmp_path / "audit.sqlite3")
    for i in range(n):
        log.append(
            "decision",
            "write_file",
            "allow" if i % 2 else "ask",
            f"entry {i}",
            rule=None,
            args={"path": f"src/{i}.py"},
        )
    return log


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    log = filled(tmp_path)
    result = log.verify()
    assert (result.entries, result.intact) == (20, True)
    assert [r["seq"] for r in log.tail(3)] == [18, 19, 20]


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    filled(tmp_path).close()
    db = tmp_path / "audit.sqlite3"
    data = bytearray(db.read_bytes())
    at = data.find(b"entry 7")
    assert at > 0
    data[at + 6] ^= 0x01  # "entry 7" -> "entry 6": still valid SQLite, different content
    db.write_bytes(bytes(data))
    result = AuditLog(db).verify()
    assert result.intact is False and "altered" in (result.problem or "")


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("UPDATE entries SET decision='deny' WHERE seq=4", "entry 4 was altered"),
        ("UPDATE entries SET ts=ts+1 WHERE seq=1", "entry 1 was altered"),
        ("DELETE FROM entries WHERE seq=10", "entry 10 is missing"),
        ("DELETE FROM entries WHERE seq > 15", "log truncated"),
        ("DELETE FROM entries", "log truncated"),
    ],
)
def test_tampering_with_sql_is_detected(tmp_path: Path, sql: str, problem: str) -> None:
    filled(tmp_path).close()
    con = sqlite3.connect(tmp_path / "audit.sqlite3")
    con.execute(sql)
    con.commit()
    con.close()
    result = AuditLog(tmp_path / "audit.sqlite3").verify()
    assert result.intact is False and problem in (result.problem or "")


def test_a_deleted_head_file_is_detected(tmp_path: Path) -> None:
    log = filled(tmp_path)
    log.head_path.unlink()
    assert log.verify().problem == "head file missing"


def test_arguments_are_stored_as_digests_only(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    log.append(
        "decision", "run_command", "ask", "default", args={"command": "export TOKEN=sk-live-secret"}
    )
    row = log.tail(1)[0]
    assert "sk-live-secret" not in str(row)
    assert row["args"].startswith('{"command": "sha256:')


def test_kill_9_mid_burst_loses_no_committed_entry(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", BURST, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    confirmed = []
    for line in proc.stdout:
        confirmed.append(int(line))
        if len(confirmed) == 300:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    log = AuditLog(db)
    seqs = [r["seq"] for r in log.rows()]
    assert set(confirmed) <= set(seqs)  # every entry whose append returned is there
    result = log.verify()
    assert result.intact, result.problem
    assert result.entries >= 300
