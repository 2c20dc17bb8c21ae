"""The e2e world, run inside the test network namespace:

    ip netns exec NS python -m tests.e2e.world SPEC.json

DNS on SPEC's dns_ip (127.0.0.53, where the namespace's resolv.conf points, unless a
validating resolver sits there), the HTTPS policy host, and receiving MX hosts on
127.8.7.x:25, whose certificates it also writes to OUTDIR/certs/NAME.pem (for TLSA records).
Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import ssl
import sys

import trustme

from tests.support.dnsserver import TestDns
from tests.support.policyhost import POLICY_HOST_IP, PolicyHost, Site
from tests.support.receiver import SmtpReceiver


def main(spec_path: str) -> None:
    spec = json.loads(pathlib.Path(spec_path).read_text())
    dns = TestDns(spec["dns_ip"], 53)
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
    (outdir / "certs").mkdir(exist_ok=True)
    for mx in spec["mx"]:  # {"ip": ..., "name": ..., "cert_name": ...}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert = host.ca.issue_cert(mx["cert_name"], key_type=trustme.KeyType.ECDSA)
        cert.configure_cert(ctx)
        cert.cert_chain_pems[0].write_to_path(str(outdir / "certs" / f"{mx['name']}.pem"))
        loop.run_until_complete(
            loop.create_server(
                lambda ctx=ctx, name=mx["name"]: SmtpReceiver(ctx, outdir, name), mx["ip"], 25, reuse_address=True
            )
        )
    print("ready", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    host.close()
    dns.close()


if __name__ == "__main__":
    main(sys.argv[1])
