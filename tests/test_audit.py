"""The audit log: hash chain, tamper and truncation detection, durability under kill -9."""

from __future__ import annotations

import json
import os
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


def test_an_exception_after_begin_rolls_back_and_the_next_append_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import permissions.audit as audit_mod

    log = filled(tmp_path, 3)

    def boom(*a: object) -> str:
        raise RuntimeError("injected after BEGIN IMMEDIATE")

    monkeypatch.setattr(audit_mod, "entry_hash", boom)
    with pytest.raises(RuntimeError, match="injected"):
        log.append("decision", "read_file", "allow", "lost")
    monkeypatch.undo()
    other = sqlite3.connect(tmp_path / "audit.sqlite3", timeout=0)
    other.execute("BEGIN IMMEDIATE")  # "database is locked" if the append had left it open
    other.execute("ROLLBACK")
    other.close()
    assert log.append("decision", "read_file", "allow", "kept") == 4
    assert log.verify().intact


def test_a_head_path_that_is_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    from permissions.errors import AuditError

    filled(tmp_path, 2).close()
    head = tmp_path / "audit.sqlite3.head"
    head.unlink()
    head.mkdir()
    with pytest.raises(AuditError, match="is a directory") as e:
        AuditLog(tmp_path / "audit.sqlite3")
    assert "\n" not in str(e.value)


def test_a_wiped_log_is_not_intact_when_its_marker_remains(tmp_path: Path) -> None:
    db, marker = tmp_path / "data" / "audit.sqlite3", tmp_path / "cfg" / "audit-marker.json"
    log = AuditLog(db, marker=marker)
    log.append("decision", "read_file", "allow", "x")
    log.close()
    for p in db.parent.iterdir():  # database, WAL and head: all gone
        p.unlink()
    result = AuditLog(db, marker=marker).verify()
    assert result.intact is False and "wiped or replaced" in (result.problem or "")


KEYED = """
import json, sqlite3, sys
from pathlib import Path
from permissions import settings
from permissions.audit import GENESIS, MARKER_FILE, entry_hash, open_log

def rewrite(db, key, chain):
    con = sqlite3.connect(db)
    cur = con.execute("SELECT * FROM entries ORDER BY seq")
    names = [d[0] for d in cur.description]
    prev = GENESIS
    for values in cur.fetchall():
        row = dict(zip(names, values))
        row["reason"] = "nothing to see here"
        h = entry_hash(prev, row, key)
        con.execute("UPDATE entries SET reason=?, prev=?, hash=? WHERE seq=?",
                    (row["reason"], prev, h, row["seq"]))
        prev = h
    con.execute("UPDATE meta SET value=? WHERE key='chain'", (chain,))
    con.commit()
    con.close()
    Path(str(db) + ".head").write_text(json.dumps({"seq": 5, "hash": prev}))

def fresh(name):
    db = settings.data_dir() / name / "audit.sqlite3"  # one log per case: its own witnesses
    log = open_log(db)
    for i in range(5):
        log.append("decision", "read_file", "allow", f"r{i}", args={"path": f"{i}.py"})
    out = log.verify().to_json()
    log.close()
    return db, out

marker = settings.config_dir() / MARKER_FILE
out = {}
db, out["fresh"] = fresh("a")
out["reopened"] = open_log(db).verify().to_json()
rewrite(db, None, "sha256")  # without the key: a plain chain, recomputed end to end
out["plain_rewrite"] = open_log(db).verify().to_json()
db, _ = fresh("b")
marker.unlink()  # the marker goes too: the keyring remains
rewrite(db, None, "sha256")
out["plain_rewrite_no_marker"] = open_log(db).verify().to_json()
db, _ = fresh("c")
rewrite(db, b"\\x01" * 32, "hmac-sha256")  # a guessed key, chain kind kept
out["guessed_key"] = open_log(db).verify().to_json()
db, _ = fresh("d")
for p in db.parent.glob("audit.sqlite3*"):
    p.unlink()
marker.unlink()  # every file witness gone
out["wiped_all_files"] = open_log(db).verify().to_json()
print(json.dumps(out))
"""


def test_the_keyed_chain_detects_a_rewrite_without_the_key(tmp_path: Path) -> None:
    """A real gnome-keyring holds the HMAC key and the log's id (tests/with_keyring.sh)."""
    env = {
        **os.environ,
        "TANDEM_CONFIG_DIR": str(tmp_path / "cfg"),
        "TANDEM_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("PYTHON_KEYRING_BACKEND", None)
    proc = subprocess.run(
        ["bash", str(Path(__file__).with_name("with_keyring.sh")), sys.executable, "-c", KEYED],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    keyed = "keyed chain (HMAC-SHA256, key in the system keyring)"
    assert out["fresh"] == {"entries": 5, "intact": True, "note": keyed}
    assert out["reopened"]["intact"] is True
    assert out["plain_rewrite"]["intact"] is False
    assert "downgraded" in out["plain_rewrite"]["problem"]
    assert out["plain_rewrite_no_marker"]["intact"] is False
    assert "keyring says keyed" in out["plain_rewrite_no_marker"]["problem"]
    assert out["guessed_key"] == {
        "entries": 1,
        "intact": False,
        "problem": "entry 1 was altered",
        "note": keyed,
    }
    assert out["wiped_all_files"]["intact"] is False
    assert "the keyring records a log" in out["wiped_all_files"]["problem"]
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"audit-key" not in stored  # the key never touches Tandem's own files
