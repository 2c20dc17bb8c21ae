"""The reports dashboard's pages: HTML with an inline SVG chart, no script.

Pure: the summary data (``reportviews.report_summary``) and stored reports in, HTML out.
Everything a report says is a sender's text, so every value is escaped, and the server
sends a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any, Dict, List, Sequence
from urllib.parse import quote

from mtasts.servers.jsonviews import iso_time

CHART_WIDTH = 640
CHART_HEIGHT = 180
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d1d1f; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .25em .75em; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } th { background: #f4f4f6; }
.num { text-align: right; font-variant-numeric: tabular-nums; } .bad { color: #b3261e; } .ok { color: #1b6e2d; }
.advice { color: #444; margin: .2em 0 0 1em; } pre { background: #f6f8fa; padding: 1em; overflow: auto; }
svg { background: #fbfbfd; border: 1px solid #ddd; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def success_chart(domain: str, days: Sequence[Dict[str, Any]]) -> str:
    """Success rate per day as an SVG polyline with dots. The scale starts below the worst day
    (by three times its failure share, at most at 0 %): 99.7 % and 100 % must look different."""
    points = [(d["day"], d["success_rate"]) for d in days if d["success_rate"] is not None]
    left, top, bottom = 56, 12, 28
    inner_w, inner_h = CHART_WIDTH - left - 12, CHART_HEIGHT - top - bottom
    worst = min((rate for _, rate in points), default=0.0)
    low = min(max(0.0, math.floor((worst - 3 * (1 - worst)) * 100) / 100), 0.99)
    parts = [
        f'<svg role="img" aria-label="{_e(domain)}: sessions without TLS failure per day" '
        f'width="{CHART_WIDTH}" height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'
    ]

    def y_of(rate: float) -> float:
        return top + inner_h * (1 - (rate - low) / (1 - low))

    for rate in (low, (low + 1) / 2, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{y_of(rate):.1f}" y2="{y_of(rate):.1f}"'
            f' stroke="#ddd"/><text x="{left - 6}" y="{y_of(rate) + 4:.1f}" font-size="11"'
            f' text-anchor="end">{rate:.1%}</text>'
        )
    if points:
        step = inner_w / max(len(points) - 1, 1)
        coords = [
            (left + (i * step if len(points) > 1 else inner_w / 2), y_of(rate)) for i, (_, rate) in enumerate(points)
        ]
        parts.append(
            '<polyline fill="none" stroke="#1a73e8" stroke-width="2" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            + '"/>'
        )
        for (day, rate), (x, y) in zip(points, coords):
            color = "#1b6e2d" if rate >= 0.999 else "#b3261e"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{_e(day)}: {rate:.2%}</title></circle>'
            )
        parts.append(
            f'<text x="{left}" y="{CHART_HEIGHT - 8}" font-size="11">{_e(points[0][0])}</text>'
            f'<text x="{left + inner_w}" y="{CHART_HEIGHT - 8}" font-size="11" text-anchor="end">'
            f"{_e(points[-1][0])}</text>"
        )
    else:
        parts.append(
            f'<text x="{CHART_WIDTH / 2}" y="{CHART_HEIGHT / 2}" text-anchor="middle">no sessions reported</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def overview_page(data: Dict[str, Any], reports: List[Dict[str, Any]], since: str) -> str:
    by_domain: Dict[str, List[Dict[str, Any]]] = {}
    for day in data["days"]:
        by_domain.setdefault(day["domain"], []).append(day)
    body = [f"<h1>TLSRPT reports since {_e(since)}</h1>"]
    if not by_domain:
        body.append("<p>No reports in this period.</p>")
    for domain, days in sorted(by_domain.items()):
        ok = sum(d["successful"] for d in days)
        failed = sum(d["failed"] for d in days)
        rate = f"{ok / (ok + failed):.2%}" if ok + failed else "-"
        body.append(
            f'<section id="domain-{_e(domain)}"><h2>{_e(domain)}</h2>'
            f'<p><span class="num ok">{ok}</span> sessions without TLS failure, '
            f'<span class="num bad">{failed}</span> failed: <strong class="rate">{_e(rate)}</strong></p>'
        )
        body.append(success_chart(domain, days))
        body.append(
            "<table><tr><th>day</th><th class=num>ok</th><th class=num>failed</th><th>failures</th>"
            "<th>reporters</th></tr>"
        )
        for d in reversed(days):
            failures = ", ".join(f"{_e(k)}: {v}" for k, v in sorted(d["failures"].items(), key=lambda kv: -kv[1]))
            body.append(
                f"<tr><td>{_e(d['day'])}</td><td class=num>{d['successful']}</td>"
                f"<td class=num>{d['failed']}</td><td>{failures or '-'}</td>"
                f"<td>{_e(', '.join(d['reporters']) or '-')}</td></tr>"
            )
        body.append("</table></section>")
    body.append("<h2>Latest failures</h2>")
    if not data["latest_failures"]:
        body.append("<p>None.</p>")
    else:
        body.append(
            '<table id="failures"><tr><th>day</th><th>domain</th><th>result</th><th class=num>sessions</th>'
            "<th>MX host</th><th>reporter</th></tr>"
        )
        for f in data["latest_failures"]:
            advice = "".join(f'<div class="advice">{_e(a)}</div>' for a in f["advice"])
            body.append(
                f"<tr><td>{_e(f['day'])}</td><td>{_e(f['domain'])}</td><td>{_e(f['result_type'])}{advice}</td>"
                f"<td class=num>{f['sessions']}</td><td>{_e(f['receiving_mx'] or '-')}</td>"
                f'<td><a href="report/{_e(_quote(f["report_id"]))}">{_e(f["organization"] or "?")}</a></td></tr>'
            )
        body.append("</table>")
    if data.get("deviations"):
        body.append(
            '<h2>Deviations from RFC 8460 accepted</h2><table id="deviations"><tr><th class=num>reports</th>'
            "<th>deviation</th></tr>"
        )
        for deviation, count in sorted(data["deviations"].items(), key=lambda kv: -kv[1]):
            body.append(f"<tr><td class=num>{count}</td><td>{_e(deviation)}</td></tr>")
        body.append("</table>")
    body.append("<h2>Reports received</h2>")
    body.append(
        '<table id="reports"><tr><th>received</th><th>reporter</th><th>domains</th><th class=num>ok</th>'
        "<th class=num>failed</th><th>status</th></tr>"
    )
    for r in reports:
        body.append(
            f"<tr><td>{_e(_utc(r['received']))}</td>"
            f'<td><a href="report/{_e(_quote(r["report_id"]))}">{_e(r["organization"] or r["report_id"])}</a></td>'
            f"<td>{_e(', '.join(r['domains']) or '-')}</td><td class=num>{r['successful']}</td>"
            f"<td class=num>{r['failed']}</td><td>{_e(r['status'])}{' (' + _e(r['reason']) + ')' if r['reason'] else ''}"
            "</td></tr>"
        )
    body.append("</table>")
    return _page("mtasts: TLSRPT reports", "".join(body))


def report_page(report: Dict[str, Any], failures: List[Dict[str, Any]]) -> str:
    body = [f'<p><a href="../">all reports</a></p><h1>Report {_e(report["report_id"])}</h1><table>']
    for key in ("organization", "contact", "source", "status", "reason"):
        if report.get(key):
            body.append(f"<tr><th>{_e(key)}</th><td>{_e(report[key])}</td></tr>")
    body.append(
        f"<tr><th>received</th><td>{_e(_utc(report['received']))}</td></tr>"
        f"<tr><th>range</th><td>{_e(_utc(report['start']))} .. {_e(_utc(report['end']))}</td></tr>"
    )
    for deviation in report.get("deviations", []):
        body.append(f"<tr><th>deviation</th><td>{_e(deviation)}</td></tr>")
    body.append("</table>")
    if failures:
        body.append("<h2>Failures</h2><ul>")
        for f in failures:
            advice = "".join(f'<div class="advice">{_e(a)}</div>' for a in f["advice"])
            body.append(
                f"<li>{_e(f['result_type'])} &times; {f['sessions']} at {_e(f['receiving_mx'] or '-')}{advice}</li>"
            )
        body.append("</ul>")
    try:
        raw = json.dumps(json.loads(report["raw"]), indent=2)
    except ValueError:
        raw = report["raw"]
    body.append(f'<h2>As received</h2><pre id="raw">{_e(raw)}</pre>')
    return _page(f"mtasts: report {report['report_id']}", "".join(body))


def message_page(text: str) -> str:
    """A page saying one thing (an error), escaped like everything else."""
    return _page("mtasts: TLSRPT reports", f'<p><a href="/">all reports</a></p><p>{_e(text)}</p>')


def _utc(moment: Any) -> str:
    return iso_time(moment) if moment is not None else "-"  # a broken report has no range


def _quote(report_id: str) -> str:

    return quote(report_id, safe="")
