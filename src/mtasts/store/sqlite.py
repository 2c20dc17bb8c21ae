"""The persistent tier: one SQLite file, WAL, a schema version.

Point reads and small writes run on the event loop thread: with WAL they take tens of
microseconds and never wait on the network. A corrupt file is moved aside, not fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import sqlite3
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mtasts.core.dane import result_from_json, result_to_json
from mtasts.core.freshness import CachedPolicy, CacheEntry, Hold, implausible
from mtasts.core.history import Change
from mtasts.core.override import Override, override_from_json, override_to_json
from mtasts.core.policy import parse_policy
from mtasts.errors import PolicyError, StoreError

log = logging.getLogger("mtasts.store")

SCHEMA_VERSION = 2
# Version 2 added the DANE result and the policy mode (for metrics); a version 1 file is
# upgraded in place, its modes read from the stored bodies once.
_MIGRATIONS = {
    1: """
ALTER TABLE entries ADD COLUMN dane TEXT;
ALTER TABLE entries ADD COLUMN mode TEXT;
UPDATE entries SET mode = CASE
    WHEN CAST(body AS TEXT) LIKE '%mode: enforce%' THEN 'enforce'
    WHEN CAST(body AS TEXT) LIKE '%mode: testing%' THEN 'testing'
    WHEN CAST(body AS TEXT) LIKE '%mode: none%' THEN 'none' END
WHERE policy_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_hold ON entries (hold_until);
"""
}

# Plain rowid tables and full indexes only: EL7 ships SQLite 3.7.17, which has neither
# WITHOUT ROWID (3.8.2) nor partial indexes (3.8.0). Every periodic query (due, prune) is an
# index range scan: nothing scans the table as it grows to a million rows.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    domain TEXT PRIMARY KEY,
    policy_id TEXT,
    body BLOB,
    fetched_at REAL,
    expires_at REAL,
    hold TEXT,
    hold_until REAL NOT NULL DEFAULT 0,
    txt_checked_at REAL NOT NULL DEFAULT 0,
    refresh_at REAL NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    dane TEXT,
    mode TEXT
);
CREATE INDEX IF NOT EXISTS entries_refresh ON entries (refresh_at);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_hold ON entries (hold_until);
"""

_OVERRIDES = """
CREATE TABLE IF NOT EXISTS overrides (domain TEXT PRIMARY KEY, data TEXT NOT NULL, until REAL);
CREATE TABLE IF NOT EXISTS history (domain TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, downgrade INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS history_domain ON history (domain, at);
"""

_COLUMNS = (
    "domain, policy_id, body, fetched_at, expires_at, hold, hold_until, txt_checked_at, refresh_at, failures,"
    " last_error, dane, mode"
)


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        _check_writable(path)
        try:
            self._db = self._open(path)
        except sqlite3.OperationalError as exc:
            # Locked, full, unreadable: a fault of the surroundings, not of the file's content.
            raise StoreError(f"{path}: cannot open the cache: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if not os.path.exists(path):
                raise StoreError(f"{path}: cannot open the cache: {exc}") from None
            aside = f"{path}.corrupt"
            log.error("cache %s is damaged (%s); moved to %s, starting empty", path, exc, aside)
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.replace(path + suffix, aside + suffix)
            self._db = self._open(path)

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a committed write survives a killed process (kill -9).
            db.execute("PRAGMA synchronous = NORMAL")
            version = _schema_version(db)
            if version is None:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version in _MIGRATIONS:
                db.executescript(_MIGRATIONS[version])
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version != SCHEMA_VERSION:
                raise StoreError(f"{path}: cache schema version {version}, this mtasts reads version {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM entries WHERE domain = ''").fetchone()
            # Exemptions (mtasts override): a table of its own, added to any version's file.
            db.executescript(_OVERRIDES)
            if version is not None:
                # A damaged page in the middle would fail lookups one by one: check every page
                # once at start (0.5 s for a million entries) and start empty instead.
                problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("quick_check: " + "; ".join(problems))
        except Exception:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def get(self, domain: str) -> Optional[CacheEntry]:
        try:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM entries WHERE domain = ?", (domain,)).fetchone()
            return _entry(row) if row else None
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"{self.path}: undecodable row for {domain}: {exc!r}") from exc

    def put(self, entry: CacheEntry) -> None:
        cached = entry.cached
        row = (
            entry.domain,
            cached.policy_id if cached else None,
            cached.body if cached else None,
            cached.fetched_at if cached else None,
            cached.expires_at if cached else None,
            entry.hold.value if entry.hold else None,
            entry.hold_until,
            entry.txt_checked_at,
            entry.refresh_at,
            entry.failures,
            entry.last_error,
            json.dumps(result_to_json(entry.dane)) if entry.dane else None,
            cached.policy.mode.value if cached else None,
        )
        try:
            self._db.execute(f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from exc

    def overrides(self) -> List[Override]:
        with _errors(self.path, "read"):
            rows = self._db.execute("SELECT data FROM overrides ORDER BY domain").fetchall()
        out = []
        for (data,) in rows:
            try:
                out.append(override_from_json(json.loads(data)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("cache %s: undecodable override left out: %r", self.path, exc)
        return out

    def put_override(self, override: Override) -> None:
        with _errors(self.path, "write"):
            self._db.execute(
                "INSERT OR REPLACE INTO overrides VALUES (?, ?, ?)",
                (override.domain, json.dumps(override_to_json(override)), override.until),
            )

    def delete_override(self, domain: str) -> bool:
        with _errors(self.path, "delete"):
            return self._db.execute("DELETE FROM overrides WHERE domain = ?", (domain,)).rowcount > 0

    def add_changes(self, changes: List[Change], keep: int) -> None:
        """Record *changes* (of one domain); keep the newest *keep* of that domain."""
        if not changes:
            return
        with _errors(self.path, "write"):
            self._db.executemany(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                [(c.domain, c.at, c.kind, c.old, c.new, int(c.downgrade)) for c in changes],
            )
            self._db.execute(
                "DELETE FROM history WHERE domain = ? AND rowid NOT IN"
                " (SELECT rowid FROM history WHERE domain = ? ORDER BY at DESC, rowid DESC LIMIT ?)",
                (changes[0].domain, changes[0].domain, keep),
            )

    def history(self, domain: str) -> List[Change]:
        with _errors(self.path, "read"):
            rows = self._db.execute(
                "SELECT domain, at, kind, old, new, downgrade FROM history WHERE domain = ? ORDER BY at, rowid",
                (domain,),
            ).fetchall()
        return [Change(d, at, kind, old, new, bool(down)) for d, at, kind, old, new, down in rows]

    def delete(self, domain: str) -> bool:
        with _errors(self.path, "delete"):
            return self._db.execute("DELETE FROM entries WHERE domain = ?", (domain,)).rowcount > 0

    def delete_all(self) -> int:
        with _errors(self.path, "delete"):
            return self._db.execute("DELETE FROM entries").rowcount

    def entries(self) -> Iterator[CacheEntry]:
        """Every entry by domain; a row that cannot be decoded is logged and left out."""
        with _errors(self.path, "scan"):
            for row in self._db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY domain"):
                try:
                    yield _entry(row)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    log.warning("cache %s: undecodable row for %r left out: %r", self.path, row[0], exc)

    def due(self, now: float, limit: int) -> List[str]:
        """Domains whose valid policy is due for a proactive refresh."""
        with _errors(self.path, "read"):
            rows = self._db.execute(
                "SELECT domain FROM entries WHERE policy_id IS NOT NULL AND refresh_at <= ? AND expires_at > ?"
                " ORDER BY refresh_at LIMIT ?",
                (now, now, limit),
            )
            return [r[0] for r in rows]

    def prune(self, before: float) -> int:
        """Forget entries with neither a valid policy nor a hold since *before*."""
        with _errors(self.path, "prune"):
            with_policy = self._db.execute(
                # "+hold_until": range-scan the expires_at index, not every policy's hold_until = 0.
                "DELETE FROM entries WHERE expires_at < ? AND +hold_until < ?",
                (before, before),
            ).rowcount
            without = self._db.execute(
                "DELETE FROM entries WHERE hold_until < ? AND expires_at IS NULL", (before,)
            ).rowcount
            return with_policy + without

    # The two full scans (0.2 s at a million rows) run on a connection of their own, so
    # callers can run them in a thread, off the event loop.

    def count(self) -> Tuple[int, int]:
        """(entries, entries with a policy)."""
        (row,) = self._scan("SELECT count(*), count(policy_id) FROM entries")
        return row[0], row[1]

    def policies_by_mode(self, now: float) -> Dict[str, int]:
        """Valid cached policies per mode ("unknown" for rows a v1 body did not tell)."""
        rows = self._scan(
            "SELECT coalesce(mode, 'unknown'), count(*) FROM entries"
            " WHERE policy_id IS NOT NULL AND expires_at > ? GROUP BY 1",
            (now,),
        )
        return dict(rows)

    def _scan(self, sql: str, args: tuple = ()) -> List[tuple]:
        with _errors(self.path, "scan"):
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return db.execute(sql, args).fetchall()
            finally:
                db.close()


@contextlib.contextmanager
def _errors(path: str, what: str):
    """sqlite3's errors as StoreError, naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {what} failed: {exc}") from exc


def _check_writable(path: str) -> None:
    """Refuse a cache this user cannot write (SQLite would fail each write, or hang in
    retries): the message names the file and the fix."""
    directory = os.path.dirname(path) or "."
    user = _user()
    try:
        read_only = bool(os.statvfs(path if os.path.exists(path) else directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise StoreError(f"{path}: on a read-only file system; fix: [cache] path on a writable one")
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
            st = os.stat(name)
            raise StoreError(
                f"{name}: not writable by {user} (owner uid {st.st_uid}, mode {st.st_mode & 0o777:04o});"
                f" fix: chown {user}: {path}* (or remove the files: the cache is rebuilt)"
            )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(
            f"{directory}: not writable by {user}, and SQLite needs to create files beside {path};"
            f" fix: chown {user}: {directory}"
        )


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"


def _schema_version(db: sqlite3.Connection) -> Optional[int]:
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else None


def _entry(row) -> CacheEntry:
    (
        domain,
        policy_id,
        body,
        fetched_at,
        _expires,
        hold,
        hold_until,
        txt_checked_at,
        refresh_at,
        failures,
        last_error,
        dane,
        _mode,
    ) = row
    cached = None
    if policy_id is not None:
        try:
            cached = CachedPolicy(parse_policy(bytes(body)), str(policy_id), _real(fetched_at))
        except PolicyError as exc:
            # Stored by an older, more lenient parser: forget it rather than apply it.
            log.warning("dropping cached policy of %s: %s", domain, exc)
    if not isinstance(failures, int):
        raise ValueError(f"failures {failures!r} is no whole number")
    entry = CacheEntry(
        domain=domain,
        cached=cached,
        hold=Hold(hold) if hold else None,
        hold_until=_real(hold_until),
        txt_checked_at=_real(txt_checked_at),
        refresh_at=_real(refresh_at),
        failures=failures,
        last_error=str(last_error),
        dane=_dane(domain, dane),
    )
    why = implausible(entry, domain, None)  # SQLite keeps any type in any column
    if why:
        raise ValueError(why)
    return entry


def _real(value: Any) -> float:
    """A REAL column's value; SQLite stores text there just as well (a damaged or edited file)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{str(value)[:40]!r} is no number")
    return float(value)


def _dane(domain: str, text: Optional[str]):
    if not text:
        return None
    try:
        return result_from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("dropping the stored DANE result of %s: %s", domain, exc)
        return None
