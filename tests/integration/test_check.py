"""`mtasts check` against good and deliberately broken publications: every check must be
seen to fail."""

from __future__ import annotations

import json

import pytest

from tests.support.mxhost import MX_IP, NO_TLS_IP, MxHosts
from tests.support.policies import policy_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mx_hosts(policy_host):
    hosts = MxHosts(policy_host.ca)
    yield hosts
    hosts.close()


@pytest.fixture
def checker(make_daemon):
    daemon = make_daemon(start=False)

    def run(domain, extra=""):
        if extra:
            daemon.config.write_text(daemon.config.read_text() + extra)
        out = daemon.cli("check", domain, "--json")
        report = json.loads(out.stdout)
        assert out.returncode == {"pass": 0, "warn": 1, "fail": 2}[report["result"]]
        return report

    return run


def good_domain(world, mx_hosts, mx_ip=MX_IP):
    d = world.new_domain("chk")
    world.publish(d, policy_text(mx=("mx1.{d}",), domain=d))
    world.dns.set(d, "MX", f"10 mx1.{d}.")
    world.dns.set(f"mx1.{d}", "A", mx_ip)
    world.dns.set(f"_smtp._tls.{d}", "TXT", f'"v=TLSRPTv1; rua=mailto:tlsrpt@{d}"')
    return d


def statuses(report, check):
    return [f["status"] for f in report["findings"] if f["check"] == check]


def test_good_publication_passes(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    report = checker(d)
    assert report["result"] == "pass", report
    assert statuses(report, "starttls") == ["pass"] and statuses(report, "mx") == ["pass"]
    assert statuses(report, "dane") == ["info"]


def test_missing_txt_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.dns.set(f"_mta-sts.{d}", "TXT")
    assert statuses(checker(d), "txt") == ["fail"]


def test_two_txt_records_fail(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.dns.set(f"_mta-sts.{d}", "TXT", '"v=STSv1; id=1"', '"v=STSv1; id=2"')
    report = checker(d)
    assert statuses(report, "txt") == ["fail"] and "exactly one" in report["findings"][0]["message"]


@pytest.mark.parametrize(
    "site,reason",
    [
        (dict(status=404), "HTTP 404"),
        (dict(status=302, headers={"Location": "https://elsewhere.example/"}), "redirect"),
        (dict(content_type="text/html"), "Content-Type"),
        (dict(cert="wrong-name"), "sts-webpki-invalid"),
        (dict(body=b"<html>oops</html>"), "sts-policy-invalid"),
    ],
)
def test_broken_policy_fails(world, mx_hosts, checker, site, reason):
    d = good_domain(world, mx_hosts)
    s = world.host.sites[f"mta-sts.{d}"]
    for k, v in site.items():
        setattr(s, k, v)
    report = checker(d)
    failed = [f for f in report["findings"] if f["check"] == "policy"]
    assert failed[0]["status"] == "fail" and reason in failed[0]["message"]


def test_uncovered_mx_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.dns.set(d, "MX", f"10 mx1.{d}.", f"20 backup.{d}.")
    world.dns.set(f"backup.{d}", "A", MX_IP)
    report = checker(d)
    assert "fail" in statuses(report, "mx")
    assert any(f"backup.{d} matches no mx pattern" in f["message"] for f in report["findings"])


def test_wildcard_warns(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.host.sites[f"mta-sts.{d}"].body = policy_text(mx=("*.{d}",), domain=d)
    report = checker(d)
    assert report["result"] == "warn" and "warn" in statuses(report, "mx")


def test_mx_certificate_for_other_name_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    mx_hosts.wrong_name.add(f"mx1.{d}")
    report = checker(d)
    assert statuses(report, "starttls") == ["fail"]
    assert "certificate" in [f for f in report["findings"] if f["check"] == "starttls"][0]["message"]


def test_mx_without_starttls_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts, mx_ip=NO_TLS_IP)
    report = checker(d)
    assert [f["message"] for f in report["findings"] if f["check"] == "starttls"] == [f"mx1.{d}: STARTTLS not offered"]
    assert report["result"] == "fail"


def test_tlsrpt_missing_warns_and_invalid_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.dns.set(f"_smtp._tls.{d}", "TXT")
    assert statuses(checker(d), "tlsrpt") == ["warn"]
    world.dns.set(f"_smtp._tls.{d}", "TXT", '"v=TLSRPTv1; rua=mailto:a,b@x"')
    assert statuses(checker(d), "tlsrpt") == ["fail"]


def test_dane_presence_reported(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.dns.set(f"_25._tcp.mx1.{d}", "TLSA", "3 1 1 " + "ab" * 32)
    report = checker(d)
    assert any("1 TLSA record" in f["message"] for f in report["findings"] if f["check"] == "dane")


def test_local_id_mismatch_fails(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    extra = f'\n[publish.domains."{d}"]\nmode = "enforce"\nmx = ["mx1.{d}"]\nmax_age = 604800\n'
    report = checker(d, extra)
    local = [f for f in report["findings"] if f["check"] == "local"]
    assert local[0]["status"] == "fail" and "publish the _mta-sts record" in local[0]["message"]


def test_mode_none_explains_removal(world, mx_hosts, checker):
    d = good_domain(world, mx_hosts)
    world.host.sites[f"mta-sts.{d}"].body = policy_text(mode="none", mx=(), max_age=86400, domain=d)
    report = checker(d)
    assert any("RFC 8461 §8.3" in f["message"] for f in report["findings"] if f["check"] == "removal")


def test_human_output(world, mx_hosts, make_daemon):
    d = good_domain(world, mx_hosts)
    daemon = make_daemon(start=False)
    out = daemon.cli("check", d)
    assert out.returncode == 0 and "PASS  txt" in out.stdout and out.stdout.strip().endswith("result: pass")


def test_dead_dns_is_one_failure_with_the_nameserver_in_bounded_time(make_daemon, dns_server):
    import time

    d = make_daemon(start=False)
    d.config.write_text(
        d.config.read_text().replace(f'nameservers = ["{dns_server.address}"]', 'nameservers = ["127.0.0.1:9"]')
    )
    started = time.monotonic()
    out = d.cli("check", "example.com", "--json")
    elapsed = time.monotonic() - started
    report = json.loads(out.stdout)
    assert out.returncode == 2 and report["result"] == "fail"
    assert report["findings"] == [
        {
            "status": "fail",
            "check": "dns",
            # Nothing listens on port 9: the ICMP port unreachable ends the lookup at once.
            "message": "DNS lookup of _mta-sts.example.com TXT failed at 127.0.0.1: the nameserver failed or refused"
            " (servfail); nothing more can be checked until DNS answers",
        }
    ]
    assert elapsed < 2.0 + 3.0  # one [resolver] timeout (2 s here), not one per lookup
    text = d.cli("check", "example.com")
    assert "OSError" not in text.stdout and "Traceback" not in text.stderr


def test_a_domain_that_does_not_exist_is_not_an_implicit_mx(world, checker):
    d = world.new_domain("nx")  # nothing published: NXDOMAIN for every name
    report = checker(d)
    messages = [f["message"] for f in report["findings"]]
    assert f"{d} does not exist (NXDOMAIN): no mail can be delivered to it" in messages
    assert not any("implicit MX" in m for m in messages)
