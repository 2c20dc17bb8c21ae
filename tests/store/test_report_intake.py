"""What anyone sending a TLSRPT report can make us keep is bounded (issue 24, 4 and 6): the
policies and failure details of one report, its counts and its strings, the reports of a day
and the store's size; sums never overflow; and `reports ingest` exits 0 or 75 whatever comes."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.remotetext import printable
from mtasts.core.reportmail import report_in_mail
from mtasts.core.tlsreport import MAX_FAILURE_DETAILS, MAX_POLICIES, MAX_SESSIONS, parse_report, read_received
from mtasts.errors import ReportError
from mtasts.store.reports import IntakeLimits, ReportStore
from tests.support import tlsreports as shapes
from tests.support.launcher import mtasts_command
from tests.support.tlsreports import report_mail

OURS = frozenset({"example.net"})


@given(st.text())
def test_printable_text_has_no_control_format_or_surrogate_character(text):
    out = printable(text, 10**6)
    assert "\n" not in out and "\r" not in out and "\x00" not in out and "\u202e" not in out
    out.encode("utf-8")  # no lone surrogate: SQLite and every log handler can take it
    if text.isprintable():
        assert out == text


def test_printable_keeps_text_and_escapes_the_rest_within_the_limit():
    assert printable("Gmail, Inc. (ünïcode)") == "Gmail, Inc. (ünïcode)"
    assert printable("a\nWARNING x: DOWNGRADE") == "a\\x0aWARNING x: DOWNGRADE"
    assert printable("\x00\u202eevil\ud800") == "\\x00\\u202eevil\\ud800"
    assert printable("\n" * 10, limit=9) == "\\x0a\\x0a"  # escapes are never cut in half


def document(**changes):
    doc = shapes.array_sender("example.net")
    doc.update(changes)
    return doc


def test_a_forged_log_line_in_a_report_field_is_kept_as_text():
    report = parse_report(
        json.dumps(
            document(
                **{
                    "organization-name": "Evil\nWARNING example.net: DOWNGRADE, mode enforce -> none",
                    "contact-info": "\ud800@x\u202e",
                }
            )
        ).encode()
    )
    assert "\n" not in report.organization and report.organization.startswith("Evil\\x0aWARNING")
    assert report.contact == "\\ud800@x\\u202e"


@pytest.mark.parametrize("count", [MAX_SESSIONS + 1, 2**63, -1, "99999999999999999999999"])
def test_a_count_beyond_any_real_one_is_no_count(count):
    doc = document()
    doc["policies"][0]["summary"]["total-successful-session-count"] = count
    with pytest.raises(ReportError, match="is not a count"):
        parse_report(json.dumps(doc).encode())


def test_policies_and_failure_details_beyond_their_bounds_are_dropped_and_said_so():
    doc = document()
    policy = doc["policies"][0]
    policy["failure-details"] = [shapes.failure("certificate-expired", f"mx{i}.example.net") for i in range(100)]
    doc["policies"] = [json.loads(json.dumps(policy)) for _ in range(MAX_POLICIES + 5)]
    report = parse_report(json.dumps(doc).encode())
    assert len(report.policies) == MAX_POLICIES
    assert sum(len(p.failures) for p in report.policies) == MAX_FAILURE_DETAILS
    assert any("5 policies beyond" in d for d in report.deviations)
    assert any("failure details beyond" in d for d in report.deviations)


def test_only_the_policies_about_our_domains_are_kept():
    # One report naming 5000 other domains made 15,000 metrics series and a 7.2 MB page.
    doc = document()
    ours = doc["policies"][0]
    others = []
    for i in range(5000):
        other = json.loads(json.dumps(ours))
        other["policy"]["policy-domain"] = f"foreign{i}.example"
        others.append(other)
    doc["policies"] = others[:50] + [ours] + others[50 : MAX_POLICIES - 1]
    reading = read_received(json.dumps(doc).encode(), OURS)
    assert reading.ours == ("example.net",) and [p.policy_domain for p in reading.report.policies] == ["example.net"]


def test_a_mail_nested_a_thousand_levels_deep_is_no_report():
    head = b"From: a@b.example\nMIME-Version: 1.0\n"
    body = b""
    for level in range(1000):
        body = (
            b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level) + body + b"\n--b%d--\n" % level
        )
    assert report_in_mail(head + body) is None


@pytest.fixture
def store(tmp_path):
    opened = ReportStore(str(tmp_path / "r.sqlite3"))
    yield opened
    opened.close()


def reading_of(report_id: str, ok: int = 1):
    doc = document(**{"report-id": report_id})
    doc["policies"][0]["summary"]["total-successful-session-count"] = ok
    return read_received(json.dumps(doc).encode(), OURS)


def test_sums_over_huge_counts_do_not_overflow(store):
    # Two valid reports of 5e18 sessions overflowed SUM: the dashboard, /metrics and the
    # summary failed for 180 days. Counts are bounded now; the sums are floats besides.
    assert store.receive(reading_of("a", MAX_SESSIONS), "test")[0] == "stored"
    store._db.execute("UPDATE results SET successful = 5000000000000000000")
    assert store.receive(reading_of("b", 1), "test")[0] == "stored"
    store._db.execute("UPDATE results SET successful = 5000000000000000000")
    (day,) = store.summary("2000-01-01")
    assert day.successful == 10**19
    assert {r["successful"] for r in store.reports(0)} == {5 * 10**18}


def test_past_the_day_s_count_nothing_more_is_kept_that_day(store):
    limits = IntakeLimits(per_day=3)
    now = time.time()
    outcomes = [store.receive(reading_of(f"r{i}"), "test", limits=limits, now=now)[0] for i in range(5)]
    assert outcomes == ["stored"] * 3 + ["over-quota"] * 2
    assert store.receive(reading_of("r0"), "test", limits=limits, now=now)[0] == "duplicate"
    broken = read_received(b"{not json", OURS)
    assert store.receive(broken, "test", limits=limits, now=now)[0] == "over-quota"
    assert store.receive(reading_of("r9"), "test", limits=limits, now=now + 86400)[0] == "stored"  # a new day


def test_a_store_at_its_size_limit_keeps_nothing_new(store):
    assert store.receive(reading_of("first"), "test")[0] == "stored"
    limits = IntakeLimits(store_bytes=store.size())
    assert store.receive(reading_of("second"), "test", limits=limits) == ("store-full", "second")
    assert [r["report_id"] for r in store.reports(0)] == ["first"]


def test_ingest_exits_0_or_75_for_hostile_mail(tmp_path):
    config = tmp_path / "mtasts.toml"
    config.write_text(
        f'[reports]\npath = "{tmp_path}/reports.sqlite3"\nmax_per_day = 2\n'
        '[publish.domains."example.net"]\nmx = ["mx1.example.net"]\n'
    )

    def ingest(message: bytes) -> subprocess.CompletedProcess:
        return subprocess.run(
            mtasts_command("reports", "ingest", "-c", str(config)), input=message, capture_output=True, timeout=60
        )

    huge = document()
    huge["policies"][0]["summary"]["total-failure-session-count"] = 2**63
    surrogate = json.dumps(document(**{"organization-name": "\ud800"})).encode()
    nested = b"MIME-Version: 1.0\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(990)
    )
    results = [
        ingest(m)
        for m in (
            report_mail("application/tlsrpt+json", json.dumps(huge).encode()),
            report_mail("application/tlsrpt+json", surrogate),
            nested,
        )
    ]
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-300:] for r in results]
    assert b"is not a count" in results[0].stderr and b"stored" in results[1].stderr
    over = ingest(report_mail("application/tlsrpt+json", json.dumps(document(**{"report-id": "x"})).encode()))
    assert over.returncode == 0 and b"max_per_day" in over.stderr
