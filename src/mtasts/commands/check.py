"""``mtasts check DOMAIN``: check a live MTA-STS publication as a sender would.

Each finding is pass, warn, fail or info, with what to fix. Exit code: 0 all passed,
1 warnings only, 2 at least one failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass
from typing import List, Optional

from mtasts.config import Config
from mtasts.core.nexthop import policy_domain
from mtasts.core.policy import Mode, Policy
from mtasts.core.publication import policy_id, policy_text
from mtasts.core.tlsrpt import select_tlsrpt
from mtasts.errors import RecordError
from mtasts.net.dns import DnsClient, Outcome
from mtasts.net.fetch import PolicyFetcher, make_ssl_context, policy_url
from mtasts.net.smtp import probe_starttls
from mtasts.resolver.discovery import discover

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"
# RFC 8461 §10.2: short max_age values leave senders unprotected between fetches.
SHORT_MAX_AGE = 86400


@dataclass(frozen=True)
class Finding:
    status: str
    check: str
    message: str


async def check_domain(config: Config, name: str) -> List[Finding]:
    findings: List[Finding] = []
    add = lambda status, check, message: findings.append(Finding(status, check, message))  # noqa: E731
    domain = policy_domain(name)
    if domain is None:
        add(FAIL, "domain", f"{name!r} is not a domain that can publish MTA-STS")
        return findings
    dns_client = DnsClient(config.resolver.servers, config.resolver.timeout)
    fetcher = PolicyFetcher(dns_client, config.fetch.timeout, config.fetch.ca_file)
    await fetcher.start()
    try:
        # The TXT record and the policy are judged each on its own: fetched even without a record.
        found = await discover(dns_client, fetcher, domain, always_fetch=True)
    finally:
        await fetcher.close()

    # RFC 8461 §3.1: exactly one v=STSv1 TXT record with a valid id.
    lookup = found.lookup
    record = lookup.record
    if record is not None:
        add(PASS, "txt", f"{lookup.name}: id={record.policy_id}")
    elif lookup.txt.temporary:
        # Nothing else can be judged while DNS does not answer: one finding, at once.
        add(FAIL, "dns", dns_failure(f"{lookup.name} TXT", lookup.txt.outcome, dns_client))
        return findings
    elif lookup.txt.outcome is Outcome.RECORDS:
        add(FAIL, "txt", f"{lookup.name}: {lookup.error}")
    else:
        add(
            FAIL,
            "txt",
            f"{lookup.name}: no TXT record ({lookup.txt.outcome.value}); publish the record"
            " 'mtasts publish records' prints",
        )

    # RFC 8461 §3.3: the policy over HTTPS.
    policy: Optional[Policy] = found.policy
    body = b""
    assert found.fetch is not None
    if found.fetch.result is not None:
        body = found.fetch.result.body
        assert policy is not None
        add(
            PASS,
            "policy",
            f"{policy_url(domain)}: mode {policy.mode.value}, {len(policy.mx)} mx, max_age {policy.max_age}",
        )
        if policy.max_age < SHORT_MAX_AGE and policy.mode is not Mode.NONE:
            add(WARN, "policy", f"max_age {policy.max_age} is under a day; RFC 8461 §10.2 recommends weeks")
    else:
        assert found.fetch.error is not None
        add(FAIL, "policy", f"{found.fetch.error.detail} [{found.fetch.error.result_type}]")

    local = config.publish.domains.get(domain)
    if local is not None:
        expected = policy_id(policy_text(local))
        if record is not None and record.policy_id != expected:
            add(
                FAIL,
                "local",
                f"TXT id {record.policy_id} but the configured policy's id is {expected}: "
                "publish the _mta-sts record that 'mtasts publish records' prints",
            )
        elif record is not None:
            add(PASS, "local", "TXT id matches the configured policy")
        if policy is not None and body != policy_text(local):
            add(WARN, "local", "the served policy differs from the configured one (another server, or not reloaded?)")

    if policy is not None and policy.mode is Mode.NONE:
        add(
            INFO,
            "removal",
            "mode none: senders stop applying the old policy as their cached copies expire; "
            "remove the records only after the longest max_age you published before (RFC 8461 §8.3)",
        )

    # RFC 8461 §4.1: every MX must match a pattern; §10.4: wildcards cover hosts you may not control.
    mx_hosts = await _mx_hosts(dns_client, domain, add)
    if mx_hosts is None:
        return findings
    if policy is not None and policy.mode is not Mode.NONE:
        for pattern in policy.mx:
            if pattern.wildcard:
                add(
                    WARN,
                    "mx",
                    f"pattern {pattern.text} accepts any host directly under {pattern.base} (RFC 8461 §10.4)",
                )
        for host in mx_hosts:
            if policy.matches(host):
                add(PASS, "mx", f"{host} matches the policy")
            else:
                add(
                    FAIL if policy.mode is Mode.ENFORCE else WARN,
                    "mx",
                    f"{host} matches no mx pattern: senders {'will not deliver' if policy.mode is Mode.ENFORCE else 'would not deliver'} to it",
                )

    # RFC 8461 §4.2, §7.1: each MX's certificate, as a sender sees it after STARTTLS.
    smtp_context = make_ssl_context(config.fetch.ca_file)
    severity = FAIL if policy is not None and policy.mode is Mode.ENFORCE else WARN
    probes = await asyncio.gather(*(probe_starttls(dns_client, h, smtp_context) for h in mx_hosts))
    for host, probe in zip(mx_hosts, probes):
        add(PASS if probe.ok else severity, "starttls", f"{host}: {probe.detail}")

    # RFC 8460 §3: the TLSRPT record.
    rpt = await dns_client.txt("_smtp._tls." + domain)
    if rpt.outcome is Outcome.RECORDS:
        try:
            tlsrpt = select_tlsrpt(rpt.texts)
            if tlsrpt.usable:
                add(PASS, "tlsrpt", f"_smtp._tls.{domain}: reports to {', '.join(tlsrpt.usable)}")
            else:
                add(FAIL, "tlsrpt", f"_smtp._tls.{domain}: no mailto: or https: rua ({', '.join(tlsrpt.rua)})")
        except RecordError as exc:
            add(FAIL, "tlsrpt", f"_smtp._tls.{domain}: {exc}")
    elif rpt.temporary:
        add(FAIL, "dns", dns_failure(f"_smtp._tls.{domain} TXT", rpt.outcome, dns_client))
    else:
        add(
            WARN,
            "tlsrpt",
            f"_smtp._tls.{domain}: no TLSRPT record ({rpt.outcome.value}); you will get no failure reports",
        )

    # DANE (RFC 7672): informational; Postfix prefers DANE where it exists.
    for host in mx_hosts:
        outcome, rdata, _ = await dns_client.query(f"_25._tcp.{host}", "TLSA")
        if outcome is Outcome.RECORDS:
            add(INFO, "dane", f"{host}: {len(rdata)} TLSA record(s) (DANE applies where the zone is DNSSEC-signed)")
        else:
            add(INFO, "dane", f"{host}: no TLSA records")
    return findings


async def _mx_hosts(dns_client: DnsClient, domain: str, add) -> Optional[List[str]]:
    """The MX hosts to check; None when the domain cannot be checked further."""
    outcome, rdata, _detail = await dns_client.query(domain, "MX")
    if outcome is Outcome.RECORDS:
        hosts = [str(r.exchange).rstrip(".").lower() for r in sorted(rdata, key=lambda r: r.preference)]
        if hosts == [""]:
            add(INFO, "mx", f"{domain} has a null MX: it accepts no mail")
            return []
        return hosts
    if outcome is Outcome.NODATA:
        add(INFO, "mx", f"{domain} has no MX records: senders use the domain itself (implicit MX)")
        return [domain]
    if outcome is Outcome.NXDOMAIN:
        add(FAIL, "mx", f"{domain} does not exist (NXDOMAIN): no mail can be delivered to it")
        return None
    add(FAIL, "dns", dns_failure(f"{domain} MX", outcome, dns_client))
    return None


def dns_failure(what: str, outcome: Outcome, dns_client: DnsClient) -> str:
    servers = ", ".join(dns_client.nameserver_addresses) or "the system resolver"
    why = "no answer in time" if outcome is Outcome.TIMEOUT else "the nameserver failed or refused"
    return (
        f"DNS lookup of {what} failed at {servers}: {why} ({outcome.value}); nothing more can be checked"
        " until DNS answers"
    )


def summary(findings: List[Finding]) -> str:
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def check_command(config: Config, args: argparse.Namespace) -> int:
    findings = asyncio.run(check_domain(config, args.domain))
    result = summary(findings)
    if args.json:
        print(
            json.dumps({"domain": args.domain, "result": result, "findings": [asdict(f) for f in findings]}, indent=2)
        )
    else:
        for f in findings:
            print(f"{f.status.upper():5} {f.check:9} {f.message}")
        print(f"result: {result}")
    return {PASS: 0, WARN: 1, FAIL: 2}[result]
