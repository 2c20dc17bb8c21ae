"""TLSRPT reports POSTed to the policy host (RFC 8460 §3, §5.4): ``rua=https://mta-sts.D/tlsrpt``.

The policy host is public, so everything is bounded before it costs anything: the body
(``[reports] max_body``, refused from Content-Length before it is read), the JSON inside a
gzip (``core.tlsreport.unpack``), the time to send it, and the POSTs per client per hour.
Unpacking, parsing and store writes run on one worker thread, never on the event loop.
Answers: 201 stored, 200 a report already stored (senders retry), 400 unreadable (with the
reason, not stored: anyone can POST), 403 a report about none of the published domains,
413/415/429 for size, type and rate (per client, and the store's reports per day), 503 when
the local store fails or is at its size limit (the sender retries, §5.5). (SQLite may also
wait there for a lock held by ``reports ingest``.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Dict, List, Optional, Tuple

from aiohttp import web

from mtasts.config import Config
from mtasts.core.remotetext import printable
from mtasts.core.tlsreport import MAX_REPORT_BYTES, Reading, read_received
from mtasts.errors import StoreError
from mtasts.logs import RateLimitedLog
from mtasts.store.reports import IntakeLimits, ReportStore

log = logging.getLogger("mtasts.reports")

# RFC 8460 §5.4's types, and the generic ones some senders use.
ACCEPTED_TYPES = frozenset(
    {"application/tlsrpt+gzip", "application/tlsrpt+json", "application/gzip", "application/json"}
)
BODY_TIMEOUT = 30.0
HOUR = 3600.0
PRUNE_EVERY = HOUR
MAX_TRACKED_CLIENTS = 100000


class ReportSink:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Optional[ReportStore] = None  # opened at the first report: no report, no file
        # One thread for the store: one SQLite connection, never used by two threads at once.
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtasts-reports")
        self._clients: Dict[str, Tuple[float, int]] = {}  # client -> (window start, POSTs in it)
        self._pruned = 0.0
        self._log = RateLimitedLog(log)
        self.counts: Dict[str, int] = {}  # outcome -> reports (for metrics and tests)

    def reload(self, config: Config) -> None:
        self.config = config

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def _allowed(self, client: str, now: float) -> bool:
        start, used = self._clients.get(client, (now, 0))
        if now - start >= HOUR:
            start, used = now, 0
        if used >= self.config.reports.per_client_per_hour:
            return False
        if len(self._clients) >= MAX_TRACKED_CLIENTS:
            self._clients = {c: w for c, w in self._clients.items() if now - w[0] < HOUR}
        self._clients[client] = (start, used + 1)
        return True

    async def handle(self, request: web.BaseRequest, client: str) -> web.Response:
        if request.method != "POST":
            return web.Response(
                status=405, text="POST a TLSRPT report here (RFC 8460 §5.4)\n", headers={"Allow": "POST"}
            )
        if request.content_type not in ACCEPTED_TYPES:
            self._count("refused")
            return web.Response(status=415, text="expected application/tlsrpt+gzip or application/tlsrpt+json\n")
        limit = self.config.reports.max_body
        if request.content_length is not None and request.content_length > limit:
            self._count("refused")
            return web.Response(status=413, text=f"a report body is at most {limit} bytes here\n")
        now = time.monotonic()
        if not self._allowed(client, now):
            self._count("refused")
            return web.Response(
                status=429, text="too many reports from this address; try later\n", headers={"Retry-After": "3600"}
            )
        try:
            body = await asyncio.wait_for(_read_at_most(request, limit), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            self._count("refused")
            return web.Response(status=408, text="the report took too long to send\n")
        if body is None:
            self._count("refused")
            return web.Response(status=413, text=f"a report body is at most {limit} bytes here\n")
        # Unpacking and parsing (up to 4 MiB of JSON) on the worker thread: not on the loop
        # that serves the policies.
        loop = asyncio.get_running_loop()
        reading = await loop.run_in_executor(
            self._writer, read_received, body, frozenset(self.config.publish.domains), "", MAX_REPORT_BYTES
        )
        if reading.report is None:
            self._count("unreadable")
            self._log.warning("TLSRPT report from %s refused: %s", client, printable(reading.error))
            return web.Response(status=400, text=f"not a TLSRPT report: {reading.error}\n")
        if reading.foreign:
            self._count("foreign")
            return web.Response(
                status=403, text=f"no domain of this report ({', '.join(reading.report.domains)}) is published here\n"
            )
        try:
            outcome, report_id = await loop.run_in_executor(
                self._writer, self._store_reading, reading, f"https from {client}"
            )
        except StoreError as exc:
            self._count("store_error")
            self._log.error("TLSRPT report from %s not stored: %s", client, exc)
            return web.Response(
                status=503, text="cannot store the report now; try again later\n", headers={"Retry-After": "600"}
            )
        if outcome == "over-quota":
            self._count("refused")
            self._log.warning(
                "TLSRPT report from %s refused: %d reports already received today ([reports] max_per_day)",
                client,
                self.config.reports.max_per_day,
            )
            wait = int(86400 - time.time() % 86400) + 1
            return web.Response(
                status=429, text="no more reports today; try tomorrow\n", headers={"Retry-After": str(wait)}
            )
        if outcome == "store-full":
            self._count("store_error")
            self._log.error(
                "TLSRPT report from %s refused: the report store %s is at its size limit of %d bytes"
                " ([reports] max_store_bytes; lower retention_days or raise the limit)",
                client,
                self.config.reports_path,
                self.config.reports.max_store_bytes,
            )
            return web.Response(
                status=503, text="cannot store the report now; try again later\n", headers={"Retry-After": "3600"}
            )
        self._count(outcome)
        log.info(
            "TLSRPT report %s from %s (%s) about %s: %s",
            report_id,
            reading.report.organization or "?",
            client,
            ", ".join(reading.ours),
            outcome,
        )  # the report's fields are printable (core.tlsreport)
        return web.Response(status=201 if outcome == "stored" else 200, text=f"{outcome}: {report_id}\n")

    def _store_reading(self, reading: Reading, source: str) -> Tuple[str, str]:
        if self._store is None:
            self._store = ReportStore(self.config.reports_path)
        limits = IntakeLimits(self.config.reports.max_per_day, self.config.reports.max_store_bytes)
        outcome = self._store.receive(reading, source, keep_broken=False, limits=limits)
        if time.monotonic() - self._pruned >= PRUNE_EVERY:
            self._pruned = time.monotonic()
            self._store.prune(time.time() - self.config.reports.retention_days * 86400.0)
        return outcome

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None


async def _read_at_most(request: web.BaseRequest, limit: int) -> Optional[bytes]:
    """The body, or None once it passes *limit* bytes (chunked bodies have no length up front)."""
    chunks: List[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
