"""The SQLite tier and the two-tier PolicyCache."""

import sqlite3

import pytest

from mtasts.core.freshness import Hold, held, learned
from mtasts.core.policy import parse_policy
from mtasts.errors import StoreError
from mtasts.store.sqlite import SCHEMA_VERSION, SqliteStore
from mtasts.store.tiered import PolicyCache

BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n"
T0 = 1_800_000_000.0


def policy_entry(domain="example.com", now=T0):
    return learned(None, domain, parse_policy(BODY), "id1", now, 0.5)


def test_round_trip(tmp_path):
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    entry = policy_entry()
    store.put(entry)
    negative = held(None, "none.example", Hold.NO_RECORD, T0, 300, "nxdomain")
    store.put(negative)
    store.close()
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    assert store.get("example.com") == entry
    assert store.get("none.example") == negative
    assert store.get("missing.example") is None
    assert store.count() == (2, 1)
    assert [e.domain for e in store.entries()] == ["example.com", "none.example"]


def test_wal_mode(tmp_path):
    SqliteStore(str(tmp_path / "c.sqlite3"))
    db = sqlite3.connect(str(tmp_path / "c.sqlite3"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_newer_schema_refused(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


def test_corrupt_file_moved_aside(tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = SqliteStore(str(path))
    assert store.get("example.com") is None
    assert (tmp_path / "c.sqlite3.corrupt").read_bytes().startswith(b"this is not")


def test_due_and_prune(tmp_path):
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    entry = policy_entry()
    store.put(entry)
    store.put(held(None, "gone.example", Hold.NO_RECORD, T0 - 30 * 86400, 300))
    assert store.due(entry.refresh_at - 1, 10) == []
    assert store.due(entry.refresh_at, 10) == ["example.com"]
    assert store.due(entry.cached.expires_at, 10) == []  # expired: the next lookup rediscovers
    assert store.prune(T0 - 86400) == 1
    assert store.get("gone.example") is None and store.get("example.com") is not None


def test_unparseable_stored_policy_is_dropped(tmp_path):
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    store.put(policy_entry())
    store._db.execute("UPDATE entries SET body = ?", (b"<html>",))
    entry = store.get("example.com")
    assert entry is not None and entry.cached is None


def test_memory_tier_is_bounded_and_backed_by_store(tmp_path):
    cache = PolicyCache(memory_entries=10, store=SqliteStore(str(tmp_path / "c.sqlite3")))
    for i in range(50):
        cache.put(policy_entry(f"d{i}.example"))
    assert cache.memory_size == 10
    assert cache.get("d0.example") is not None  # evicted from memory, read from the store
    assert cache.store_hits == 1
    assert cache.get("d0.example") is not None and cache.memory_hits == 1
    assert cache.purge("d0.example") and cache.get("d0.example") is None
    assert cache.purge_all() == 49 and cache.memory_size == 0


def test_memory_only_backend():
    cache = PolicyCache(memory_entries=5)
    for i in range(8):
        cache.put(policy_entry(f"d{i}.example"))
    assert cache.memory_size == 5 and cache.get("d0.example") is None
    assert cache.count() == (5, 5)
    due = cache.due(T0 + 50000, 10)  # past refresh_at (about T0 + 41000), before expiry
    assert due == sorted(f"d{i}.example" for i in range(3, 8))


def dane_result():
    from mtasts.core.dane import DaneResult, DaneState, HostDane, HostState

    return DaneResult(
        DaneState.PARTIAL,
        T0,
        T0 + 300,
        (
            HostDane("mx1.example.com", HostState.USABLE, ("3 1 1 " + "ab" * 32,)),
            HostDane("mx2.example.com", HostState.NO_TLSA),
        ),
    )


def test_dane_result_round_trip_and_kept_across_relearning(tmp_path):
    import dataclasses

    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    entry = dataclasses.replace(policy_entry(), dane=dane_result())
    store.put(entry)
    store.close()
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    assert store.get("example.com") == entry
    relearned = learned(entry, "example.com", parse_policy(BODY), "id2", T0 + 10, 0.5)
    assert relearned.dane == entry.dane
    assert held(entry, "example.com", Hold.DNS_FAILURE, T0 + 10, 60).dane == entry.dane


def test_version_1_file_upgraded_in_place(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE entries (domain TEXT PRIMARY KEY, policy_id TEXT, body BLOB, fetched_at REAL,
            expires_at REAL, hold TEXT, hold_until REAL NOT NULL DEFAULT 0,
            txt_checked_at REAL NOT NULL DEFAULT 0, refresh_at REAL NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
    """)
    db.execute(
        "INSERT INTO entries (domain, policy_id, body, fetched_at, expires_at, refresh_at)"
        " VALUES ('example.com', 'id1', ?, ?, ?, ?)",
        (BODY, T0, T0 + 86400, T0 + 43200),
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    old = store.get("example.com")
    assert old.cached.policy_id == "id1" and old.dane is None
    store.put(__import__("dataclasses").replace(old, dane=dane_result()))
    assert store.get("example.com").dane == dane_result()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert db.execute("SELECT mode FROM entries").fetchone()[0] == "enforce"  # read from the v1 body


def test_unreadable_dane_column_is_dropped_not_fatal(tmp_path):
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    store.put(policy_entry())
    store._db.execute('UPDATE entries SET dane = \'{"state": "bogus"}\'')
    assert store.get("example.com").dane is None
    assert store.get("example.com").cached is not None


@pytest.mark.parametrize(
    "column,value",
    [("hold_until", "soon"), ("fetched_at", "yesterday"), ("failures", 1.5), ("refresh_at", float("inf"))],
)
def test_a_row_with_the_wrong_kind_of_value_is_a_miss_and_removed(tmp_path, column, value):
    # Issue 24, 9: text in a REAL column made every lookup TEMP, and the row stayed.
    store = SqliteStore(str(tmp_path / "c.sqlite3"))
    store.put(policy_entry())
    store._db.execute(f"UPDATE entries SET {column} = ?", (value,))
    with pytest.raises(StoreError, match="undecodable row"):
        store.get("example.com")
    cache = PolicyCache(10, store)
    assert cache.get("example.com") is None  # a miss: the lookup discovers again
    assert store._db.execute("SELECT count(*) FROM entries").fetchone() == (0,)
