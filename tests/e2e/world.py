"""The e2e world, run inside the test network namespace:

    ip netns exec NS python -m tests.e2e.world SPEC.json

DNS on 127.0.0.53:53 (the namespace's resolv.conf points there), the HTTPS policy host, and
receiving MX hosts on 127.8.7.x:25, all from SPEC. Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import ssl
import sys

import trustme

from tests.e2e.receiver import SmtpReceiver
from tests.integration.dnsserver import TestDns
from tests.integration.policyhost import POLICY_HOST_IP, PolicyHost, Site

DNS_IP = "127.0.0.53"


def main(spec_path: str) -> None:
    spec = json.loads(pathlib.Path(spec_path).read_text())
    dns = TestDns(DNS_IP, 53)
    host = PolicyHost()
    host.ca.cert_pem.write_to_path(spec["ca_file"])
    for name, rdtype, values in spec["records"]:
        dns.set(name, rdtype, *values)
    for policy_host, body in spec["policies"].items():
        dns.set(policy_host, "A", POLICY_HOST_IP)
        host.sites[policy_host] = Site(body=body.encode())
    outdir = pathlib.Path(spec["outdir"])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for mx in spec["mx"]:  # {"ip": ..., "name": ..., "cert_name": ...}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        host.ca.issue_cert(mx["cert_name"], key_type=trustme.KeyType.ECDSA).configure_cert(ctx)
        loop.run_until_complete(loop.create_server(
            lambda ctx=ctx, name=mx["name"]: SmtpReceiver(ctx, outdir, name), mx["ip"], 25, reuse_address=True))
    print("ready", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    host.close()
    dns.close()


if __name__ == "__main__":
    main(sys.argv[1])
