"""``mtasts reports``: TLSRPT reports for the domains we publish (RFC 8460).

``ingest`` takes one mail on stdin (a Postfix pipe transport or an alias) and exits 0 for
anything that is not a report, or not ours, so that Postfix never bounces a report mail
(RFC 8460 §5.3.1: no report about a report); only a local fault (the store) exits 75
(EX_TEMPFAIL), and Postfix tries again later. The views read the report store.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, Optional

from mtasts.commands.output import print_table
from mtasts.config import Config
from mtasts.core.override import parse_since
from mtasts.core.reportmail import MAX_MESSAGE_BYTES, dkim_passed, report_in_mail, signed_by
from mtasts.core.tlsreport import read_received
from mtasts.errors import StoreError, UsageError
from mtasts.exits import EXIT_NO, EXIT_OK, EXIT_TEMPFAIL
from mtasts.servers.dashboard.reportviews import advised, report_summary
from mtasts.servers.jsonviews import iso_time
from mtasts.store.reports import IntakeLimits, ReportStore

DAY = 86400.0


def reports_command(config: Config, args: argparse.Namespace) -> int:
    if args.action == "ingest":
        return ingest(config, sys.stdin.buffer)

    path = config.reports_path
    if not os.path.exists(path):
        print(f"mtasts: no reports received yet ({path} does not exist)", file=sys.stderr)
        return EXIT_NO
    store = ReportStore(path)
    try:
        if args.action == "show":
            return _show(config, store, args.report_id, args.json)
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
        domain = (args.domain or "").lower().rstrip(".")
        if args.action == "list":
            return _list(store, since, domain, args.json)
        if args.action == "summary":
            return _summary(config, store, since, domain, args.json)
        return _digest(config, store, since, domain, args.mail_to)
    finally:
        store.close()


def ingest(config: Config, stream) -> int:
    """0 or 75, never anything else: Postfix's pipe(8) bounces a mail on any other exit, and a
    report mail must not bounce (RFC 8460 §5.3.1). A fault of ours is 75: the mail waits in
    the queue, the traceback in the log, until it is fixed."""
    try:
        return _ingest(config, stream)
    except Exception:  # our bug: nothing is lost, Postfix retries
        traceback.print_exc(file=sys.stderr)
        print("mtasts: internal error reading this report mail (Postfix will retry the delivery)", file=sys.stderr)
        return EXIT_TEMPFAIL


def _ingest(config: Config, stream) -> int:
    message = stream.read(MAX_MESSAGE_BYTES + 1)
    if len(message) > MAX_MESSAGE_BYTES:
        print(f"mtasts: message larger than {MAX_MESSAGE_BYTES} bytes: not a TLSRPT report, dropped", file=sys.stderr)
        return EXIT_OK
    mailed = report_in_mail(message)
    if mailed is None:
        print("mtasts: no TLSRPT report in this message: dropped", file=sys.stderr)
        return EXIT_OK
    reading = read_received(mailed.payload, frozenset(config.publish.domains), mailed.domain_hint)
    authserv = config.reports.dkim_authserv_id
    if authserv:
        reporter = mailed.submitter or (reading.report.contact.rpartition("@")[2] if reading.report else "")
        signers = dkim_passed(mailed.authentication_results, authserv)
        if not signed_by(reporter, signers):
            print(
                f"mtasts: report mail from {reporter or 'an unnamed reporter'} has no dkim=pass of that domain in"
                f" the Authentication-Results of {authserv} (signed by: {', '.join(signers) or 'nobody'}): dropped"
                " (RFC 8460 §3)",
                file=sys.stderr,
            )
            return EXIT_OK
    if reading.foreign and reading.report is not None:
        print(
            f"mtasts: report {reading.report.report_id} is about {', '.join(reading.report.domains) or 'no domain'},"
            " none of [publish.domains]: dropped",
            file=sys.stderr,
        )
        return EXIT_OK
    try:
        # Only the standard library from here on: a pipe transport runs this for every report.
        store = ReportStore(config.reports_path)
        try:
            outcome, report_id = store.receive(
                reading,
                f"mail from {mailed.submitter or 'an unnamed submitter'}",
                limits=IntakeLimits(config.reports.max_per_day, config.reports.max_store_bytes),
            )
            store.prune(time.time() - config.reports.retention_days * DAY)
        finally:
            store.close()
    except StoreError as exc:
        print(f"mtasts: {exc} (Postfix will retry the delivery)", file=sys.stderr)
        return EXIT_TEMPFAIL
    if outcome == "store-full":  # the admin's to fix; nothing is lost meanwhile
        print(
            f"mtasts: the report store {config.reports_path} is at its size limit of"
            f" {config.reports.max_store_bytes} bytes ([reports] max_store_bytes): Postfix will retry the delivery",
            file=sys.stderr,
        )
        return EXIT_TEMPFAIL
    if outcome == "over-quota":  # a flood: dropped, as a report mail must never bounce
        print(
            f"mtasts: {config.reports.max_per_day} reports already received today ([reports] max_per_day): dropped",
            file=sys.stderr,
        )
        return EXIT_OK
    what = {"stored": "stored", "duplicate": "already stored", "broken": f"unreadable ({reading.error}), kept as"}
    print(f"mtasts: report {report_id} {what[outcome]}", file=sys.stderr)
    return EXIT_OK


def _time(moment: Optional[float]) -> str:
    return iso_time(moment) if moment is not None else "-"  # a broken report has no range


def _list(store: ReportStore, since: float, domain: str, as_json: bool) -> int:
    rows = store.reports(since, domain)
    if as_json:
        print(
            json.dumps(
                [dict(r, received=_time(r["received"]), start=_time(r["start"]), end=_time(r["end"])) for r in rows],
                indent=2,
            )
        )
        return EXIT_OK
    table = [["RECEIVED", "REPORTER", "DOMAINS", "OK", "FAILED", "STATUS", "REPORT-ID"]]
    for r in rows:
        table.append(
            [
                _time(r["received"]),
                r["organization"] or "-",
                ",".join(r["domains"]) or "-",
                str(r["successful"]),
                str(r["failed"]),
                r["status"],
                r["report_id"],
            ]
        )
    print_table(table)
    print(f"({len(rows)} report{'s' if len(rows) != 1 else ''})")
    return EXIT_OK


def _show(config: Config, store: ReportStore, report_id: str, as_json: bool) -> int:
    report = store.report(report_id)
    if report is None:
        print(f"mtasts: no report {report_id!r} (see 'mtasts reports list')", file=sys.stderr)
        return EXIT_NO
    failures = advised(config, store.report_failures(report_id))
    if as_json:
        report = dict(
            report,
            received=_time(report["received"]),
            start=_time(report["start"]),
            end=_time(report["end"]),
            failures=failures,
        )
        raw = report.pop("raw")
        try:
            report["report"] = json.loads(raw)
        except ValueError:
            report["raw"] = raw
        print(json.dumps(report, indent=2))
        return EXIT_OK
    for key in ("report_id", "organization", "contact", "source", "status", "reason"):
        if report[key]:
            print(f"{key + ':':16}{report[key]}")
    print(f"{'received:':16}{_time(report['received'])}")
    print(f"{'range:':16}{_time(report['start'])} .. {_time(report['end'])}")
    for deviation in report["deviations"]:
        print(f"{'deviation:':16}{deviation}")
    for f in failures:
        print(
            f"failure:        {f['result_type']} x{f['sessions']} at {f['receiving_mx'] or '-'}"
            f" (from {f['sending_ip'] or 'an unnamed sender'})"
        )
        for line in f["advice"]:
            print(f"  advice:       {line}")
    print("report:")
    try:
        text = json.dumps(json.loads(report["raw"]), indent=2)
    except ValueError:
        text = report["raw"]
    for line in text.splitlines():
        print(f"  | {line}")
    return EXIT_OK


def _summary(config: Config, store: ReportStore, since: float, domain: str, as_json: bool) -> int:
    data = report_summary(config, store, since, domain)
    if as_json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(render_summary(data))
    return EXIT_OK


def render_summary(data: Dict[str, Any]) -> str:
    lines = []
    if not data["days"]:
        lines.append("no reports in this period")
    for d in data["days"]:
        rate = f"{100 * d['success_rate']:.2f}%" if d["success_rate"] is not None else "-"
        lines.append(
            f"{d['day']}  {d['domain']}: {d['successful']} sessions ok, {d['failed']} failed ({rate} ok);"
            f" reporters: {', '.join(d['reporters']) or '-'}"
        )
        for kind, sessions in sorted(d["failures"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    {kind}: {sessions}")
        if d["mx_hosts"]:
            lines.append(f"    MX hosts in failures: {', '.join(d['mx_hosts'])}")
    if data.get("deviations"):
        lines.append("")
        lines.append("accepted deviations from RFC 8460 (reports):")
        for deviation, count in sorted(data["deviations"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  {count:5}  {deviation}")
    if data["latest_failures"]:
        lines.append("")
        lines.append("latest failures:")
    for f in data["latest_failures"]:
        lines.append(
            f"  {f['day']}  {f['domain']}  {f['result_type']} x{f['sessions']} at {f['receiving_mx'] or '-'}"
            f"  ({f['organization'] or 'unnamed reporter'}, report {f['report_id']})"
        )
        for advice in f["advice"]:
            lines.append(f"      - {advice}")
    return "\n".join(lines)


def _digest(config: Config, store: ReportStore, since: float, domain: str, mail_to: str = "") -> int:
    data = report_summary(config, store, since, domain)
    received = store.reports(since, domain)
    broken = [r for r in received if r["status"] == "broken"]
    failed = sum(d["failed"] for d in data["days"])
    head = f"TLSRPT digest since {_time(since)}: {len(received)} report(s) received" + (
        f", {len(broken)} unreadable" if broken else ""
    )
    if mail_to:
        # A whole message for `sendmail -t` (the shipped timer unit pipes it there).

        print(
            f"To: {mail_to}\nSubject: TLSRPT: {failed} failed session(s) reported since {_time(since)}\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n"
        )
    print(head)
    print()
    print(render_summary(data))
    for r in broken:
        print(f"unreadable report {r['report_id']} ({r['source']}): {r['reason']}")
    return EXIT_OK
