"""TLSRPT reports POSTed to the real publisher over HTTPS (RFC 8460 §5.4), trustme certificates.

Reports come in the shapes senders send (tests.support.tlsreports); hostile bodies (a gzip
bomb, 10 MB, deep nesting, wrong types, a foreign domain, a flood) are refused with the
status that says why, and the policy stays served meanwhile.
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.support import tlsreports as shapes
from tests.support.publisher import PUBLISHER_IP, Publisher, get, post

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(tmp_path, policy_host, world):
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("rpt")
    cert, key = pub.cert_for(d)
    pub.domains = {
        d: {
            "mode": "enforce",
            "mx": [f"mx1.{d}", f"*.backup.{d}"],
            "max_age": 86400,
            "tlsrpt_rua": [f"https://mta-sts.{d}/tlsrpt"],
            "cert": cert,
            "key": key,
            "host_addresses": [PUBLISHER_IP],
        }
    }
    pub.write(
        pub.domains,
        extra=f'[reports]\npath = "{tmp_path}/reports.sqlite3"\nmax_body = 200000\nper_client_per_hour = 20\n',
    )
    pub.start()
    pub.domain = d
    yield pub
    pub.stop()


def test_reports_of_three_shapes_are_stored_once_and_summarised(receiver):
    d = receiver.domain
    host = f"mta-sts.{d}"
    array = shapes.array_sender(
        d, report_id="arr-1", failures=[shapes.failure("certificate-host-mismatch", f"a.b.backup.{d}", 4)]
    )
    status, _, body = post(receiver.ca, host, shapes.as_gzip(array))
    assert (status, body) == (201, b"stored: arr-1\n")
    assert post(receiver.ca, host, shapes.as_gzip(array))[0] == 200  # a retry: stored once
    rfc = shapes.rfc_appendix_b(domain=d)
    assert post(receiver.ca, host, shapes.as_json(rfc), content_type="application/tlsrpt+json")[0] == 201
    sparse = shapes.sparse_sender(mx_host=f"mx1.{d}")
    sparse["policies"][0]["policy"]["policy-domain"] = d
    assert post(receiver.ca, host, shapes.as_json(sparse), content_type="application/json")[0] == 201

    listed = json.loads(receiver.cli("reports", "list", "--since", "2010-01-01", "--json").stdout)
    assert sorted(r["report_id"] for r in listed) == sorted(["arr-1", rfc["report-id"], sparse["report-id"]])
    assert all(r["source"].startswith("https from 127.") for r in listed)
    summary = json.loads(receiver.cli("reports", "summary", "--since", "2010-01-01", "--json").stdout)
    by_day = {(s["domain"], s["day"]): s for s in summary["days"]}
    assert by_day[(d, "2026-11-29")]["successful"] == 1200 + 77
    assert by_day[(d, "2016-04-01")]["failures"] == {
        "certificate-expired": 100,
        "starttls-not-supported": 200,
        "validation-failure": 3,
    }
    advice = [f for f in summary["latest_failures"] if f["receiving_mx"] == f"a.b.backup.{d}"][0]["advice"]
    assert f"'*.backup.{d}' covers one label only" in advice[0]
    shown = receiver.cli("reports", "show", "arr-1")
    assert "certificate-host-mismatch x4" in shown.stdout and '"report-id": "arr-1"' in shown.stdout


@pytest.mark.parametrize(
    "body,content_type,status,says",
    [
        (
            gzip.compress(b"[" + b" " * (32 * 1024 * 1024) + b"]"),
            "application/tlsrpt+gzip",
            400,
            b"gzip expands beyond",
        ),
        (b"{" + b" " * (10 * 1024 * 1024) + b"}", "application/tlsrpt+json", 413, b"at most 200000 bytes"),
        (b"[" * 5000 + b"]" * 5000, "application/tlsrpt+json", 400, b"nested deeper"),
        (json.dumps({"report-id": 7}).encode(), "application/tlsrpt+json", 400, b"report-id is not a string"),
        (b"\x1f\x8b garbage", "application/tlsrpt+gzip", 400, b"not valid gzip"),
        (b"{}", "text/html", 415, b"expected application/tlsrpt+gzip"),
        (
            json.dumps(
                dict(
                    shapes.array_sender("x.example"),
                    policies=[
                        {
                            "policy": {"policy-type": "sts", "policy-domain": "x.example"},
                            "summary": {"total-successful-session-count": 2**63, "total-failure-session-count": 0},
                        }
                    ],
                )
            ).encode(),
            "application/tlsrpt+json",
            400,
            b"is not a count",
        ),
    ],
    ids=["gzip-bomb", "10MB-json", "deep-nesting", "wrong-type", "broken-gzip", "wrong-content-type", "2**63"],
)
def test_hostile_bodies_are_refused_and_the_policy_stays_served(receiver, body, content_type, status, says):
    host = f"mta-sts.{receiver.domain}"
    got, _, text = post(receiver.ca, host, body, content_type=content_type)
    assert got == status and says in text
    assert get(receiver.ca, host)[0] == 200
    assert receiver.proc.poll() is None


def test_a_report_about_another_domain_is_not_kept(receiver):
    status, _, text = post(
        receiver.ca, f"mta-sts.{receiver.domain}", shapes.as_gzip(shapes.array_sender("other.example"))
    )
    assert status == 403 and b"other.example" in text
    listed = receiver.cli("reports", "list", "--since", "2010-01-01")
    assert listed.returncode == 1 and "no reports received yet" in listed.stderr  # nothing was written


def test_only_post_on_the_report_path_and_a_flood_is_limited(receiver):
    host = f"mta-sts.{receiver.domain}"
    assert get(receiver.ca, host, path="/tlsrpt")[0] == 405
    assert get(receiver.ca, host, path="/tlsrpt/other")[0] == 404
    statuses = [
        post(receiver.ca, host, shapes.as_gzip(shapes.array_sender(receiver.domain, report_id=f"r{i}")))[0]
        for i in range(25)
    ]
    assert statuses[:20] == [201] * 20 and set(statuses[20:]) == {429}
    assert get(receiver.ca, host)[0] == 200  # the policy is still served to the same client


def test_a_lone_surrogate_or_a_forged_log_line_is_stored_as_text_not_a_500(receiver):
    # Issue 24, 4 and 6: "\ud800" gave HTTP 500 and a traceback; a newline forged a log line.
    d = receiver.domain
    doc = shapes.array_sender(d, report_id="evil-1")
    doc["organization-name"] = "\ud800Evil\nWARNING " + d + ": DOWNGRADE, mode enforce -> none\u202e"
    status, _, body = post(
        receiver.ca, f"mta-sts.{d}", json.dumps(doc).encode(), content_type="application/tlsrpt+json"
    )
    assert status == 201, body
    log = receiver.log.read_text(errors="replace")
    assert "evil-1" in log and "\nWARNING " + d + ": DOWNGRADE" not in log and "Traceback" not in log
    listed = json.loads(receiver.cli("reports", "list", "--since", "2010-01-01", "--json").stdout)
    assert listed[0]["organization"].startswith("\\ud800Evil\\x0aWARNING")


def test_a_full_report_store_or_a_full_day_answers_with_a_status_not_a_traceback(tmp_path, policy_host, world):
    # 503 at [reports] max_store_bytes, 429 past max_per_day: the sender retries later (§5.5).
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("full")
    cert, key = pub.cert_for(d)
    pub.domains = {d: {"mode": "enforce", "mx": [f"mx1.{d}"], "cert": cert, "key": key}}
    pub.write(pub.domains, extra=f'[reports]\npath = "{tmp_path}/reports.sqlite3"\nmax_per_day = 1\n')
    pub.start()
    try:
        host = f"mta-sts.{d}"
        first = post(pub.ca, host, shapes.as_gzip(shapes.array_sender(d, report_id="day-1")))
        second = post(pub.ca, host, shapes.as_gzip(shapes.array_sender(d, report_id="day-2")))
        assert first[0] == 201 and second[0] == 429 and int(second[1]["retry-after"]) > 0
    finally:
        pub.stop()
    pub.write(pub.domains, extra=f'[reports]\npath = "{tmp_path}/reports.sqlite3"\nmax_store_bytes = 1\n')
    pub.start()
    try:
        full = post(pub.ca, f"mta-sts.{d}", shapes.as_gzip(shapes.array_sender(d, report_id="full-1")))
        assert full[0] == 503 and full[1]["retry-after"] == "3600"
        log = pub.log.read_text()
        assert "at its size limit" in log and "Traceback" not in log
    finally:
        pub.stop()
