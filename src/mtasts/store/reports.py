"""Received TLSRPT reports: one SQLite file of their own (``[reports] path``).

A report is stored once (its report-id is the key: senders resend, RFC 8460 §5.5), with the
raw JSON (compressed) for ``reports show``, and flattened into per-domain results and
failures for the summaries. A report that cannot be read is kept too, as "broken" with the
reason and its first bytes, so the owner sees that a sender tried. Old reports are pruned
after ``retention_days``. Written by the publisher (HTTPS) and by ``reports ingest`` (mail),
read by the CLI and the dashboard: WAL and a busy timeout let them share the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from mtasts.core.tlsreport import Reading, Report
from mtasts.errors import StoreError

# What a broken report keeps of its body: enough to see what a sender sent.
BROKEN_KEEP = 64 * 1024
DAY = 86400.0


@dataclass(frozen=True)
class IntakeLimits:
    """How much the store takes in: reports (broken ones too) received per UTC day, and the
    size of its file at which new reports are refused (``[reports] max_per_day`` and
    ``max_store_bytes``). Anyone can send a report; these bound what that costs the disk."""

    per_day: int = 10000
    store_bytes: int = 1024**3


_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY, received REAL NOT NULL, source TEXT NOT NULL,
    organization TEXT NOT NULL, contact TEXT NOT NULL, start REAL, end REAL,
    status TEXT NOT NULL, reason TEXT NOT NULL, deviations TEXT NOT NULL, raw BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS reports_received ON reports(received);
CREATE TABLE IF NOT EXISTS results (
    report_id TEXT NOT NULL, policy_index INTEGER NOT NULL, policy_domain TEXT NOT NULL, policy_type TEXT NOT NULL, day TEXT NOT NULL,
    successful INTEGER NOT NULL, failed INTEGER NOT NULL, policy_strings TEXT NOT NULL, mx_hosts TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS results_domain_day ON results(policy_domain, day);
CREATE INDEX IF NOT EXISTS results_report ON results(report_id);
CREATE TABLE IF NOT EXISTS failures (
    report_id TEXT NOT NULL, policy_index INTEGER NOT NULL, policy_domain TEXT NOT NULL, day TEXT NOT NULL, result_type TEXT NOT NULL,
    sessions INTEGER NOT NULL, receiving_mx TEXT NOT NULL, sending_ip TEXT NOT NULL, receiving_ip TEXT NOT NULL,
    reason_code TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS failures_domain_day ON failures(policy_domain, day);
CREATE INDEX IF NOT EXISTS failures_report ON failures(report_id);
"""


def day_of(moment: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(moment))


@dataclass(frozen=True)
class DaySummary:
    domain: str
    day: str
    successful: int
    failed: int
    failures: Dict[str, int]  # result-type -> sessions
    reporters: Tuple[str, ...]
    mx_hosts: Tuple[str, ...]  # MX hosts named in failures

    @property
    def success_rate(self) -> Optional[float]:
        total = self.successful + self.failed
        return self.successful / total if total else None


class ReportStore:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, mode=0o750, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open the report store: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _write(self, statements: List[Tuple[str, tuple]]) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot store the report: {exc}") from None

    def _exists(self, report_id: str) -> bool:
        try:
            return self._db.execute("SELECT 1 FROM reports WHERE report_id = ?", (report_id,)).fetchone() is not None
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the report store: {exc}") from None

    def add(self, report: Report, raw: bytes, source: str, received: Optional[float] = None) -> bool:
        """Store *report* (its JSON *raw*); False when its report-id is already stored."""
        if self._exists(report.report_id):
            return False
        received = time.time() if received is None else received
        day = day_of(report.start)
        statements: List[Tuple[str, tuple]] = [
            (
                "INSERT OR IGNORE INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, 'ok', '', ?, ?)",
                (
                    report.report_id,
                    received,
                    source,
                    report.organization,
                    report.contact,
                    report.start,
                    report.end,
                    json.dumps(list(report.deviations)),
                    zlib.compress(raw),
                ),
            )
        ]
        # policy_index: a report may hold an sts and a tlsa policy for one domain; a failure
        # belongs to the policy it was listed under.
        for index, policy in enumerate(report.policies):
            statements.append(
                (
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        report.report_id,
                        index,
                        policy.policy_domain,
                        policy.policy_type,
                        day,
                        policy.successful,
                        policy.failed,
                        json.dumps(list(policy.policy_strings)),
                        json.dumps(list(policy.mx_hosts)),
                    ),
                )
            )
            for f in policy.failures:
                statements.append(
                    (
                        "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            report.report_id,
                            index,
                            policy.policy_domain,
                            day,
                            f.result_type,
                            f.failed_sessions,
                            f.receiving_mx_hostname,
                            f.sending_mta_ip,
                            f.receiving_ip,
                            f.failure_reason_code,
                        ),
                    )
                )
        self._write(statements)
        return True

    def add_broken(self, body: bytes, reason: str, source: str, received: Optional[float] = None) -> Tuple[str, bool]:
        """Keep an unreadable report (its first bytes and why); (its id, False if already kept)."""
        report_id = "broken:" + hashlib.sha256(body).hexdigest()[:32]
        if self._exists(report_id):
            return report_id, False
        received = time.time() if received is None else received
        self._write(
            [
                (
                    "INSERT OR IGNORE INTO reports VALUES (?, ?, ?, '', '', NULL, NULL, 'broken', ?, '[]', ?)",
                    (report_id, received, source, reason[:500], zlib.compress(body[:BROKEN_KEEP])),
                )
            ]
        )
        return report_id, True

    def receive(
        self,
        reading: Reading,
        source: str,
        keep_broken: bool = True,
        limits: IntakeLimits = IntakeLimits(),
        now: Optional[float] = None,
    ) -> Tuple[str, str]:
        """Store what *reading* holds: ("stored" | "duplicate" | "broken" | "foreign" |
        "over-quota" | "store-full", report id). Within *limits* only: past the day's count
        nothing more is kept that day, and a store at its size limit keeps nothing new."""
        if reading.foreign:
            return "foreign", reading.report.report_id if reading.report else ""
        refused = self.refusal(limits, time.time() if now is None else now)
        if reading.report is None:
            if not keep_broken:
                return "broken", ""
            if refused:
                return refused, ""
            report_id, _ = self.add_broken(reading.data, reading.error, source)
            return "broken", report_id
        if self._exists(reading.report.report_id):
            return "duplicate", reading.report.report_id
        if refused:
            return refused, reading.report.report_id
        stored = self.add(reading.report, reading.data, source)
        return ("stored" if stored else "duplicate"), reading.report.report_id

    def refusal(self, limits: IntakeLimits, now: float) -> str:
        """ "store-full" or "over-quota" when *limits* refuse a new report now, else ""."""
        if self.size() >= limits.store_bytes:
            return "store-full"
        midnight = now - now % DAY
        (today,) = self._rows("SELECT count(*) FROM reports WHERE received >= ?", (midnight,))[0]
        return "over-quota" if today >= limits.per_day else ""

    def size(self) -> int:
        """Bytes the store takes on disk: the file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return total

    def prune(self, before: float) -> int:
        """Forget reports received before *before*; how many went."""
        try:
            old = [r[0] for r in self._db.execute("SELECT report_id FROM reports WHERE received < ?", (before,))]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the report store: {exc}") from None
        statements: List[Tuple[str, tuple]] = []
        for report_id in old:
            for table in ("failures", "results", "reports"):
                statements.append((f"DELETE FROM {table} WHERE report_id = ?", (report_id,)))
        if statements:
            self._write(statements)
        return len(old)

    # -- views --------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple) -> List[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the report store: {exc}") from None

    def reports(self, since: float, domain: str = "") -> List[Dict[str, Any]]:
        """Reports received since *since*, newest first, with their totals."""
        rows = self._rows(
            "SELECT r.report_id, r.received, r.source, r.organization, r.start, r.end, r.status, r.reason,"
            " group_concat(DISTINCT s.policy_domain), total(s.successful), total(s.failed)"
            " FROM reports r LEFT JOIN results s ON s.report_id = r.report_id"
            " WHERE r.received >= ? GROUP BY r.report_id ORDER BY r.received DESC",
            (since,),
        )
        out = []
        for rid, received, source, org, start, end, status, reason, domains, ok, failed in rows:
            names = sorted((domains or "").split(",")) if domains else []
            if domain and domain not in names:
                continue
            out.append(
                {
                    "report_id": rid,
                    "received": received,
                    "source": source,
                    "organization": org,
                    "start": start,
                    "end": end,
                    "status": status,
                    "reason": reason,
                    "domains": names,
                    "successful": int(ok),
                    "failed": int(failed),
                }
            )
        return out

    def deviation_counts(self, since: float) -> Dict[str, int]:
        """Each deviation from RFC 8460 accepted in reports received since *since*: in how many."""
        counts: Dict[str, int] = {}
        for (deviations,) in self._rows(
            "SELECT deviations FROM reports WHERE received >= ? AND deviations != '[]'", (since,)
        ):
            for deviation in json.loads(deviations):
                counts[deviation] = counts.get(deviation, 0) + 1
        return counts

    def status_counts(self) -> Dict[Tuple[str, str], int]:
        """(status, "https" | "mail") -> reports kept."""
        counts: Dict[Tuple[str, str], int] = {}
        for status, source, count in self._rows(
            "SELECT status, source, count(*) FROM reports GROUP BY status, source", ()
        ):
            via = "https" if source.startswith("https") else "mail"
            counts[(status, via)] = counts.get((status, via), 0) + count
        return counts

    def report(self, report_id: str) -> Optional[Dict[str, Any]]:
        rows = self._rows(
            "SELECT report_id, received, source, organization, contact, start, end, status, reason,"
            " deviations, raw FROM reports WHERE report_id = ?",
            (report_id,),
        )
        if not rows:
            return None
        rid, received, source, org, contact, start, end, status, reason, deviations, raw = rows[0]
        return {
            "report_id": rid,
            "received": received,
            "source": source,
            "organization": org,
            "contact": contact,
            "start": start,
            "end": end,
            "status": status,
            "reason": reason,
            "deviations": json.loads(deviations),
            "raw": zlib.decompress(raw).decode("utf-8", "replace"),
        }

    def summary(self, since_day: str, domain: str = "") -> List[DaySummary]:
        """Per policy domain and day (the day a report's range starts), oldest first."""
        where, args = _day_filter("s", since_day, domain)
        totals = self._rows(
            f"SELECT s.policy_domain, s.day, total(s.successful), total(s.failed) FROM results s {where}"
            " GROUP BY s.policy_domain, s.day ORDER BY s.day, s.policy_domain",
            args,
        )
        reporters: Dict[Tuple[str, str], set] = {}
        for d, day, org in self._rows(  # one row each: an organisation's name may hold commas
            "SELECT DISTINCT s.policy_domain, s.day, r.organization FROM results s"
            f" JOIN reports r ON r.report_id = s.report_id {where}",
            args,
        ):
            if org:
                reporters.setdefault((d, day), set()).add(org)
        where_f, args_f = _day_filter("f", since_day, domain)
        failures: Dict[Tuple[str, str], Dict[str, int]] = {}
        hosts: Dict[Tuple[str, str], set] = {}
        for d, day, kind, sessions in self._rows(
            f"SELECT f.policy_domain, f.day, f.result_type, total(f.sessions) FROM failures f {where_f}"
            " GROUP BY f.policy_domain, f.day, f.result_type",
            args_f,
        ):
            failures.setdefault((d, day), {})[kind] = int(sessions)
        for d, day, mx in self._rows(
            f"SELECT DISTINCT f.policy_domain, f.day, f.receiving_mx FROM failures f {where_f}", args_f
        ):
            if mx:
                hosts.setdefault((d, day), set()).add(mx)
        return [
            DaySummary(
                d,
                day,
                int(ok),
                int(failed),
                failures.get((d, day), {}),
                tuple(sorted(reporters.get((d, day), ()))),
                tuple(sorted(hosts.get((d, day), ()))),
            )
            for d, day, ok, failed in totals
        ]

    def failures(self, since_day: str, domain: str = "", limit: int = 50) -> List[Dict[str, Any]]:
        """The latest failure details with the policy the reporter applied, newest first."""
        where, args = _day_filter("f", since_day, domain)
        return self._failures(where, args, limit)

    def report_failures(self, report_id: str) -> List[Dict[str, Any]]:
        """Every failure detail of one report (index failures_report), as ``failures`` gives them."""
        return self._failures("WHERE f.report_id = ?", (report_id,), -1)

    def _failures(self, where: str, args: tuple, limit: int) -> List[Dict[str, Any]]:
        rows = self._rows(
            "SELECT f.report_id, f.policy_domain, f.day, f.result_type, f.sessions, f.receiving_mx, f.sending_ip,"
            " f.receiving_ip, f.reason_code, r.organization, s.policy_type, s.policy_strings, s.mx_hosts"
            " FROM failures f JOIN reports r ON r.report_id = f.report_id"
            " LEFT JOIN results s ON s.report_id = f.report_id AND s.policy_index = f.policy_index"
            f" {where} ORDER BY f.day DESC, r.received DESC LIMIT ?",
            args + (limit,),
        )
        return [
            {
                "report_id": r[0],
                "domain": r[1],
                "day": r[2],
                "result_type": r[3],
                "sessions": r[4],
                "receiving_mx": r[5],
                "sending_ip": r[6],
                "receiving_ip": r[7],
                "reason_code": r[8],
                "organization": r[9],
                "policy_type": r[10] or "",
                "policy_strings": json.loads(r[11]) if r[11] else [],
                "mx_hosts": json.loads(r[12]) if r[12] else [],
            }
            for r in rows
        ]


def _day_filter(table: str, since_day: str, domain: str) -> Tuple[str, tuple]:
    """The WHERE clause (and its values) for rows of *table* from *since_day* on, of *domain* if given."""
    if domain:
        return f"WHERE {table}.day >= ? AND {table}.policy_domain = ?", (since_day, domain)
    return f"WHERE {table}.day >= ?", (since_day,)
