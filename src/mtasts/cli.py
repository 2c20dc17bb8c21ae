"""The ``mtasts`` command line.

    mtasts serve [--config PATH]
    mtasts query DOMAIN [--map NAME] [--json]
    mtasts doctor [--json]
    mtasts cache list | show DOMAIN | purge DOMAIN | purge --all | refresh DOMAIN | stats  [--json]
    mtasts cache history DOMAIN [--json] | export --postfix [--map NAME] | warm FILE|-
    mtasts override add DOMAIN --until 48h --reason TEXT [--level may|encrypt|none] [--dane] | list | remove DOMAIN
    mtasts check DOMAIN [--json]
    mtasts publish records [DOMAIN] | policy DOMAIN | write DIR | snippet DOMAIN
    mtasts reports ingest | list | show REPORT-ID | summary | digest

Parsing and dispatch only: the commands live in ``mtasts.commands`` (``serve`` in
``mtasts.daemon``), their exit codes in ``mtasts.exits``. Each is imported only when it
runs: ``reports ingest``, run once per report mail, loads no DNS or HTTP library.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Optional, Sequence, Tuple

from mtasts import __version__
from mtasts.config import Config, load_config
from mtasts.errors import ConfigError, DaemonNotRunning, MtastsError, UsageError
from mtasts.exits import EXIT_CONFIG, EXIT_NOPERM, EXIT_RUNTIME, EXIT_UNAVAILABLE, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """Usage errors exit EX_USAGE (64), like every other usage error of mtasts."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtasts", description="MTA-STS (RFC 8461) policy daemon for Postfix")
    parser.add_argument("--version", action="version", version=f"mtasts {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", "-c", metavar="PATH", help="TOML configuration (default /etc/mtasts/mtasts.toml if present)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve", parents=[common], help="run the daemon (resolver, and publisher if domains are configured)"
    )
    serve.add_argument("--only", choices=("resolver", "publisher"), help="run just one of the two")
    serve.add_argument(
        "--takeover",
        action="store_true",
        help="replace the running resolver without a gap: listen beside it (SO_REUSEPORT, unix sockets"
        " renamed over), then it drains and stops",
    )

    query = sub.add_parser("query", parents=[common], help="discover a domain's policy live (no cache)")
    query.add_argument("domain", help="a recipient domain or a next hop as Postfix sends it ([relay]:587, ...)")
    query.add_argument("--map", default="postfix", help="map profile for the Postfix answer (default: postfix)")
    query.add_argument("--json", action="store_true", help="machine-readable output")

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="check that the local Postfix reaches the daemon and can use its answers"
        " (exit 0 ok, 1 warning, 2 failure, 3 Postfix unknown)",
    )
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
    p.add_argument(
        "--dir", default="/var/www/mta-sts", help="where 'publish write' put the files (default /var/www/mta-sts)"
    )

    override = sub.add_parser("override", help="exemptions: another answer for one domain, until a given time")
    override_sub = override.add_subparsers(dest="action", metavar="ACTION")
    override_sub.required = True
    p = override_sub.add_parser("add", parents=[common], help="answer LEVEL for DOMAIN until --until")
    p.add_argument("domain", help="the recipient domain (next hop) to exempt")
    p.add_argument("--until", required=True, help="48h, 30m, 7d, 2w, or a UTC date such as 2026-12-24T18:00")
    p.add_argument("--reason", required=True, help="why (logged with every use, shown by list)")
    p.add_argument(
        "--level",
        choices=("may", "encrypt", "none"),
        default="may",
        help="Postfix's TLS level for the domain meanwhile (default may)",
    )
    p.add_argument(
        "--dane",
        action="store_true",
        help="also over DANE (default: where the domain has usable TLSA records, DANE still applies)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = override_sub.add_parser("list", parents=[common], help="the overrides in force")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = override_sub.add_parser("remove", parents=[common], help="end DOMAIN's override now")
    p.add_argument("domain", help="the exempted domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    reports = sub.add_parser("reports", help="TLSRPT reports received for the published domains (RFC 8460)")
    reports_sub = reports.add_subparsers(dest="action", metavar="ACTION")
    reports_sub.required = True
    reports_sub.add_parser(
        "ingest",
        parents=[common],
        help="store the report in the mail on stdin (a Postfix pipe transport; exit 0 unless a local fault, 75)",
    )
    for name, text in (
        ("list", "the reports received"),
        ("summary", "per domain and day: sessions, failures, advice"),
        ("digest", "a plain-text summary for a daily mail"),
    ):
        p = reports_sub.add_parser(name, parents=[common], help=text)
        p.add_argument(
            "--since",
            default="1d" if name == "digest" else "7d",
            help="24h, 7d, 2w or a UTC date (default %(default)s)",
        )
        p.add_argument("--domain", help="only this policy domain")
        if name != "digest":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            p.add_argument(
                "--mail-to",
                default="",
                metavar="ADDRESS",
                help="print a whole message to ADDRESS, for 'sendmail -t' (the timer unit does this)",
            )
    p = reports_sub.add_parser("show", parents=[common], help="one report: failures with advice, and its JSON")
    p.add_argument("report_id", metavar="REPORT-ID", help="as 'reports list' shows it")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    cache = sub.add_parser("cache", help="inspect and change the policy cache")
    cache_sub = cache.add_subparsers(dest="action", metavar="ACTION")
    cache_sub.required = True
    for name, text in (("list", "every cached domain"), ("stats", "cache and lookup counters")):
        p = cache_sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (
        ("show", "one domain's entry"),
        ("refresh", "discover a domain again now"),
        ("history", "when the domain's policy or DANE state changed, and downgrades"),
    ):
        p = cache_sub.add_parser(name, parents=[common], help=text)
        p.add_argument("domain", help="a cached domain")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    warm = cache_sub.add_parser(
        "warm", parents=[common], help="discover a list of domains now (e.g. the top recipient domains)"
    )
    warm.add_argument(
        "file", help="one domain per line (text after the first word and # comments ignored); - for stdin"
    )
    export = cache_sub.add_parser(
        "export", parents=[common], help="the current answers as a static smtp_tls_policy_maps table (postmap)"
    )
    export.add_argument(
        "--postfix",
        action="store_true",
        required=True,
        help="Postfix table lines: DOMAIN LEVEL ATTRIBUTES (the one format)",
    )
    export.add_argument("--map", default="postfix", help="map profile for the answers (default: postfix)")
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


# The first class that matches names the exit code (mtasts.commands lists them).
_EXIT_CODES = (
    (UsageError, EXIT_USAGE),
    (ConfigError, EXIT_CONFIG),
    (DaemonNotRunning, EXIT_UNAVAILABLE),
    (PermissionError, EXIT_NOPERM),
    ((MtastsError, OSError), EXIT_RUNTIME),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, args = parseargs(argv)
    try:
        return _run(load_config(args.config), args)
    except KeyboardInterrupt:
        return 130
    except (MtastsError, OSError) as exc:
        print(f"mtasts: {exc}", file=sys.stderr)
        return next(code for kinds, code in _EXIT_CODES if isinstance(exc, kinds))


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.command == "serve":
        from mtasts.daemon import serve, setup_logging

        setup_logging(config.log.level, config.log.format)
        return asyncio.run(serve(config, args.config, args.only, args.takeover))
    if args.command == "query":
        from mtasts.commands.query import query_command

        return asyncio.run(query_command(config, args))
    if args.command == "doctor":
        from mtasts.commands.doctor import doctor_command

        return doctor_command(config, args.json)
    if args.command == "check":
        from mtasts.commands.check import check_command

        return check_command(config, args)
    if args.command == "override":
        from mtasts.commands.override import override_command

        return override_command(config, args)
    if args.command == "reports":
        from mtasts.commands.reports import reports_command

        return reports_command(config, args)
    if args.command == "publish":
        from mtasts.commands.publish import publish_command

        return publish_command(config, args)
    from mtasts.commands.cache import cache_command

    return cache_command(config, args)
