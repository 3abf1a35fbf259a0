"""The audit log: every lease, revocation and decision, append-only, tamper-evident.

SQLite in WAL mode with ``synchronous=FULL``: an entry whose ``append`` returned is on disk
and survives ``kill -9``. Each entry carries the hash of the one before it (a hash chain), so
an edited, reordered or deleted entry breaks the chain; a ``.head`` file beside the database,
replaced atomically inside each append's transaction, records the last entry so that cutting
entries off the end is detected too. Entries never hold raw content: argument values are
stored only as a short SHA-256 of their canonical JSON and a length (computed without
recursion, so a 5,000-deep argument is hashed like any other).

Two witnesses live *outside* the data dir, so that deleting the database and its head does
not look like a first run (``open_log`` sets both up; a bare ``AuditLog(path)`` has neither):

- a first-run marker in the config dir (``audit-marker.json``) records the log's random id,
  its chain kind and when it was created;
- with a system keyring, the chain is keyed: every entry hash is an HMAC-SHA256 under a
  random key kept only in the keyring, and the keyring also records which log id belongs to
  the log's path. With no keyring backend the log falls back to the plain hash chain and
  ``verify`` says so.

What ``verify`` can prove, and what it cannot:

- It detects an edited, inserted, reordered or deleted entry, and a cut-off tail (head file).
- With a marker or a keyring record, it detects a log that was wiped (database and head
  deleted) or replaced by another one, and a keyed log downgraded to a plain chain.
- With the keyed chain, it detects a rewrite of the whole log (entries recomputed, head and
  marker rewritten) by anyone who cannot read the keyring.
- It cannot detect a rewrite by a process that can read the key: on a desktop, any program
  running as the user while the keyring is unlocked can. Without a keyring, anyone who can
  write the data and config dirs can rewrite the whole history consistently.
- It cannot detect the whole state (database, head, marker) being rolled back to an earlier
  consistent copy, such as a restored backup; nor deleting every witness at once (database,
  head, marker and keyring item), which looks like a first run.
- It cannot prove that an event was ever logged: a process that never calls ``append``, or
  dies before it returns, leaves no entry. Timestamps are the local clock's.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permissions.errors import AuditError, SecretsError
from permissions.settings import atomic_write

AUDIT_FILE = "audit.sqlite3"
MARKER_FILE = "audit-marker.json"
GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "subject", "decision", "rule", "reason", "args")
CHAIN_PLAIN = "sha256"
CHAIN_KEYED = "hmac-sha256"
BUSY_TIMEOUT_S = 15.0
"""How long an open or an append waits for another writer (process or thread) to finish."""
MAX_SIDE_FILE_BYTES = 1 << 20
"""Head and marker files larger than this are not read (they are a few hundred bytes)."""
_SCHEMA = (
    """
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
    """,
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class _Raw(str):
    """Already-encoded JSON text on the encoder's stack."""

    __slots__ = ()


class _Close(int):
    """End of a container on the encoder's stack: the id to forget (cycle detection)."""

    __slots__ = ()


def canonical_json(value: object) -> str:
    """Canonical JSON of ``value`` (keys sorted by their string, compact separators).

    Iterative, so nesting depth costs memory, never the Python stack. Values that are not
    JSON (objects, bytes, sets) are encoded as their ``str``; a container that contains
    itself is encoded as ``"<cycle>"``.
    """
    out: list[str] = []
    stack: list[object] = [value]
    open_ids: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item)
        elif isinstance(item, _Close):
            open_ids.discard(int(item))
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in open_ids:
                out.append('"<cycle>"')
                continue
            open_ids.add(id(item))
            stack.append(_Close(id(item)))
            if isinstance(item, Mapping):
                pairs = sorted(((str(k), v) for k, v in item.items()), key=lambda kv: kv[0])
                stack.append(_Raw("}"))
                for n, (k, v) in enumerate(reversed(pairs)):
                    stack.append(v)
                    sep = "" if n == len(pairs) - 1 else ","
                    stack.append(_Raw(sep + json.dumps(k) + ":"))
                stack.append(_Raw("{"))
            else:
                stack.append(_Raw("]"))
                for n, v in enumerate(reversed(item)):
                    stack.append(v)
                    if n != len(item) - 1:
                        stack.append(_Raw(","))
                stack.append(_Raw("["))
        else:
            out.append(_scalar(item))
    return "".join(out)


def _scalar(value: object) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than int->str allows: hex has no such limit
            return json.dumps(f"int:{value:#x}")
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else json.dumps(f"float:{value}")
    return json.dumps(value if isinstance(value, str) else str(value))


def digest_args(args: object) -> dict[str, str]:
    """Argument values as ``sha256:<16 hex> len=<n>`` (names kept, content never)."""
    items = args.items() if isinstance(args, Mapping) else [("value", args)]
    out = {}
    for key, value in items:
        text = value if isinstance(value, str) else canonical_json(value)
        h = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        out[str(key)[:64]] = f"sha256:{h} len={len(text)}"
    return out


def entry_hash(prev: str, row: Mapping[str, Any], key: bytes | None = None) -> str:
    """The chain hash of one entry: SHA-256, or HMAC-SHA256 under ``key`` (keyed chain)."""
    payload = json.dumps([row[f] for f in FIELDS], separators=(",", ":"), ensure_ascii=False)
    data = (prev + payload).encode("utf-8", "surrogatepass")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``tandem audit verify --json``: entries checked and whether the chain is whole.

    Attributes:
        entries: entries checked.
        intact: True when nothing the log can detect is wrong.
        problem: the first thing found wrong (one line).
        note: what this verification rests on (keyed or plain chain, witnesses); set for
            logs opened with ``open_log`` (``keyed=True``).
    """

    entries: int
    intact: bool
    problem: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The command's JSON object."""
        out: dict[str, Any] = {"entries": self.entries, "intact": self.intact}
        if self.problem:
            out["problem"] = self.problem
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class _Witness:
    """What a marker or the keyring recorded about a log at its first open."""

    log_id: str
    chain: str
    created: float


class AuditLog:
    """Append-only, hash-chained log in SQLite (thread- and process-safe).

    Args:
        path: the database file.
        marker: a first-run marker file outside the data dir (``open_log`` uses the config
            dir); None: no marker, so a wiped log cannot be told from a new one.
        keyed: use the system keyring: key a new log's chain (HMAC) and record the log's id
            there. Without a keyring backend the log stays a plain hash chain and
            ``verify`` says so. A log that is already keyed always needs its key.

    Raises:
        AuditError: the database, its head or the marker cannot be opened (one line).
    """

    def __init__(self, path: Path, *, marker: Path | None = None, keyed: bool = False) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self.marker_path = marker
        self._keyed = keyed
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._keyring_problem: str | None = None
        self._witness_problem: str | None = None
        self._keyring_witness: _Witness | None = None
        self._marker_witness: _Witness | None = None
        for p in (self.head_path, *([marker] if marker else [])):
            if p.is_dir():
                raise AuditError(f"audit file {p} is a directory, not a file: move it aside")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AuditError(f"cannot create the audit log's folder {path.parent}: {e}") from e
        self._db = self._connect()
        try:
            candidate = self._candidate()
            self.log_id, self.chain, self.created, fresh = self._setup(candidate)
            if candidate is not None and not fresh:
                self._forget_key(candidate[0])  # another opener created the log first
            if self.chain == CHAIN_KEYED:
                self._load_key()
            if keyed:
                self._check_keyring_witness()
            if marker is not None:
                self._check_marker(marker)
        except BaseException:
            self._db.close()
            raise

    # --- opening -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                db = sqlite3.connect(
                    str(self.path),
                    check_same_thread=False,
                    isolation_level=None,
                    timeout=BUSY_TIMEOUT_S,
                )
            except sqlite3.Error as e:
                raise AuditError(f"cannot open the audit log {self.path}: {e}") from e
            try:
                db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                # Idempotent: only the first opener switches a fresh file to WAL.
                if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                return db
            except sqlite3.Error as e:
                db.close()
                if not _busy(e) or time.monotonic() > deadline:
                    raise AuditError(f"cannot open the audit log {self.path}: {e}") from e
                time.sleep(0.01)

    def _candidate(self) -> tuple[str, bytes] | None:
        """For a keyed log that may be new: a log id and a key, stored in the keyring
        *before* the log exists, so that no second opener can find the log without it."""
        if not self._keyed:
            return None
        from permissions import secrets as store

        try:
            if self._meta().get("log_id") is not None:
                return None
        except sqlite3.Error:
            return None  # _setup reports what is wrong with the database
        try:
            log_id, key = secrets.token_hex(16), secrets.token_bytes(32)
            store.set_secret(_key_name(log_id), key.hex())
            return log_id, key
        except SecretsError as e:
            self._keyring_problem = str(e)
            return None

    def _setup(self, candidate: tuple[str, bytes] | None) -> tuple[str, str, float, bool]:
        """Create the tables and the log's identity once (safe against concurrent opens)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                with self._transaction():
                    for ddl in _SCHEMA:
                        self._db.execute(ddl)
                    meta = self._meta()
                    if "log_id" in meta and meta.get("chain") in (CHAIN_PLAIN, CHAIN_KEYED):
                        created = _float(meta.get("created"))
                        return meta["log_id"], meta["chain"], created, False
                    if meta:
                        raise AuditError(f"audit log {self.path}: its identity is unreadable")
                    has_entries = self._db.execute("SELECT 1 FROM entries LIMIT 1").fetchone()
                    if candidate is not None and not has_entries:
                        log_id, chain = candidate[0], CHAIN_KEYED
                    else:  # no keyring, or a log written before keyed chains: plain
                        log_id, chain = secrets.token_hex(16), CHAIN_PLAIN
                    created = round(time.time(), 3)
                    self._db.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [("log_id", log_id), ("chain", chain), ("created", str(created))],
                    )
                    return log_id, chain, created, candidate is not None and not has_entries
            except sqlite3.Error as e:
                if not _busy(e) or time.monotonic() > deadline:
                    raise AuditError(f"cannot set up the audit log {self.path}: {e}") from e
                time.sleep(0.01)

    def _meta(self) -> dict[str, str]:
        try:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return {}
            raise
        return {str(k): str(v) for k, v in rows}

    def _load_key(self) -> None:
        from permissions import secrets as store

        try:
            value = store.get_secret(_key_name(self.log_id))
        except SecretsError as e:
            self._keyring_problem = str(e)
            return
        try:
            self._key = bytes.fromhex(value) if value else None
        except ValueError:
            self._key = None
        if self._key is None:
            self._keyring_problem = "the keyring has no key for this keyed log"

    def _forget_key(self, log_id: str) -> None:
        from permissions import secrets as store

        with contextlib.suppress(SecretsError):  # an orphan key no log uses is harmless
            store.delete_secret(_key_name(log_id))

    def _check_keyring_witness(self) -> None:
        """Record this log's id in the keyring at first open; remember what was recorded."""
        from permissions import secrets as store

        name = _witness_name(self.path)
        try:
            value = store.get_secret(name)
            if value is None:
                store.set_secret(name, self._witness_json())
                value = self._witness_json()
        except SecretsError as e:
            self._keyring_problem = self._keyring_problem or str(e)
            return
        self._keyring_witness = _parse_witness(value)
        if self._keyring_witness is None:
            self._witness_problem = "the keyring's record of this log is unreadable"

    def _check_marker(self, marker: Path) -> None:
        """Record this log in the first-run marker; remember what an earlier run recorded."""
        try:
            doc = _read_marker(marker)
        except AuditError as e:
            self._witness_problem = str(e)
            return
        logs = doc.setdefault("logs", {})
        key = str(self._real_path())
        if key in logs:
            self._marker_witness = _parse_witness(json.dumps(logs[key]))
            if self._marker_witness is None:
                self._witness_problem = f"the marker's record of this log is unreadable ({marker})"
            return
        logs[key] = json.loads(self._witness_json())
        try:
            _write_json(marker, doc)
        except AuditError as e:  # reported by verify; the log itself still records
            self._witness_problem = f"first-run marker not written: {e}"
            return
        self._marker_witness = _parse_witness(self._witness_json())

    def reset_witnesses(self) -> None:
        """Record *this* log as the one to expect (the user's decision, after ``verify`` said
        the log was wiped or replaced and they have looked into why)."""
        if self.marker_path is not None:
            doc = _read_marker(self.marker_path)
            doc.setdefault("logs", {})[str(self._real_path())] = json.loads(self._witness_json())
            _write_json(self.marker_path, doc)
            self._marker_witness = _parse_witness(self._witness_json())
        if self._keyed:
            from permissions import secrets as store

            try:
                store.set_secret(_witness_name(self.path), self._witness_json())
                self._keyring_witness = _parse_witness(self._witness_json())
            except SecretsError as e:
                raise AuditError(f"cannot update the keyring's record of the log: {e}") from e
        self._witness_problem = None

    def _witness_json(self) -> str:
        return json.dumps({"log_id": self.log_id, "chain": self.chain, "created": self.created})

    def _real_path(self) -> Path:
        return Path(os.path.realpath(self.path))

    # --- writing -------------------------------------------------------------------------

    class _Tx:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on *any* exception."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
            try:
                if kind is None:
                    self.db.execute("COMMIT")
            finally:  # an exception in the block, or a failed COMMIT: never stay locked
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")

    def _transaction(self) -> AuditLog._Tx:
        return AuditLog._Tx(self._db)

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
        """Write one entry and return its sequence number once it is durable.

        Raises:
            AuditError: the entry could not be written; nothing was (the transaction is
                rolled back whatever went wrong, so the database is never left locked).
        """
        if self.chain == CHAIN_KEYED and self._key is None:
            raise AuditError(
                f"the audit log is keyed but its key is unavailable ({self._keyring_problem}):"
                " unlock the system keyring"
            )
        args_json = json.dumps(digest_args(args) if args is not None else {}, sort_keys=True)
        with self._lock:
            head_written = False
            try:
                with self._transaction():
                    last = self._db.execute(
                        "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1"
                    ).fetchone()
                    seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
                    row: dict[str, Any] = {
                        "seq": seq,
                        "ts": round(time.time(), 3),
                        "kind": kind,
                        "subject": subject,
                        "decision": decision,
                        "rule": rule,
                        "reason": reason,
                        "args": args_json,
                    }
                    h = entry_hash(prev, row, self._key)
                    self._db.execute(
                        "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*[row[f] for f in FIELDS], prev, h),
                    )
                    # The head is replaced while the write lock is held, so heads written by
                    # several processes never go backwards.
                    head_written = True
                    self._write_head(seq, h)
            except sqlite3.Error as e:
                if head_written:  # COMMIT failed after the head moved on: move it back
                    self._restore_head()
                raise AuditError(f"audit write failed: {e}") from e
            except OSError as e:
                self._restore_head()
                raise AuditError(f"audit head {self.head_path} not written: {e}") from e
            return seq

    def _write_head(self, seq: int, h: str) -> None:
        _atomic_write(self.head_path, {"seq": seq, "hash": h}, ".head.")

    def _restore_head(self) -> None:
        """After a rolled-back append: point the head back at the last committed entry."""
        try:
            last = self._db.execute(
                "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            self._write_head(*((int(last[0]), str(last[1])) if last else (0, GENESIS)))
        except (sqlite3.Error, OSError):
            pass  # verify will report the head as unreadable or ahead: fails closed

    # --- reading -------------------------------------------------------------------------

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (with ``prev`` and ``hash``).

        Raises:
            AuditError: the database cannot be read.
        """
        with self._lock:
            try:
                cur = self._db.execute("SELECT * FROM entries ORDER BY seq")
                names = [d[0] for d in cur.description]
                fetched = cur.fetchall()
            except sqlite3.Error as e:
                raise AuditError(f"audit log {self.path} unreadable: {e}") from e
        for values in fetched:
            yield dict(zip(names, values, strict=True))

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first."""
        return list(self.rows())[-n:]

    def verify(self) -> VerifyResult:
        """Walk the chain, compare its end with the head file and its identity with the
        witnesses outside the data dir."""
        note = self._note()
        count, prev, hashes = 0, GENESIS, {}
        if self.chain == CHAIN_KEYED and self._key is None:
            problem = f"keyed log, key unavailable ({self._keyring_problem}): cannot check it"
            return VerifyResult(0, False, problem, note)
        try:
            for row in self.rows():
                count += 1
                if row["seq"] != count:
                    problem = f"entry {count} is missing (found {row['seq']})"
                    return VerifyResult(count, False, problem, note)
                if row["prev"] != prev or entry_hash(prev, row, self._key) != row["hash"]:
                    return VerifyResult(count, False, f"entry {count} was altered", note)
                prev = row["hash"]
                hashes[count] = prev
        except AuditError as e:
            return VerifyResult(count, False, f"database unreadable: {e}", note)
        except (KeyError, TypeError, ValueError):
            return VerifyResult(count, False, f"entry {count} is malformed", note)
        try:
            head = self._read_head()
        except AuditError as e:
            return VerifyResult(count, False, str(e), note)
        if head is not None:
            hseq, hhash = head
            if hseq > count:
                return VerifyResult(count, False, f"log truncated: head says {hseq} entries", note)
            if hseq >= 1 and hashes.get(hseq) != hhash:
                return VerifyResult(count, False, f"entry {hseq} does not match the head", note)
        elif count:
            return VerifyResult(count, False, "head file missing", note)
        witness = self._witness_check()
        if witness:
            return VerifyResult(count, False, witness, note)
        return VerifyResult(count, True, None, note)

    def _witness_check(self) -> str | None:
        if self._witness_problem:
            return self._witness_problem
        for where, w in (
            ("first-run marker", self._marker_witness),
            ("keyring", self._keyring_witness),
        ):
            if w is None:
                continue
            if w.log_id != self.log_id:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(w.created))
                return (
                    f"the log was wiped or replaced: the {where} records a log created {when}"
                    f" ({w.log_id[:8]}), this one is {self.log_id[:8]}"
                )
            if w.chain == CHAIN_KEYED and self.chain != CHAIN_KEYED:
                return f"the log was downgraded to a plain hash chain (the {where} says keyed)"
        return None

    def _note(self) -> str | None:
        if not self._keyed:
            return None
        if self.chain == CHAIN_KEYED:
            return "keyed chain (HMAC-SHA256, key in the system keyring)"
        why = f" ({self._keyring_problem})" if self._keyring_problem else ""
        return (
            f"plain hash chain{why}: a rewrite of the whole log by someone who can write"
            " its files is not detected"
        )

    def _read_head(self) -> tuple[int, str] | None:
        try:
            obj = json.loads(_read_small(self.head_path))
            return int(obj["seq"]), str(obj["hash"])
        except FileNotFoundError:
            return None
        except OSError as e:
            raise AuditError(f"head file unreadable: {e.strerror or e}") from e
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as e:
            raise AuditError("head file unreadable: malformed") from e

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def open_log(path: Path | None = None, *, keyed: bool = True) -> AuditLog:
    """The user's audit log (data dir), with its first-run marker in the config dir and,
    when a keyring is available, a keyed chain."""
    from permissions import settings

    return AuditLog(
        path or settings.data_dir() / AUDIT_FILE,
        marker=settings.config_dir() / MARKER_FILE,
        keyed=keyed,
    )


def _busy(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def _float(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def _key_name(log_id: str) -> str:
    return f"audit-key:{log_id}"


def _witness_name(path: Path) -> str:
    return f"audit-log:{os.path.realpath(path)}"


def _parse_witness(text: str) -> _Witness | None:
    try:
        obj = json.loads(text)
        return _Witness(str(obj["log_id"]), str(obj["chain"]), float(obj["created"]))
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError):
        return None


def _read_small(path: Path) -> bytes:
    """A side file's bytes; refuses what is not a small regular file (one-line errors)."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise AuditError(f"{path} is not a regular file")
        data = f.read(MAX_SIDE_FILE_BYTES + 1)
    if len(data) > MAX_SIDE_FILE_BYTES:
        raise AuditError(f"{path} is larger than {MAX_SIDE_FILE_BYTES} bytes")
    return data


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        doc = json.loads(_read_small(marker))
    except FileNotFoundError:
        return {"schema": 1, "logs": {}}
    except AuditError as e:
        raise AuditError(f"audit marker unreadable: {e}") from e
    except OSError as e:
        raise AuditError(f"audit marker {marker} unreadable: {e.strerror or e}") from e
    except (ValueError, RecursionError) as e:
        raise AuditError(f"audit marker {marker} is malformed") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("logs", {}), dict):
        raise AuditError(f"audit marker {marker} is malformed")
    return doc


def _write_json(path: Path, obj: object) -> None:
    """Replace a side file atomically; errors as ``AuditError`` (one line)."""
    try:
        _atomic_write(path, obj, ".marker.")
    except OSError as e:
        raise AuditError(f"cannot write {path}: {e.strerror or e}") from e


def _atomic_write(path: Path, obj: object, prefix: str) -> None:
    """Replace a small JSON side file atomically (no folder fsync: the head is rewritten on
    every append, and a lost rename is detected by ``verify`` against the database)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(obj).encode("utf-8"), prefix=prefix, sync_dir=False)
