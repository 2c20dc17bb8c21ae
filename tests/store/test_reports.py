"""Received TLSRPT reports: the store, the advice tied to our publication, and the CLI
(``reports ingest`` from stdin, the views); no root, no network."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from mtasts.core.policy import Mode
from mtasts.core.publication import PublishedDomain
from mtasts.core.reportadvice import advise
from mtasts.core.tlsreport import parse_report, read_received
from mtasts.store.reports import ReportStore
from tests.support import tlsreports as shapes
from tests.support.launcher import mtasts_command
from tests.support.tlsreports import report_mail

PUBLISHED = PublishedDomain("example.net", Mode.ENFORCE, ("mx1.example.net", "*.backup.example.net"), 604800)


def test_advice_names_an_mx_host_the_patterns_do_not_cover():
    deeper = advise("example.net", "certificate-host-mismatch", "a.b.backup.example.net", [], PUBLISHED)
    assert deeper[0].startswith(
        "a.b.backup.example.net is not covered by the published mx patterns:"
        " '*.backup.example.net' covers one label only (RFC 8461 §4.1)"
    )
    assert "'mx: *.b.backup.example.net'" in deeper[0]
    other = advise("example.net", "validation-failure", "mail.elsewhere.example", [], PUBLISHED)
    assert (
        other[0].startswith("mail.elsewhere.example is not covered")
        and "mx1.example.net, *.backup.example.net" in other[0]
    )
    covered = advise("example.net", "certificate-host-mismatch", "x.backup.example.net", [], PUBLISHED)
    assert covered == ["x.backup.example.net presented a certificate that does not name it"]


def test_advice_names_a_reporter_on_an_older_policy():
    old = ["version: STSv1", "mode: enforce", "mx: mx0.example.net", "max_age: 604800"]
    advice = advise("example.net", "certificate-host-mismatch", "mx1.example.net", old, PUBLISHED)
    assert any("applied another policy" in a and "mx: mx0.example.net" in a for a in advice)
    same = ["version: STSv1", "mode: enforce", "mx: mx1.example.net", "mx: *.backup.example.net", "max_age: 604800"]
    assert not any(
        "another policy" in a for a in advise("example.net", "certificate-expired", "mx1.example.net", same, PUBLISHED)
    )


def test_advice_without_our_publication_says_what_the_type_means():
    assert advise("other.example", "sts-policy-fetch-error", "", [], None) == [
        "the sender could not fetch https://mta-sts.other.example/.well-known/mta-sts.txt"
        " (`mtasts check other.example` checks it as senders do)"
    ]
    assert "not one RFC 8460 defines" in advise("x.example", "made-up", "mx", [], None)[0]


@pytest.fixture
def store(tmp_path):
    opened = ReportStore(str(tmp_path / "r.sqlite3"))
    yield opened
    opened.close()


def report(domain="example.net", report_id="r1", ok=10, failures=(), start="2026-11-29T00:00:00Z"):
    document = shapes.array_sender(domain, report_id=report_id, ok=ok, failures=list(failures))
    document["date-range"]["start-datetime"] = start
    data = shapes.as_json(document)
    return parse_report(data), data


def test_the_store_keeps_each_report_once_and_sums_per_domain_and_day(store):
    r1, raw1 = report(report_id="r1", ok=10, failures=[shapes.failure("certificate-expired", "mx1.example.net", 2)])
    r2, raw2 = report(
        report_id="r2",
        ok=5,
        failures=[
            shapes.failure("certificate-expired", "mx1.example.net", 1),
            shapes.failure("starttls-not-supported", "mx2.example.net", 4),
        ],
    )
    r3, raw3 = report(report_id="r3", ok=7, start="2026-11-28T00:00:00Z")
    assert store.add(r1, raw1, "test") and store.add(r2, raw2, "test") and store.add(r3, raw3, "test")
    assert not store.add(r1, raw1, "test")
    days = {d.day: d for d in store.summary("2026-11-01")}
    assert (days["2026-11-29"].successful, days["2026-11-29"].failed) == (15, 7)
    assert days["2026-11-29"].failures == {"certificate-expired": 3, "starttls-not-supported": 4}
    assert days["2026-11-29"].mx_hosts == ("mx1.example.net", "mx2.example.net")
    assert days["2026-11-28"].success_rate == 1.0
    comma = shapes.array_sender("example.net", report_id="r4")
    comma["organization-name"] = "Mail, Inc."
    assert store.add(parse_report(shapes.as_json(comma)), shapes.as_json(comma), "test")
    assert {d.day: d for d in store.summary("2026-11-01")}["2026-11-29"].reporters == ("Array Mail Inc.", "Mail, Inc.")
    assert store.summary("2026-11-29", domain="other.example") == []
    shown = store.report("r2")
    assert json.loads(shown["raw"])["report-id"] == "r2"
    assert {f["result_type"] for f in store.failures("2026-11-01")} == {"certificate-expired", "starttls-not-supported"}
    assert store.prune(time.time() + 1) == 4 and store.summary("2000-01-01") == [] and store.report("r1") is None


def test_receive_keeps_broken_reports_as_such_and_drops_foreign_ones(store):
    ours = frozenset({"example.net"})
    broken = read_received(b"{not json", ours)
    outcome, broken_id = store.receive(broken, "mail")
    assert outcome == "broken" and broken_id.startswith("broken:")
    assert store.receive(broken, "mail")[1] == broken_id  # kept once
    assert store.report(broken_id)["reason"].startswith("not JSON")
    foreign = read_received(shapes.as_json(shapes.array_sender("other.example")), ours)
    assert store.receive(foreign, "mail") == ("foreign", "2026-11-29T00:00:00Z_example.net")
    assert [r["status"] for r in store.reports(0)] == ["broken"]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mtasts.toml"
    path.write_text(
        f'[reports]\npath = "{tmp_path}/reports.sqlite3"\n'
        '[publish.domains."example.net"]\nmx = ["mx1.example.net", "*.backup.example.net"]\n'
    )
    return path


def cli(config, *args, stdin: bytes = b""):
    return subprocess.run(mtasts_command(*args, "-c", str(config)), input=stdin, capture_output=True, timeout=60)


def test_ingest_exits_0_for_everything_but_a_local_fault(config, tmp_path):
    document = shapes.array_sender(
        "example.net", failures=[shapes.failure("certificate-host-mismatch", "a.b.backup.example.net", 4)]
    )
    message = report_mail("application/tlsrpt+gzip", shapes.as_gzip(document))
    first = cli(config, "reports", "ingest", stdin=message)
    assert first.returncode == 0 and b"stored" in first.stderr
    again = cli(config, "reports", "ingest", stdin=message)
    assert again.returncode == 0 and b"already stored" in again.stderr
    assert cli(config, "reports", "ingest", stdin=b"Subject: hi\n\nno report\n").returncode == 0
    other = report_mail("application/tlsrpt+json", shapes.as_json(shapes.array_sender("other.example")))
    dropped = cli(config, "reports", "ingest", stdin=other)
    assert dropped.returncode == 0 and b"none of [publish.domains]: dropped" in dropped.stderr
    broken = cli(config, "reports", "ingest", stdin=report_mail("application/tlsrpt+gzip", b"\x1f\x8bbroken"))
    assert broken.returncode == 0 and b"unreadable" in broken.stderr

    summary = cli(config, "reports", "summary", "--since", "2026-11-01")
    assert summary.returncode == 0
    assert b"2026-11-29  example.net: 1200 sessions ok, 4 failed (99.67% ok)" in summary.stdout
    assert b"'*.backup.example.net' covers one label only" in summary.stdout
    assert b"accepted deviations from RFC 8460" not in summary.stdout  # the array sender has none
    listed = json.loads(cli(config, "reports", "list", "--since", "2026-11-01", "--json").stdout)
    assert sorted(r["status"] for r in listed) == ["broken", "ok"]
    digest = cli(config, "reports", "digest", "--since", "2026-11-01")
    assert b"2 report(s) received, 1 unreadable" in digest.stdout and b"not valid gzip" in digest.stdout
    mailed = cli(config, "reports", "digest", "--since", "2026-11-01", "--mail-to", "postmaster@example.net")
    import email

    digest_mail = email.message_from_bytes(mailed.stdout)
    assert digest_mail["To"] == "postmaster@example.net"
    assert digest_mail["Subject"].startswith("TLSRPT: 4 failed session(s)")
    assert "covers one label only" in digest_mail.get_payload()
    assert cli(config, "reports", "show", "nonesuch").returncode == 1
    assert cli(config, "reports", "list", "--since", "soon").returncode == 64

    fault = tmp_path / "fault.toml"
    fault.write_text(config.read_text().replace(f"{tmp_path}/reports.sqlite3", "/dev/null/reports.sqlite3"))
    failed = cli(fault, "reports", "ingest", stdin=message)
    assert failed.returncode == 75 and b"Postfix will retry" in failed.stderr


def test_publish_records_offers_the_https_rua_until_it_is_listed(tmp_path):
    path = tmp_path / "p.toml"
    base = (
        '[publish.domains."example.net"]\nmx = ["mx1.example.net"]\nhost_addresses = ["192.0.2.1"]\n'
        'tlsrpt_rua = ["mailto:tlsrpt@example.net"{}]\n'
    )
    path.write_text(base.format(""))
    hint = 'add "https://mta-sts.example.net/tlsrpt" to tlsrpt_rua'
    assert hint in cli(path, "publish", "records").stdout.decode()
    path.write_text(base.format(', "https://mta-sts.example.net/tlsrpt"'))
    out = cli(path, "publish", "records").stdout.decode()
    assert hint not in out and "rua=mailto:tlsrpt@example.net,https://mta-sts.example.net/tlsrpt" in out
    path.write_text(base.format("") + '[reports]\nhttps_path = ""\n')
    assert hint not in cli(path, "publish", "records").stdout.decode()


def test_summary_counts_the_deviations_accepted(config):
    for n in range(3):
        sparse = shapes.sparse_sender(report_id=f"sparse-{n}", mx_host="mx1.example.net")
        message = report_mail("application/tlsrpt+json", shapes.as_json(sparse), "r.json")
        assert cli(config, "reports", "ingest", stdin=message).returncode == 0
    data = json.loads(cli(config, "reports", "summary", "--since", "2026-11-01", "--json").stdout)
    assert data["deviations"]["no sending-mta-ip"] == 3
    assert data["deviations"]["no policy-domain (taken from TLS-Report-Domain)"] == 3
    text = cli(config, "reports", "summary", "--since", "2026-11-01").stdout.decode()
    assert "      3  no sending-mta-ip" in text


def test_with_a_dkim_verifier_named_only_signed_report_mail_is_kept(config):
    config.write_text(config.read_text().replace("[reports]\n", '[reports]\ndkim_authserv_id = "mx.example.net"\n'))
    payload = shapes.as_gzip(shapes.array_sender("example.net", report_id="signed"))
    unsigned = cli(config, "reports", "ingest", stdin=report_mail("application/tlsrpt+gzip", payload))
    assert unsigned.returncode == 0 and b"no dkim=pass of that domain" in unsigned.stderr

    def ingest(results: str):
        mail = report_mail("application/tlsrpt+gzip", payload, headers=f"Authentication-Results: {results}\r\n")
        return cli(config, "reports", "ingest", stdin=mail)

    forged = ingest("elsewhere; dkim=pass header.d=array.example")
    assert forged.returncode == 0 and b"dropped" in forged.stderr
    signed = ingest("mx.example.net; dkim=pass header.d=array.example")
    assert signed.returncode == 0 and b"report signed stored" in signed.stderr
    listed = json.loads(cli(config, "reports", "list", "--since", "2026-11-01", "--json").stdout)
    assert [r["report_id"] for r in listed] == ["signed"]  # the unsigned and forged ones were not kept


def test_a_failed_policy_fetch_names_an_expired_publisher_certificate(tmp_path):
    import datetime
    import inspect

    import trustme

    if "not_after" not in inspect.signature(trustme.CA.issue_cert).parameters:
        pytest.skip("this trustme cannot issue an expired certificate")
    ca = trustme.CA()
    issued = ca.issue_cert(
        "mta-sts.example.net", not_after=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    )
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    path = tmp_path / "m.toml"
    path.write_text(
        f'[reports]\npath = "{tmp_path}/r.sqlite3"\n[publish.domains."example.net"]\n'
        f'mx = ["mx1.example.net"]\ncert = "{cert}"\nkey = "{key}"\n'
    )
    message = report_mail(
        "application/tlsrpt+json", shapes.as_json(shapes.sparse_sender(mx_host="mx1.example.net")), "r.json"
    )
    assert cli(path, "reports", "ingest", stdin=message).returncode == 0
    out = cli(path, "reports", "summary", "--since", "2026-11-01").stdout.decode()
    assert "the certificate the publisher serves for mta-sts.example.net has expired: renew it" in out


def test_a_failure_keeps_the_policy_it_was_listed_under(store):
    document = shapes.rfc_appendix_b(domain="example.net")
    tlsa = {
        "policy": {
            "policy-type": "tlsa",
            "policy-string": ["3 0 1 1F850A337E6DB9C609C522D136A475638CC43E1ED424F8EEC8513D747D1D085D"],
            "policy-domain": "example.net",
            "mx-host": ["mx1.example.net"],
        },
        "summary": {"total-successful-session-count": 1, "total-failure-session-count": 1},
        "failure-details": [shapes.failure("tlsa-invalid", "mx1.example.net", 1)],
    }
    document["policies"].insert(0, tlsa)
    store.add(parse_report(shapes.as_json(document)), shapes.as_json(document), "test")
    by_type = {}
    for f in store.failures("2000-01-01", limit=100):
        by_type.setdefault(f["result_type"], set()).add(f["policy_type"])
    assert by_type == {
        "tlsa-invalid": {"tlsa"},
        "certificate-expired": {"sts"},
        "starttls-not-supported": {"sts"},
        "validation-failure": {"sts"},
    }
