"""``mtasts publish ...``: records, policy text, files and vhost snippets for the local domains."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from typing import List

from mtasts.config import Config
from mtasts.core.publication import PublishedDomain, policy_id, policy_text, records, zone_lines
from mtasts.errors import ConfigError, UsageError
from mtasts.exits import EXIT_OK
from mtasts.net.certificate import check_domain_files
from mtasts.net.dns import DnsClient


def _domains(config: Config, name) -> List[PublishedDomain]:
    if not config.publish.domains:
        raise ConfigError(f'{config.source}: no [publish.domains."..."] tables: nothing to publish')
    if name is None:
        return [config.publish.domains[k] for k in sorted(config.publish.domains)]
    domain = name.lower().rstrip(".")
    if domain not in config.publish.domains:
        known = ", ".join(sorted(config.publish.domains))
        raise UsageError(f"{name} is not one of [publish.domains] in {config.source} (configured: {known})")
    return [config.publish.domains[domain]]


def _with_detected_hosts(config: Config, domains: List[PublishedDomain]) -> List[PublishedDomain]:
    """Without host_addresses/host_cname, use what DNS has for mta-sts.<domain> now."""

    undetermined = [d for d in domains if not (d.host_addresses or d.host_cname)]
    if not undetermined:
        return domains

    async def lookup(client: DnsClient, host: str):
        try:
            return [address for _, address in await client.addresses(host)]
        except OSError:
            return []

    async def lookup_all():
        client = DnsClient(config.resolver.servers, config.resolver.timeout)
        return await asyncio.gather(*(lookup(client, d.policy_host) for d in undetermined))

    found = dict(zip((d.domain for d in undetermined), asyncio.run(lookup_all())))
    result = []
    for d in domains:
        addresses = found.get(d.domain)
        if addresses:
            print(
                f"mtasts: {d.policy_host}: no host_addresses configured, using the published ones "
                f"({', '.join(addresses)})",
                file=sys.stderr,
            )
            d = dataclasses.replace(d, host_addresses=tuple(addresses))
        result.append(d)
    return result


def publish_command(config: Config, args: argparse.Namespace) -> int:
    action = args.action
    if action == "records":
        domains = _with_detected_hosts(config, _domains(config, args.domain))
        if args.format == "json":
            print(json.dumps([r for d in domains for r in records(d, config.publish.ttl)], indent=2))
        else:
            for d in domains:
                print(f"; {d.domain}: policy {policy_id(policy_text(d))} (mode {d.mode.value})")
                print("\n".join(zone_lines(d, config.publish.ttl)))
                https_rua = f"https://{d.policy_host}{config.reports.https_path}"
                if config.reports.https_path and https_rua not in d.tlsrpt_rua:
                    # RFC 8460 §3: reports may also be POSTed; this publisher receives them.
                    print(f'; to receive TLSRPT reports here too (mtasts reports), add "{https_rua}" to tlsrpt_rua')
        for problem in check_domain_files(config.publish.domains, config.source, time.time()):
            print(f"mtasts: warning: {problem}", file=sys.stderr)
        return EXIT_OK
    if action == "policy":
        sys.stdout.flush()
        sys.stdout.buffer.write(policy_text(_domains(config, args.domain)[0]))  # exact bytes, CRLF kept
        return EXIT_OK
    if action == "write":
        for d in _domains(config, None):
            directory = os.path.join(args.dir, d.domain)
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, "mta-sts.txt")
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(policy_text(d))
            os.replace(tmp, path)  # never a half-written policy on the web server
            print(f"{path}\tid={policy_id(policy_text(d))}")
        return EXIT_OK
    if action == "snippet":
        d = _domains(config, args.domain)[0]
        print(snippet(args.server, d, args.dir))
        return EXIT_OK
    raise AssertionError(action)


def snippet(server: str, d: PublishedDomain, directory: str) -> str:
    policy = os.path.join(directory, d.domain, "mta-sts.txt")
    cert = d.cert or f"/etc/pki/tls/certs/{d.policy_host}.pem"
    key = d.key or f"/etc/pki/tls/private/{d.policy_host}.key"
    if server == "apache":
        return f"""# {d.policy_host}: serve the MTA-STS policy written by 'mtasts publish write {directory}'.
# No redirects on this name: senders must not follow them (RFC 8461 §3.3).
<VirtualHost *:443>
    ServerName {d.policy_host}
    SSLEngine on
    # TLS 1.2 and newer (RFC 8461 §3.3). Not "+TLSv1.3": EL7's httpd 2.4.6 refuses to start
    # on a protocol name it does not know; "all" means 1.2 there and 1.2 + 1.3 elsewhere.
    SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    DocumentRoot {os.path.join(directory, d.domain)}
    Alias /.well-known/mta-sts.txt {policy}
    <Location "/.well-known/mta-sts.txt">
        ForceType "text/plain; charset=utf-8"
        Require all granted
    </Location>
    RedirectMatch 404 ^/(?!\\.well-known/mta-sts\\.txt$)
</VirtualHost>"""
    return f"""# {d.policy_host}: serve the MTA-STS policy written by 'mtasts publish write {directory}'.
# No redirects on this name: senders must not follow them (RFC 8461 §3.3).
server {{
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name {d.policy_host};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /.well-known/mta-sts.txt {{
        default_type "text/plain; charset=utf-8";
        alias {policy};
    }}
    location / {{
        return 404;
    }}
}}"""
