"""The daemon against real DNS and HTTPS servers: RFC 8461 §3 (discovery, the fetch) and §5.1, §10.2 (caching)."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time

import pytest

from tests.support.launcher import wait_for
from tests.support.policies import policy_text
from tests.support.socketmap import netstring, read_netstring

pytestmark = pytest.mark.integration


def secure(domain, sni=True):
    answer = f"OK secure match=mx1.{domain}:.backup.{domain}"
    return answer + " servername=hostname" if sni else answer


# -- A: discovery ------------------------------------------------------------------------


def test_enforce_policy_answered_secure(world, daemon):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    # RFC 8461 §3.3: the policy URL over HTTPS, SNI = the policy host, no HTTP caching.
    assert world.host.paths(f"mta-sts.{d}") == ["/.well-known/mta-sts.txt"]
    assert f"mta-sts.{d}" in world.host.handshakes
    request = [r for r in world.host.requests if r.headers.get("host") == f"mta-sts.{d}"][0]
    assert "if-none-match" not in request.headers and "if-modified-since" not in request.headers
    assert "learned policy" in daemon.log()


def test_cached_answer_needs_no_network(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    txt_queries, fetches = world.dns.count(f"_mta-sts.{d}"), world.fetches(d)
    for _ in range(50):
        assert daemon.query(d) == secure(d)
    assert world.dns.count(f"_mta-sts.{d}") == txt_queries
    assert world.fetches(d) == fetches


def test_answers_for_each_map_profile(world, daemon):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d, "oldpostfix") == secure(d, sni=False)
    assert daemon.query(d, "unknown-map") == secure(d)  # default profile
    assert "unknown map name 'unknown-map'" in daemon.log()


def test_testing_mode(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_text(mode="testing", domain=d))
    assert daemon.query(d) == "NOTFOUND "
    assert daemon.query(d, "strict") == secure(d)


def test_tlsrpt_profile_answers_byte_for_byte(world, daemon):
    d, t = world.new_domain(), world.new_domain()
    world.publish(d)
    world.publish(t, policy_text(mode="testing", domain=t))
    strings = " ".join(f"{{ policy_string = {line} }}" for line in policy_text(domain=d).decode().split("\r\n") if line)
    assert daemon.query(d, "tlsrpt") == (
        f"{secure(d)} policy_type=sts policy_domain={d} mx_host_pattern=mx1.{d} mx_host_pattern=*.backup.{d} " + strings
    )
    assert daemon.query(d) == secure(d)  # the same cached policy, the default profile
    assert daemon.query(t, "tlsrpt").startswith(f"OK may policy_type=sts policy_domain={t} mx_host_pattern=mx1.{t} ")
    assert daemon.query(t) == "NOTFOUND "


def test_none_mode(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_text(mode="none", mx=(), domain=d))
    assert daemon.query(d) == "NOTFOUND "


def test_no_record_is_negatively_cached(world, daemon):
    d = world.new_domain()
    assert daemon.query(d) == "NOTFOUND "
    assert daemon.query(d) == "NOTFOUND "
    assert world.dns.count(f"_mta-sts.{d}") == 1


@pytest.mark.parametrize("key", [".example.com", ".com", "[192.0.2.1]", "[ipv6:2001:db8::1]", "192.0.2.7"])
def test_keys_without_lookup(world, daemon, key):
    before = len(world.dns.queries)
    assert daemon.query(key) == "NOTFOUND "
    assert len(world.dns.queries) == before


def test_bracketed_next_hop_uses_the_host(world, daemon):
    d = world.new_domain("relay")
    world.publish(d)
    assert daemon.query(f"[{d.upper()}]:587") == secure(d)


def test_invalid_keys_still_answered(daemon):
    for key in ["no spaces allowed.example", "\u00ff\u00fe", "a" * 300, "x..y"]:
        assert daemon.query(key) == "NOTFOUND "


def test_cname_to_provider_fetches_from_policy_domain(world, daemon):
    d = world.new_domain()
    world.publish(d)
    world.dns.set(f"_mta-sts.{d}", "TXT")
    world.dns.set(f"_mta-sts.{d}", "CNAME", "_mta-sts.provider.example.")
    world.dns.set("_mta-sts.provider.example", "TXT", '"v=STSv1; id=p1;"')
    assert daemon.query(d) == secure(d)
    assert world.fetches(d) == 1
    assert world.host.paths("mta-sts.provider.example") == []


def test_multistring_txt(world, daemon):
    d = world.new_domain()
    world.publish(d)
    world.dns.set(f"_mta-sts.{d}", "TXT", '"v=STSv1; id=ab" "cd"')
    assert daemon.query(d) == secure(d)
    assert json.loads(daemon.cli("cache", "show", d, "--json").stdout)["entry"]["policy_id"] == "abcd"


def test_two_records_mean_no_policy(world, daemon):
    d = world.new_domain()
    world.publish(d)
    world.dns.set(f"_mta-sts.{d}", "TXT", '"v=STSv1; id=a;"', '"v=STSv1; id=b;"')
    assert daemon.query(d) == "NOTFOUND "
    assert world.fetches(d) == 0


@pytest.mark.parametrize("failure", ["servfail", "drop"])
def test_dns_failure_means_no_policy(world, daemon, failure):
    d = world.new_domain()
    world.publish(d)
    getattr(world.dns, failure).add(f"_mta-sts.{d}")
    try:
        assert daemon.query(d) == "NOTFOUND "
    finally:
        getattr(world.dns, failure).discard(f"_mta-sts.{d}")
    # Held briefly (failure_ttl = 1 s), then discovered for real.
    assert wait_for(lambda: daemon.query(d) == secure(d), timeout=5)


def test_idn_domain(world, daemon):
    d = "xn--bcher-kva.example"
    world.publish(d)
    assert daemon.query("b\u00fccher.example") == secure(d)


# -- B: hostile policy hosts ---------------------------------------------------------------

HOSTILE = {
    "404": dict(status=404),
    "500": dict(status=500),
    "204": dict(status=204),
    "304": dict(status=304, headers={"ETag": '"x"'}),
    "redirect": dict(status=301, headers={"Location": "https://mta-sts.good.example/.well-known/mta-sts.txt"}),
    "redirect-308": dict(status=308, headers={"Location": "/elsewhere"}),
    "html": dict(content_type="text/html"),
    "no-content-type": dict(content_type=None),
    "html-body": dict(body=b"<html><body>captive portal</body></html>\n"),
    "huge": dict(chunked_size=10 * 1024 * 1024),
    "trickle": dict(trickle=0.5),
    "hang": dict(hang=True),
    "wrong-name": dict(cert="wrong-name"),
    "expired": dict(cert="expired"),
    "not-yet-valid": dict(cert="not-yet-valid"),
    "untrusted": dict(cert="untrusted"),
    "cn-only": dict(cert="cn-only"),  # §3.3: DNS-ID only (RFC 6125), no CN fallback
}
# What the log must give as the reason: each case fails for its own reason.
REASON = {
    "404": "(http-status: ",
    "500": "(http-status: ",
    "204": "HTTP 204",
    "304": "HTTP 304",
    "redirect": "(redirect: ",
    "redirect-308": "HTTP 308 redirect",
    "html": "Content-Type 'text/html'",
    "no-content-type": "Content-Type None",
    "html-body": "(invalid-policy: ",
    "huge": "body over 65536 bytes",
    "trickle": "(timeout: ",
    "hang": "(timeout: ",
    "wrong-name": "Hostname mismatch",
    "expired": "certificate has expired",
    "not-yet-valid": "certificate is not yet valid",
    "untrusted": "unable to get local issuer certificate",
    "cn-only": "Hostname mismatch",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_server_means_no_policy(world, daemon, kind):
    d = world.new_domain(kind.replace("-", ""))
    world.publish(d, **HOSTILE[kind])
    started = time.monotonic()
    assert daemon.query(d) == "NOTFOUND "
    assert time.monotonic() - started < 6  # the fetch deadline is 3 s
    assert "policy fetch failed" in daemon.log()
    reason = [line for line in daemon.log().splitlines() if f"{d}: policy fetch failed" in line]
    assert len(reason) == 1 and REASON[kind] in reason[0], reason
    assert daemon.query(d) == "NOTFOUND "  # §3.3 back-off: held, no second fetch for this id
    assert len([line for line in daemon.log().splitlines() if f"{d}: policy fetch failed" in line]) == 1
    assert daemon.proc.poll() is None
    if kind == "redirect":
        assert world.host.paths("mta-sts.good.example") == []


@pytest.mark.parametrize("kind", ["404", "wrong-name", "html-body", "huge", "hang", "redirect"])
def test_hostile_server_never_replaces_a_cached_policy(world, daemon, kind):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    world.publish(d, policy_id="2", **HOSTILE[kind])
    time.sleep(1.2)  # txt_recheck = 1 s
    daemon.query(d)  # starts the background check
    assert wait_for(lambda: "refresh of the enforce policy failed" in daemon.log(), timeout=8)
    assert daemon.query(d) == secure(d)
    assert f"{d}: refresh of the enforce policy failed (policy id changed to 2)" in daemon.log()


@pytest.mark.parametrize("version,ok", [("1.2", True), ("1.3", True), ("1.1", False)])
def test_b31_tls_versions(world, daemon, version, ok):
    d = world.new_domain()
    world.publish(d, tls=version)
    assert daemon.query(d) == (secure(d) if ok else "NOTFOUND ")
    if not ok:  # the obsolete server hangs up on our TLS 1.2+ ClientHello
        assert f"{d}: policy fetch failed (connect: " in daemon.log()
        assert "closed the connection during the TLS handshake" in daemon.log()


def test_b41_delegated_policy_host_needs_certificate_for_policy_host(world, daemon):
    d = world.new_domain()
    world.publish(d)
    world.dns.set(f"mta-sts.{d}", "A")
    world.dns.set(f"mta-sts.{d}", "CNAME", "mta-sts.provider.example.")
    world.dns.set("mta-sts.provider.example", "A", world.host.ip)
    assert daemon.query(d) == secure(d)  # the provider presents a certificate for mta-sts.<d>
    e = world.new_domain()
    world.publish(e, cert="wrong-name")  # a certificate for another name only
    world.dns.set(f"mta-sts.{e}", "A")
    world.dns.set(f"mta-sts.{e}", "CNAME", "mta-sts.provider.example.")
    assert daemon.query(e) == "NOTFOUND "


def test_wildcard_certificate_accepted(world, daemon):
    d = world.new_domain()
    world.publish(d, cert="wildcard")
    assert daemon.query(d) == secure(d)


def test_content_type_parameters_accepted(world, daemon):
    # §3.2 text/plain; the RFC says nothing of charset: iso-8859-1 is accepted and decoded as UTF-8.
    for ct in [
        "text/plain; charset=utf-8",
        "Text/Plain",
        "text/plain;charset=US-ASCII",
        "text/plain; format=flowed",
        "text/plain; charset=iso-8859-1",
    ]:
        d = world.new_domain()
        world.publish(d, content_type=ct)
        assert daemon.query(d) == secure(d), ct


def test_body_at_size_limit(world, daemon):
    d = world.new_domain()
    body = policy_text(domain=d)
    body += b"x: " + b"a" * (65536 - len(body) - 5) + b"\r\n"
    assert len(body) == 65536
    world.publish(d, body)
    assert daemon.query(d) == secure(d)
    e = world.new_domain()
    world.publish(e, body.replace(b"x: ", b"x: a").replace(d.encode(), e.encode()))
    assert daemon.query(e) == "NOTFOUND "


# -- E: cache upkeep -------------------------------------------------------------------------


def test_id_change_fetches_new_policy_in_background(world, daemon):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    world.publish(d, policy_text(mx=("new.{d}",), domain=d), policy_id="2")
    time.sleep(1.2)
    assert daemon.query(d) == secure(d)  # answered from cache while the check runs
    assert wait_for(lambda: daemon.query(d) == f"OK secure match=new.{d} servername=hostname")
    assert "policy changed" in daemon.log()


def test_same_id_means_no_fetch(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    time.sleep(1.2)
    daemon.query(d)
    assert wait_for(lambda: world.dns.count(f"_mta-sts.{d}") >= 2)
    time.sleep(0.3)
    assert world.fetches(d) == 1


def test_txt_gone_keeps_policy(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    world.dns.set(f"_mta-sts.{d}", "TXT")
    time.sleep(1.2)
    daemon.query(d)
    assert wait_for(lambda: world.dns.count(f"_mta-sts.{d}") >= 2)
    time.sleep(0.3)
    assert daemon.query(d) == secure(d)


def test_mode_none_replaces_enforce(world, daemon):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    world.publish(d, policy_text(mode="none", mx=(), max_age=86400, domain=d), policy_id="2")
    time.sleep(1.2)
    daemon.query(d)
    assert wait_for(lambda: daemon.query(d) == "NOTFOUND ")


def test_expired_policy_is_not_revived_without_fetch(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_text(max_age=2, domain=d))
    assert daemon.query(d) == secure(d)
    world.host.sites[f"mta-sts.{d}"].status = 500
    time.sleep(2.2)
    assert daemon.query(d) == "NOTFOUND "
    show = json.loads(daemon.cli("cache", "show", d, "--json").stdout)["entry"]
    assert show["state"] == "expired" and show["valid"] is False


def test_concurrent_lookups_share_one_discovery(world, daemon):
    d = world.new_domain()
    world.publish(d, trickle=0.01)

    def one(_):
        s = daemon.connect()
        try:
            s.sendall(netstring(f"postfix {d}".encode()))
            return read_netstring(s).decode()
        finally:
            s.close()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert answers == [secure(d)] * 32
    assert world.dns.count(f"_mta-sts.{d}") == 1
    assert world.fetches(d) == 1


def test_restart_serves_cache_without_network(world, make_daemon):
    daemon = make_daemon()
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    daemon.stop(signal.SIGKILL)  # survives kill -9: WAL keeps committed writes
    world.dns.servfail.add(f"_mta-sts.{d}")
    world.host.sites[f"mta-sts.{d}"].status = 500
    about_d = lambda: [q for q in world.dns.queries if q[0].endswith(d)]  # noqa: E731 (not the DANE probe)
    queries = len(about_d())
    try:
        daemon.start()
        assert daemon.query(d) == secure(d)
        assert len(about_d()) == queries  # the policy and its DANE state both came from the store
    finally:
        world.dns.servfail.discard(f"_mta-sts.{d}")


def test_memory_backend(world, make_daemon):
    daemon = make_daemon(start=False)
    daemon.config.write_text(daemon.config.read_text().replace('path = "', 'backend = "memory"\npath = "'))
    daemon.start()
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d) == secure(d)
    assert "memory only" in daemon.log()
