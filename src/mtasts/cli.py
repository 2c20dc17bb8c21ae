"""The ``mtasts`` command line.

    mtasts serve [--config PATH]
    mtasts query DOMAIN [--map NAME] [--json]
    mtasts doctor [--json]
    mtasts cache list | show DOMAIN | purge DOMAIN | purge --all | refresh DOMAIN | stats  [--json]

``cache`` commands talk to the running daemon over its control socket, so a purge or
refresh takes effect at once; with the daemon stopped they work on the SQLite store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mtasts import __version__
from mtasts.config import Config, load_config
from mtasts.errors import ConfigError, MtastsError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtasts", description="MTA-STS (RFC 8461) policy daemon for Postfix")
    parser.add_argument("--version", action="version", version=f"mtasts {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="PATH", help="TOML configuration (default /etc/mtasts/mtasts.toml if present)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", parents=[common], help="run the daemon (resolver, and publisher if domains are configured)")
    serve.add_argument("--only", choices=("resolver", "publisher"), help="run just one of the two")

    query = sub.add_parser("query", parents=[common], help="discover a domain's policy live (no cache)")
    query.add_argument("domain", help="a recipient domain or a next hop as Postfix sends it ([relay]:587, ...)")
    query.add_argument("--map", default="postfix", help="map profile for the Postfix answer (default: postfix)")
    query.add_argument("--json", action="store_true", help="machine-readable output")

    doctor = sub.add_parser("doctor", parents=[common],
                            help="check that the local Postfix reaches the daemon and can use its answers"
                                 " (exit 0 ok, 1 warning, 2 failure, 3 Postfix unknown)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    check = sub.add_parser("check", parents=[common], help="check a domain's live MTA-STS publication")
    check.add_argument("domain", help="the domain whose publication to check")
    check.add_argument("--json", action="store_true", help="machine-readable output")

    publish = sub.add_parser("publish", help="the local domains' policies and DNS records")
    publish_sub = publish.add_subparsers(dest="action", metavar="ACTION")
    publish_sub.required = True
    p = publish_sub.add_parser("records", parents=[common], help="the DNS records to publish")
    p.add_argument("domain", nargs="?", help="one of [publish.domains] (default: all)")
    p.add_argument("--format", choices=("zone", "json"), default="zone", help="zone file lines or JSON (default zone)")
    p = publish_sub.add_parser("policy", parents=[common], help="print a domain's policy file")
    p.add_argument("domain", help="one of [publish.domains]")
    p = publish_sub.add_parser("write", parents=[common], help="write DIR/<domain>/mta-sts.txt for another web server")
    p.add_argument("dir", help="the web server's directory for the policy files")
    p = publish_sub.add_parser("snippet", parents=[common], help="an Apache or nginx vhost serving the written policy")
    p.add_argument("server", choices=("apache", "nginx"), help="the web server")
    p.add_argument("domain", help="one of [publish.domains]")
    p.add_argument("--dir", default="/var/www/mta-sts", help="where 'publish write' put the files (default /var/www/mta-sts)")

    cache = sub.add_parser("cache", help="inspect and change the policy cache")
    cache_sub = cache.add_subparsers(dest="action", metavar="ACTION")
    cache_sub.required = True
    for name, text in (("list", "every cached domain"), ("stats", "cache and lookup counters")):
        p = cache_sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("show", "one domain's entry"), ("refresh", "discover a domain again now")):
        p = cache_sub.add_parser(name, parents=[common], help=text)
        p.add_argument("domain", help="a cached domain")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    purge = cache_sub.add_parser("purge", parents=[common], help="forget one domain, or --all")
    purge.add_argument("domain", nargs="?", help="the domain to forget")
    purge.add_argument("--all", action="store_true", help="forget every cached domain")
    purge.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def parseargs(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "cache" and args.action == "purge" and bool(args.domain) == bool(args.all):
        parser.error("cache purge needs a DOMAIN or --all (not both)")
    return parser, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    _parser_, args = parseargs(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mtasts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "serve":
            from mtasts.daemon import serve, setup_logging

            setup_logging(config.log_level)
            return asyncio.run(serve(config, args.config, args.only))
        if args.command == "query":
            return asyncio.run(query(config, args))
        if args.command == "doctor":
            from mtasts.doctor import doctor_command

            return doctor_command(config, args.json)
        if args.command == "check":
            from mtasts.check import check_command

            return check_command(config, args)
        if args.command == "publish":
            from mtasts.publish import publish_command

            return publish_command(config, args)
        return cache_command(config, args)
    except KeyboardInterrupt:
        return 130
    except MtastsError as exc:
        print(f"mtasts: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- query -------------------------------------------------------------------------


async def query(config: Config, args: argparse.Namespace) -> int:
    from mtasts.core.dane import dane_applies, final_reply
    from mtasts.core.nexthop import next_hop
    from mtasts.core.postfixcaps import fit_profiles
    from mtasts.core.reply import tls_policy_reply
    from mtasts.discovery import discover
    from mtasts.net.dane import DaneChecker
    from mtasts.net.dns import DnsClient
    from mtasts.net.fetch import PolicyFetcher, policy_url
    from mtasts.postconf import learn_postfix
    from mtasts.views import dane_to_json

    hop = next_hop(args.domain)
    if hop is None:
        # Not "no policy" (exit 1): the argument itself is unusable.
        print(f"mtasts: {args.domain!r}: no MTA-STS lookup for this key (a parent-domain probe, an IP literal,"
              " or not a domain); Postfix gets NOTFOUND for it", file=sys.stderr)
        return EXIT_USAGE
    domain = hop.domain
    # The answer the daemon would give: profiles fitted to the Postfix that reads them.
    info = learn_postfix(config, quiet=True)
    maps, default, _warnings = fit_profiles(config.maps, config.default_profile, info)
    profile = maps.get(args.map) or default
    report: Dict[str, Any] = {"key": args.domain, "domain": domain, "postfix": info.describe()}
    dns_client = DnsClient(config.nameservers, config.dns_timeout)
    fetcher = PolicyFetcher(dns_client, config.fetch_timeout, config.ca_file)
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
    answer = tls_policy_reply(domain, found.policy, profile)
    dane = None
    if dane_applies(answer, config.dane_mode, profile.dane):  # checked as the daemon does
        checker = DaneChecker(dns_client, config.failure_ttl, config.dane_min_ttl, config.dane_max_ttl)
        dane = await checker.check(hop, time.time())
        report["dane"] = dane_to_json(dane, time.time())
    report["answer"] = final_reply(answer, config.dane_mode, profile.dane, dane).decode()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_query(report)
    return EXIT_OK if found.policy is not None else EXIT_FAIL


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
        _print_dane(report["dane"])
    print(f"postfix: {report['postfix']}")
    print(f"answer:  {report['answer']}")


def _print_dane(dane: Dict[str, Any]) -> None:
    """DANE state and the TLSA records seen per MX host (query, cache show)."""
    print(f"{'dane:':16}{dane['state']}" + (f" ({dane['detail']})" if dane.get("detail") else ""))
    for host in dane["hosts"]:
        at = f" (TLSA at {host['tlsa_name']})" if host.get("tlsa_name") else ""
        print(f"  {host['host']}: {host['state']}{at}")
        for record in host["tlsa"]:
            print(f"    TLSA {record}")


# -- cache ---------------------------------------------------------------------------


class DaemonNotRunning(Exception):
    pass


def control_request(path: str, request: Dict[str, Any], timeout: float = 60.0) -> Dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(path) from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    try:
        return json.loads(data)
    except ValueError:
        raise MtastsError(f"the daemon at {path} sent no usable answer ({len(data)} bytes); see its log") from None


def cache_command(config: Config, args: argparse.Namespace) -> int:
    from mtasts.daemon import with_state_dir

    action = args.action
    request: Dict[str, Any] = {"command": "purge_all" if action == "purge" and args.all else action}
    if getattr(args, "domain", None):
        request["domain"] = args.domain
    try:
        config = with_state_dir(config)
    except ConfigError:
        pass
    try:
        response = control_request(config.control_path, request)
        via = "daemon"
    except DaemonNotRunning:
        # Say which store is read: another user than the daemon's gets another state
        # directory, and an empty store there is no proof that the daemon's is empty.
        if config.cache_backend != "memory" and not os.path.exists(config.cache_path):
            print(f"mtasts: no daemon answered at {config.control_path}, and there is no cache at {config.cache_path}"
                  " (is the daemon running, as another user, or with another --config?)", file=sys.stderr)
            return EXIT_FAIL
        print(f"mtasts: no daemon answered at {config.control_path}: reading the store {config.cache_path}",
              file=sys.stderr)
        response = asyncio.run(_offline(config, request))
        via = f"store {config.cache_path}"
    except PermissionError:
        print(f"mtasts: no permission to use the control socket {config.control_path}", file=sys.stderr)
        return EXIT_USAGE
    if not response.get("ok"):
        print(f"mtasts: {response.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    response["via"] = via
    if args.json:
        response.pop("ok", None)
        print(json.dumps(response, indent=2))
    else:
        _print_cache(action, response)
    # "not cached" is the same answer in both forms: exit 1, as query without a policy.
    if action == "show" and response.get("entry") is None:
        return EXIT_FAIL
    return EXIT_OK


async def _offline(config: Config, request: Dict[str, Any]) -> Dict[str, Any]:
    """Run a control command against the store with no daemon (and no listener)."""
    if config.cache_backend == "memory":
        raise MtastsError(f"the daemon is not running ({config.control_path}) and the memory cache has no store")
    from mtasts.daemon import open_cache
    from mtasts.net.dns import DnsClient
    from mtasts.net.fetch import PolicyFetcher
    from mtasts.resolver import PolicyResolver
    from mtasts.servers.control import ControlServer

    cache = open_cache(config)
    dns_client = DnsClient(config.nameservers, config.dns_timeout)
    fetcher = PolicyFetcher(dns_client, config.fetch_timeout, config.ca_file)
    await fetcher.start()
    resolver = PolicyResolver(config, cache, dns_client, fetcher)
    await resolver.start()
    try:
        return await ControlServer(resolver, config.control_path).execute(request)
    finally:
        await resolver.close()
        await fetcher.close()
        cache.close()


def _print_cache(action: str, response: Dict[str, Any]) -> None:
    if action == "list":
        rows: List[List[str]] = [["DOMAIN", "STATE", "MODE", "ID", "EXPIRES", "MX"]]
        for e in response["entries"]:
            rows.append([e["domain"], e["state"], e["mode"] or "-", e["policy_id"] or "-",
                         e["expires_at"] or (e["hold_until"] or "-"), ",".join(e["mx"]) or "-"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        count = len(rows) - 1
        print(f"({count} {'entry' if count == 1 else 'entries'}, from the {response['via']})")
    elif action in ("show", "refresh"):
        entry = response.get("entry")
        if entry is None:
            print("not cached")
            return
        for key, value in entry.items():
            if key in ("policy", "dane"):
                continue
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key + ':':16}{'-' if value is None else value}")
        if entry.get("policy"):
            print("policy:")
            for line in entry["policy"].splitlines():
                print(f"  | {line}")
        if entry.get("dane"):
            _print_dane(entry["dane"])
        if "answer" in response:
            print(f"{'answer:':16}{response['answer']}")
    elif action == "purge":
        print(f"purged {response['purged']} entr{'y' if response['purged'] == 1 else 'ies'} (via the {response['via']})")
    elif action == "stats":
        for key, value in response["stats"].items():
            print(f"{key + ':':26}{value}")
        print(f"(from the {response['via']})")
