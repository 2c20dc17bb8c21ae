"""Real Postfix with DANE: a domain with both DANE and an enforced MTA-STS policy.

In the namespace, Unbound (validating, 127.0.0.53, where resolv.conf points) serves the signed
zones Knot signs (127.0.0.55); Postfix runs with ``smtp_dns_support_level = dnssec`` and mtasts
as its policy map. dane.test lists two MX hosts, both with WebPKI-valid certificates and
covered by its MTA-STS policy; only mx1's certificate matches its TLSA record, and mx2 is
tried first. A ``secure`` answer would deliver to mx2; mtasts must answer ``dane-only`` and
Postfix deliver to mx1 only. webpki.test, signed without TLSA, shows the MTA-STS path.

The same world runs a second time with ``smtp_dns_support_level`` unset: that Postfix cannot
do DANE (``dane-only`` would be an invalid level, mail deferred), so mtasts, having read its
main.cf with postconf, answers ``secure`` and the mail goes out verified by MTA-STS.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.e2e.harness import ROOT, Sender, ns_popen, ns_run
from tests.support.dnssec import available
from tests.support.policies import policy_text
from tests.support.policyhost import POLICY_HOST_IP

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("postfix"), reason="Postfix is not installed (.ci/run installs it)"),
    pytest.mark.skipif(not available(), reason="knot and unbound are not installed (.ci/run installs them)"),
]

RESOLVER, PLAIN_DNS, KNOT = "127.0.0.53", "127.0.0.54", "127.0.0.55"
MX = {  # name -> address; mx2 has the better (lower) preference
    "mx1.dane.test": "127.8.7.21",
    "mx2.dane.test": "127.8.7.22",
    "mx1.webpki.test": "127.8.7.23",
    "mx2.webpki.test": "127.8.7.24",
}


def policy(domain):
    return policy_text(mx=("mx1.{d}", "mx2.{d}"), max_age=86400, domain=domain).decode()


def spki_sha256(pem: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def zone(domain, tlsa):
    records = [
        ["@", "MX", f"10 mx2.{domain}."],
        ["@", "MX", f"20 mx1.{domain}."],
        ["_mta-sts", "TXT", '"v=STSv1; id=1;"'],
        ["mta-sts", "A", POLICY_HOST_IP],
    ]
    records += [[name.split(".")[0], "A", ip] for name, ip in MX.items() if name.endswith(domain)]
    records += [[f"_25._tcp.{host}", "TLSA", f"3 1 1 {digest}"] for host, digest in tlsa.items()]
    return {"name": domain, "records": records}


@pytest.fixture(scope="module", params=["dnssec", "no-dnssec"])
def sender(request, netns):
    # Postfix's daemons run as "postfix": pytest's 0700 temp directories are out of their reach.
    sender_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"mtasts-e2e-{request.param}-", dir="/tmp"))
    os.chmod(sender_dir, 0o755)
    level = "smtp_dns_support_level = dnssec\n" if request.param == "dnssec" else ""
    s = Sender(netns, sender_dir, dns_ip=PLAIN_DNS, daemon_extra='[dane]\nprobe = "dane.test"\n', main_cf_extra=level)
    s.dnssec = request.param == "dnssec"
    policies = {f"mta-sts.{d}": policy(d) for d in ("dane.test", "webpki.test")}

    def start_dnssec(s):
        real = spki_sha256((sender_dir / "inbox" / "certs" / "mx1.dane.test.pem").read_text())
        wrong = hashlib.sha256(b"not mx2's key").hexdigest()
        spec = sender_dir / "dnssec.json"
        spec.write_text(
            json.dumps(
                {
                    "dir": str(sender_dir / "dnssec"),
                    "knot_address": KNOT,
                    "resolver_address": RESOLVER,
                    "stubs": {"test": PLAIN_DNS},
                    "zones": [zone("dane.test", {"mx1": real, "mx2": wrong}), zone("webpki.test", {})],
                }
            )
        )
        (sender_dir / "dnssec").mkdir()
        dnssec = ns_popen(
            netns,
            sys.executable,
            "-m",
            "tests.support.dnssec",
            str(spec),
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            text=True,
        )
        s.procs.insert(0, dnssec)
        assert dnssec.stdout.readline().strip() == "ready"

    mxs = [{"ip": ip, "name": name, "cert_name": name} for name, ip in MX.items()]
    with s.running([], policies, mxs, then=start_dnssec, remove_dir=True):
        yield s


def test_mtasts_answers_what_this_postfix_can_use(sender):
    table = "socketmap:inet:127.0.0.1:8461:postfix"
    dane = ns_run(sender.ns, "postmap", "-c", sender.etc, "-q", "dane.test", table, capture_output=True, text=True)
    if sender.dnssec:
        assert dane.stdout.strip() == "dane-only", dane.stderr
    else:
        assert dane.stdout.strip() == "secure match=mx1.dane.test:mx2.dane.test servername=hostname", dane.stderr
        assert "Postfix 3.7" in (sender.tmp / "mtasts.log").read_text()
    webpki = ns_run(sender.ns, "postmap", "-c", sender.etc, "-q", "webpki.test", table, capture_output=True, text=True)
    assert webpki.stdout.strip() == "secure match=mx1.webpki.test:mx2.webpki.test servername=hostname"


def test_dane_domain_delivered_only_to_the_mx_matching_its_tlsa(sender):
    if not sender.dnssec:
        pytest.skip("DANE needs smtp_dns_support_level = dnssec")
    rcpt = "heidi@dane.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert [m["mx"] for m in sender.delivered(rcpt)] == ["mx1.dane.test"]
    lines = [line for line in log.splitlines() if "dane.test" in line]
    # mx2 was tried first: its WebPKI-valid certificate does not match its TLSA record.
    assert any(
        "verification failed for mx2.dane.test" in line and "no matching DANE TLSA records" in line for line in lines
    ), "\n".join(lines)
    assert "Verified TLS connection established to mx1.dane.test" in log


def test_webpki_domain_follows_mta_sts(sender):
    rcpt = "ivan@webpki.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert [m["mx"] for m in sender.delivered(rcpt)] == ["mx2.webpki.test"]
    assert "Verified TLS connection established to mx2.webpki.test" in log


def test_dane_domain_without_dnssec_lookups_is_delivered_by_mta_sts(sender):
    # Postfix 3.7 without smtp_dns_support_level = dnssec: dane-only would be deferred
    # (invalid level) and dane would be plain "may"; secure verifies by MTA-STS instead.
    if sender.dnssec:
        pytest.skip("the DNSSEC case is the test above")
    rcpt = "judy@dane.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert [m["mx"] for m in sender.delivered(rcpt)] == ["mx2.dane.test"]
    assert "Verified TLS connection established to mx2.dane.test" in log
    assert "invalid" not in "\n".join(line for line in log.splitlines() if "dane.test" in line)
