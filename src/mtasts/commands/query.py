"""``mtasts query KEY``: discover a domain's policy live, as the daemon would, without the cache."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Dict, Optional

from mtasts.commands.client import control_request
from mtasts.commands.output import describe_override, print_dane
from mtasts.config import Config, user_state_dir
from mtasts.core.answer import compose, needs_dane
from mtasts.core.dane import DaneResult
from mtasts.core.nexthop import next_hop
from mtasts.core.override import Override
from mtasts.core.policy import Policy
from mtasts.core.postfixcaps import fit_profiles
from mtasts.core.reply import MapProfile, tls_policy_reply
from mtasts.errors import DaemonNotRunning, MtastsError, UsageError
from mtasts.exits import EXIT_NO, EXIT_OK
from mtasts.net.dane import DaneChecker
from mtasts.net.dns import DnsClient
from mtasts.net.fetch import PolicyFetcher, policy_url
from mtasts.resolver.discovery import discover
from mtasts.servers.jsonviews import dane_to_json, override_view


async def query_command(config: Config, args: argparse.Namespace) -> int:
    from mtasts.daemon.postfix import learn_postfix

    hop = next_hop(args.domain)
    if hop is None:
        # Not "no policy" (exit 1): the argument itself is unusable.
        raise UsageError(
            f"{args.domain!r}: no MTA-STS lookup for this key (a parent-domain probe, an IP literal,"
            " or not a domain); Postfix gets NOTFOUND for it"
        )
    domain = hop.domain
    # The answer the daemon would give: profiles fitted to the Postfix that reads them.
    info = learn_postfix(config, quiet=True)
    maps, default, _warnings = fit_profiles(config.maps, config.default_profile, info)
    profile = maps.get(args.map) or default
    report: Dict[str, Any] = {"key": args.domain, "domain": domain, "postfix": info.describe()}
    dns_client = DnsClient(config.resolver.servers, config.resolver.timeout)
    fetcher = PolicyFetcher(dns_client, config.fetch.timeout, config.fetch.ca_file)
    await fetcher.start()
    try:
        found = await discover(dns_client, fetcher, domain)
    finally:
        await fetcher.close()
    lookup = found.lookup
    report["txt"] = {
        "name": lookup.name,
        "outcome": lookup.txt.outcome.value,
        "records": [t.decode("ascii", "replace") for t in lookup.txt.texts],
        "ms": round(lookup.seconds * 1000, 1),
    }
    if lookup.record is not None:
        report["txt"]["id"] = lookup.record.policy_id
    elif lookup.txt.texts:
        report["txt"]["error"] = lookup.error
    if found.fetch is not None:
        fetch: Dict[str, Any] = {"url": policy_url(domain)}
        if found.fetch.result is not None:
            policy = found.fetch.result.policy
            fetch["policy"] = found.fetch.result.body.decode("utf-8", "replace")
            fetch["mode"] = policy.mode.value
            fetch["mx"] = [p.text for p in policy.mx]
            fetch["max_age"] = policy.max_age
        else:
            assert found.fetch.error is not None
            fetch["error"] = str(found.fetch.error)
            fetch["result_type"] = found.fetch.error.result_type
        fetch["ms"] = round(found.fetch.seconds * 1000, 1)
        report["fetch"] = fetch
    view = _override_in_force(config, domain)
    override = None
    if view is not None:  # what the daemon applies: its level, below DANE unless it says otherwise
        report["override"] = view
        override = Override(domain, view["level"], None, view.get("reason", ""), bool(view.get("dane")))
    dane = None
    if needs_dane(tls_policy_reply(domain, found.policy, profile), override, config.dane.mode, profile.dane):
        checker = DaneChecker(dns_client, config.cache.failure_ttl, config.dane.min_ttl, config.dane.max_ttl)
        dane = await checker.check(hop, time.time())  # checked as the daemon does
        report["dane"] = dane_to_json(dane, time.time())
    report["answer"] = query_answer(domain, found.policy, override, profile, config.dane.mode, dane).decode()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_query(report)
    return EXIT_OK if found.policy is not None else EXIT_NO


def query_answer(
    domain: str,
    policy: Optional[Policy],
    override: Optional[Override],
    profile: MapProfile,
    dane_mode: str,
    dane: Optional[DaneResult],
) -> bytes:
    """The answer ``query`` reports: the daemon's rule (``core.answer``) over what was found."""
    answer = compose(tls_policy_reply(domain, policy, profile), override, dane_mode, profile.dane, dane)
    if not isinstance(answer, bytes):
        raise AssertionError("DANE is checked wherever it applies before the answer is composed")
    return answer


def _override_in_force(config: Config, domain: str) -> Optional[Dict[str, Any]]:
    """*domain*'s override (its view) as the daemon applies it: the running daemon's, asked
    on its control socket (where ``cache`` commands find it, without making directories),
    else the configuration file's."""

    sockets = [config.control_path]
    if "path" not in config.cache.given and not config.control.socket:  # an ordinary user's daemon
        sockets.append(os.path.join(user_state_dir(), "control.sock"))
    for path in sockets:
        try:
            response = control_request(path, {"command": "override_list"}, timeout=5.0)
        except (DaemonNotRunning, OSError, MtastsError):
            continue
        return next((o for o in response.get("overrides", ()) if o.get("domain") == domain), None)
    override = config.overrides.get(domain)
    return override_view(override) if override is not None and override.active(time.time()) else None


def _print_query(report: Dict[str, Any]) -> None:
    print(f"key:     {report['key']}")
    txt = report["txt"]
    print(f"domain:  {report['domain']}")
    print(f"TXT:     {txt['name']}: {txt['outcome']} ({txt['ms']} ms)")
    for record in txt["records"]:
        print(f"         {record}")
    if "error" in txt:
        print(f"         unusable: {txt['error']}")
    fetch = report.get("fetch")
    if fetch:
        print(f"fetch:   {fetch['url']} ({fetch['ms']} ms)")
        if "error" in fetch:
            print(f"         failed: {fetch['error']} [{fetch['result_type']}]")
        else:
            for line in fetch["policy"].splitlines():
                print(f"         | {line}")
    if report.get("dane"):
        print_dane(report["dane"])
    if report.get("override"):
        print(f"override: {describe_override(report['override'])}")
    print(f"postfix: {report['postfix']}")
    print(f"answer:  {report['answer']}")
