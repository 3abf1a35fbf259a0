"""The audit log: every lease, revocation and decision, append-only, tamper-evident.

SQLite in WAL mode with ``synchronous=FULL``: an entry whose ``append`` returned is on disk
and survives ``kill -9``. Each entry carries the hash of the one before it (a hash chain), so
an edited, reordered or deleted entry breaks the chain; a ``.head`` file beside the database,
replaced atomically after each append, records the last entry so that cutting entries off the
end is detected too. Entries never hold raw content: argument values are stored only as a
short SHA-256 and a length.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permissions.errors import AuditError

AUDIT_FILE = "audit.sqlite3"
GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "subject", "decision", "rule", "reason", "args")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    decision TEXT NOT NULL,
    rule TEXT,
    reason TEXT NOT NULL,
    args TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
)
"""


def digest_args(args: object) -> dict[str, str]:
    """Argument values as ``sha256:<16 hex> len=<n>`` (names kept, content never)."""
    items = args.items() if isinstance(args, Mapping) else [("value", args)]
    out = {}
    for key, value in items:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        h = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        out[str(key)[:64]] = f"sha256:{h} len={len(text)}"
    return out


def entry_hash(prev: str, row: Mapping[str, Any]) -> str:
    """The chain hash of one entry."""
    payload = json.dumps([row[f] for f in FIELDS], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``tandem audit verify --json``: entries checked and whether the chain is whole."""

    entries: int
    intact: bool
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The command's JSON object."""
        out: dict[str, Any] = {"entries": self.entries, "intact": self.intact}
        if self.problem:
            out["problem"] = self.problem
        return out


class AuditLog:
    """Append-only, hash-chained log in SQLite (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise AuditError(f"cannot open the audit log {path}: {e}") from e

    def append(
        self,
        kind: str,
        subject: str,
        decision: str,
        reason: str,
        *,
        rule: str | None = None,
        args: object = None,
    ) -> int:
        """Write one entry and return its sequence number once it is durable."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                last = self._db.execute(
                    "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                row: dict[str, Any] = {
                    "seq": seq,
                    "ts": round(time.time(), 3),
                    "kind": kind,
                    "subject": subject,
                    "decision": decision,
                    "rule": rule,
                    "reason": reason,
                    "args": json.dumps(
                        digest_args(args) if args is not None else {}, sort_keys=True
                    ),
                }
                h = entry_hash(prev, row)
                self._db.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*[row[f] for f in FIELDS], prev, h),
                )
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise AuditError(f"audit write failed: {e}") from e
            self._write_head(seq, h)
            return seq

    def _write_head(self, seq: int, h: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".head.", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"seq": seq, "hash": h}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (with ``prev`` and ``hash``)."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM entries ORDER BY seq")
            names = [d[0] for d in cur.description]
            fetched = cur.fetchall()
        for values in fetched:
            yield dict(zip(names, values, strict=True))

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first."""
        return list(self.rows())[-n:]

    def verify(self) -> VerifyResult:
        """Walk the chain and compare its end with the head file."""
        count, prev = 0, GENESIS
        try:
            for row in self.rows():
                count += 1
                if row["seq"] != count:
                    return VerifyResult(
                        count, False, f"entry {count} is missing (found {row['seq']})"
                    )
                if row["prev"] != prev or entry_hash(prev, row) != row["hash"]:
                    return VerifyResult(count, False, f"entry {count} was altered")
                prev = row["hash"]
        except sqlite3.DatabaseError as e:
            return VerifyResult(count, False, f"database unreadable: {e}")
        try:
            head = self._read_head()
        except ValueError:
            return VerifyResult(count, False, "head file unreadable")
        if head is not None:
            hseq, hhash = head
            if hseq > count:
                return VerifyResult(count, False, f"log truncated: head says {hseq} entries")
            if hseq >= 1:
                at = next((r for r in self.rows() if r["seq"] == hseq), None)
                if at is None or at["hash"] != hhash:
                    return VerifyResult(count, False, f"entry {hseq} does not match the head")
        elif count:
            return VerifyResult(count, False, "head file missing")
        return VerifyResult(count, True)

    def _read_head(self) -> tuple[int, str] | None:
        try:
            obj = json.loads(self.head_path.read_text())
            return int(obj["seq"]), str(obj["hash"])
        except FileNotFoundError:
            return None
        except (KeyError, TypeError) as e:
            raise ValueError("malformed head") from e

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
