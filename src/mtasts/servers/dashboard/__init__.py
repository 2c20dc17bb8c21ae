"""The reports dashboard: read-only pages on an admin listener ([reports] listen, loopback).

``/`` the per-domain success rate over time (an SVG chart), the latest failures with their
advice and the reports received (``?since=30d&domain=D``); ``/report/ID`` one report with its
JSON; ``/metrics`` the reports in Prometheus' text format. It runs beside the publisher and
never on the publisher's public sockets. Pages carry a Content-Security-Policy without any
script source: a report's text is the sender's, and the pages escape it besides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from mtasts.config import Config
from mtasts.core.override import parse_since
from mtasts.servers.dashboard.pages import message_page, overview_page, report_page
from mtasts.servers.dashboard.reportviews import advised, report_summary
from mtasts.store.reports import ReportStore, day_of

log = logging.getLogger("mtasts.dashboard")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
METRICS_DAYS = 7  # the sessions gauges cover the reports of this many days


class ReportsDashboard:
    def __init__(self, config: Config, host: str, port: int, https_counts: Callable[[], Dict[str, int]] = dict) -> None:
        self.config = config
        self.host, self.port = host, port
        self._https_counts = https_counts
        self._runner: Any = None
        self._store: Any = None
        self._reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtasts-dashboard")

    def reload(self, config: Config) -> None:
        self.config = config

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/", self._overview)
        app.router.add_get("/report/{report_id}", self._report)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        log.info("reports dashboard on http://%s:%d/", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._reader.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _read(self, work: Callable[[Any], Any]) -> Any:
        """Run *work(store)* on the dashboard's one reader thread (SQLite may wait for a lock)."""

        def run() -> Any:
            if self._store is None:
                self._store = ReportStore(self.config.reports_path)
            return work(self._store)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    def _page(self, text: str, status: int = 200):
        from aiohttp import web

        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)

    async def _overview(self, request):

        since_text = request.query.get("since", "30d")
        try:
            since = parse_since(since_text, time.time())
        except ValueError as exc:
            return self._page(message_page(f"since: {exc}"), status=400)
        domain = request.query.get("domain", "").lower().rstrip(".")

        def gather(store) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
            return report_summary(self.config, store, since, domain), store.reports(since, domain)[:200]

        data, reports = await self._read(gather)
        return self._page(overview_page(data, reports, since_text))

    async def _report(self, request):

        report_id = request.match_info["report_id"]

        def gather(store) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]:
            report = store.report(report_id)
            return report, store.report_failures(report_id)

        report, failures = await self._read(gather)
        if report is None:
            return self._page(message_page(f"no report {report_id}"), status=404)
        return self._page(report_page(report, advised(self.config, failures)))

    async def _metrics(self, _request):
        from aiohttp import web

        since_day = day_of(time.time() - METRICS_DAYS * 86400)
        days, statuses = await self._read(lambda store: (store.summary(since_day), store.status_counts()))
        text = metrics_text(days, statuses, self._https_counts())
        return web.Response(
            text=text, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"}
        )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(days, statuses: Dict[Tuple[str, str], int], https_counts: Dict[str, int]) -> str:
    """Prometheus text exposition of the reports (a sender's strings only as escaped label values)."""
    lines = [
        "# HELP mtasts_tlsrpt_sessions TLS sessions reported for a published domain in the last 7 days of reports.",
        "# TYPE mtasts_tlsrpt_sessions gauge",
    ]
    sessions: Dict[Tuple[str, str], int] = {}
    failures: Dict[Tuple[str, str], int] = {}
    for d in days:
        sessions[(d.domain, "successful")] = sessions.get((d.domain, "successful"), 0) + d.successful
        sessions[(d.domain, "failed")] = sessions.get((d.domain, "failed"), 0) + d.failed
        for kind, count in d.failures.items():
            failures[(d.domain, kind)] = failures.get((d.domain, kind), 0) + count
    for (domain, result), count in sorted(sessions.items()):
        lines.append(f'mtasts_tlsrpt_sessions{{policy_domain="{_label(domain)}",result="{result}"}} {count}')
    lines += [
        "# HELP mtasts_tlsrpt_failed_sessions Failed sessions by result type in the last 7 days of reports.",
        "# TYPE mtasts_tlsrpt_failed_sessions gauge",
    ]
    for (domain, kind), count in sorted(failures.items()):
        lines.append(
            f'mtasts_tlsrpt_failed_sessions{{policy_domain="{_label(domain)}",result_type="{_label(kind)}"}} {count}'
        )
    lines += [
        "# HELP mtasts_tlsrpt_reports Reports kept in the store, by status and how they came.",
        "# TYPE mtasts_tlsrpt_reports gauge",
    ]
    for (status, via), count in sorted(statuses.items()):
        lines.append(f'mtasts_tlsrpt_reports{{status="{_label(status)}",via="{_label(via)}"}} {count}')
    lines += [
        "# HELP mtasts_tlsrpt_https_reports_total Reports POSTed to this publisher since it started, by outcome.",
        "# TYPE mtasts_tlsrpt_https_reports_total counter",
    ]
    for outcome in ("stored", "duplicate", "unreadable", "foreign", "refused", "store_error"):
        lines.append(f'mtasts_tlsrpt_https_reports_total{{outcome="{outcome}"}} {https_counts.get(outcome, 0)}')
    return "\n".join(lines) + "\n"
