"""TLSRPT reports (RFC 8460 §4) parsed as senders write them; hostile ones refused with a reason."""

import gzip
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtasts.core.reportmail import dkim_passed, report_in_mail, signed_by
from mtasts.core.tlsreport import parse_report, unpack
from mtasts.errors import ReportError
from tests.support import tlsreports as shapes
from tests.support.tlsreports import report_mail as mail


def read(body: bytes, hint: str = ""):
    return parse_report(unpack(body), hint)


def test_the_rfc_example_with_mx_host_as_one_string():
    report = read(shapes.as_json(shapes.rfc_appendix_b()))
    assert report.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    assert (report.organization, report.contact) == ("Company-X", "sts-reporting@company-x.example")
    assert report.end - report.start == 86399
    (policy,) = report.policies
    assert (policy.policy_type, policy.policy_domain, policy.successful, policy.failed) == (
        "sts",
        "company-y.example",
        5326,
        303,
    )
    assert policy.mx_hosts == ("*.mail.company-y.example",)
    assert [f.result_type for f in policy.failures] == [
        "certificate-expired",
        "starttls-not-supported",
        "validation-failure",
    ]
    assert sum(f.failed_sessions for f in policy.failures) == 303
    assert policy.failures[2].failure_reason_code == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    assert report.deviations == ("mx-host is a string, not an array (RFC 8460 erratum 6241)",)


def test_an_array_sender_gzipped_with_fractional_seconds():
    body = shapes.as_gzip(
        shapes.array_sender("example.net", failures=[shapes.failure("certificate-host-mismatch", "mx9.example.net", 4)])
    )
    assert body[:2] == b"\x1f\x8b"
    report = read(body)
    (policy,) = report.policies
    assert policy.mx_hosts == ("mx1.example.net", "*.backup.example.net")
    assert policy.policy_strings[:2] == ("version: STSv1", "mode: enforce")
    assert (policy.successful, policy.failed, report.end - report.start) == (1200, 4, 86400)
    assert report.deviations == ()


def test_a_sparse_sender_missing_fields_and_counts_as_strings():
    report = read(shapes.as_json(shapes.sparse_sender()), hint="Example.NET")
    (policy,) = report.policies
    assert policy.policy_domain == "example.net"  # from TLS-Report-Domain
    assert (policy.successful, policy.failed, policy.policy_strings) == (77, 2, ())
    assert policy.failures[0].sending_mta_ip == ""
    assert set(report.deviations) == {
        "no policy-domain (taken from TLS-Report-Domain)",
        "no policy-string",
        "mx-host is a string, not an array (RFC 8460 erratum 6241)",
        "a session count written as a string",
        "no sending-mta-ip",
    }


def test_the_prose_spellings_are_read_too():
    document = shapes.array_sender("example.org")
    policy = document["policies"][0]["policy"]
    policy["domain"] = policy.pop("policy-domain")
    policy["mx-host-pattern"] = policy.pop("mx-host")
    document["policies"][0]["failure-details"] = {
        "result-type": "dane-required",
        "failed-session-count": 1,
        "sending-mta-ip": "192.0.2.1",
        "additional-info-uri": "https://x",
    }
    report = read(shapes.as_json(document))
    assert report.policies[0].policy_domain == "example.org"
    assert report.policies[0].mx_hosts[0] == "mx1.example.org"
    assert report.policies[0].failures[0].additional_information == "https://x"
    assert len(report.deviations) == 4


def test_a_report_without_id_gets_a_stable_digest():
    document = shapes.array_sender("example.com")
    del document["report-id"]
    first, second = read(shapes.as_json(document)), read(shapes.as_json(document))
    assert first.report_id.startswith("sha256:") and first.report_id == second.report_id


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda d: d.pop("date-range"), "no date-range"),
        (lambda d: d["date-range"].update({"start-datetime": "yesterday"}), "is not an RFC 3339 date-time"),
        (lambda d: d["date-range"].update({"start-datetime": "2026-02-30T00:00:00Z"}), "not a valid date"),
        (lambda d: d["date-range"].update({"end-datetime": "2000-01-01T00:00:00Z"}), "ends before it starts"),
        (lambda d: d.update({"policies": []}), "no policies array"),
        (lambda d: d["policies"][0]["policy"].update({"policy-type": "dmarc"}), "policy-type 'dmarc' is none of"),
        (lambda d: d["policies"][0]["summary"].update({"total-failure-session-count": -1}), "is not a count"),
        (lambda d: d["policies"][0]["summary"].update({"total-failure-session-count": True}), "is not a count"),
        (lambda d: d["policies"][0]["policy"].update({"mx-host": [1, 2]}), "mx-host is not an array of strings"),
        (lambda d: d.update({"report-id": {"id": 1}}), "report-id is not a string"),
    ],
)
def test_wrong_types_name_the_field(mutate, reason):
    document = shapes.array_sender("example.com")
    mutate(document)
    with pytest.raises(ReportError, match=reason):
        read(shapes.as_json(document))


def test_a_gzip_bomb_is_refused_unread():
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 100 * 1024
    with pytest.raises(ReportError, match="gzip expands beyond"):
        unpack(bomb)


def test_size_nesting_and_garbage_are_refused():
    with pytest.raises(ReportError, match="larger than"):
        unpack(b"{" + b" " * (10 * 1024 * 1024) + b"}")
    with pytest.raises(ReportError, match="nested deeper"):
        parse_report(b"[" * 100000 + b"]" * 100000)
    with pytest.raises(ReportError, match="not JSON"):
        parse_report(b"\x00\xff garbage")
    with pytest.raises(ReportError, match="not valid gzip"):
        unpack(b"\x1f\x8b\x08\x00garbage-after-the-magic")
    with pytest.raises(ReportError, match="ends early"):
        unpack(shapes.as_gzip(shapes.array_sender("example.com"))[:40])
    with pytest.raises(ReportError, match="expected an object"):
        parse_report(b"[1, 2]")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(
    [
        "report-id",
        "date-range",
        "policies",
        "policy",
        "summary",
        "failure-details",
        "policy-type",
        "mx-host",
        "policy-domain",
        "result-type",
        "failed-session-count",
        "start-datetime",
        "end-datetime",
        "total-successful-session-count",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.dictionaries(KEYS, JSON, max_size=6)))
def test_any_json_is_a_report_or_a_report_error(document):
    try:
        report = parse_report(json.dumps(document).encode())
    except ReportError:
        return
    assert report.policies and report.end >= report.start


@settings(max_examples=200, deadline=None)
@given(
    ok=st.integers(0, 10**9),
    fails=st.lists(
        st.tuples(
            st.sampled_from(["certificate-expired", "starttls-not-supported", "sts-policy-fetch-error"]),
            st.integers(0, 10**6),
        ),
        max_size=5,
    ),
    gz=st.booleans(),
)
def test_counts_survive_the_round_trip(ok, fails, gz):
    document = shapes.array_sender(
        "example.com", ok=ok, failures=[shapes.failure(t, "mx1.example.com", n) for t, n in fails]
    )
    report = read((shapes.as_gzip if gz else shapes.as_json)(document))
    assert report.policies[0].successful == ok
    assert [(f.result_type, f.failed_sessions) for f in report.policies[0].failures] == list(fails)


@pytest.mark.parametrize(
    "content_type,filename,gz",
    [
        ("application/tlsrpt+gzip", "a!example.net!1!2.json.gz", True),
        ("application/tlsrpt+json", "a!example.net!1!2.json", False),
        ("application/gzip", "a!example.net!1!2.json.gz", True),  # a common wrong type
        ("application/octet-stream", "report.json", False),
    ],
)
def test_the_report_part_of_a_mail(content_type, filename, gz):
    document = shapes.array_sender("example.net")
    payload = shapes.as_gzip(document) if gz else shapes.as_json(document)
    found = report_in_mail(mail(content_type, payload, filename))
    assert found is not None and (found.domain_hint, found.submitter) == ("example.net", "array.example")
    assert read(found.payload).report_id == document["report-id"]


def test_mail_without_a_report_part_is_none():
    assert report_in_mail(mail("application/pdf", b"%PDF-1.4", "invoice.pdf")) is None
    assert report_in_mail(b"Subject: hello\r\n\r\njust text\r\n") is None
    assert report_in_mail(b"\x00\xff not a mail at all") is None


def test_a_zlib_stream_is_not_gzip():
    with pytest.raises(ReportError):
        parse_report(unpack(zlib.compress(b"{}")))


def test_dkim_results_count_only_from_our_verifier():

    results = [
        "mx.example.net 1; spf=pass smtp.mailfrom=array.example;"
        " dkim=pass (2048-bit key; unprotected) header.d=array.example header.s=s1; dkim=fail header.d=x.example",
        "mx.example.net; dkim=pass header.i=@reports.big.example",
        "forged.example; dkim=pass header.d=evil.example",  # another id: the sender's own claim
    ]
    assert dkim_passed(results, "MX.example.net") == ("array.example", "reports.big.example")
    assert signed_by("array.example", dkim_passed(results, "mx.example.net"))
    assert signed_by("tlsrpt.big.example", ["big.example"]) and signed_by("big.example", ["reports.big.example"])
    assert not signed_by("evil.example", dkim_passed(results, "mx.example.net"))
    assert not signed_by("", ["array.example"]) and not signed_by("notarray.example", ["array.example"])
