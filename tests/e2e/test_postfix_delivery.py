"""Real Postfix delivering (and refusing to deliver) because of mtasts' answers.

Everything runs in a network namespace whose resolv.conf points at the test DNS server:
the world (DNS, HTTPS policy host, receiving MX hosts with STARTTLS), the mtasts daemon,
and a private Postfix instance (own config directory and queue, smtp(8) not chrooted).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.e2e.harness import Sender, ns_run
from tests.support.policies import policy_text

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("postfix"), reason="Postfix is not installed (.ci/run installs it)"),
]


def policy(mode, *mx):
    return policy_text(mode=mode, mx=mx, max_age=86400).decode()


# domain -> (policy or None, MX host, MX address, certificate name the MX presents)
SCENARIOS = {
    "sts-ok.test": (policy("enforce", "mx1.sts-ok.test"), "mx1.sts-ok.test", "127.8.7.11", "mx1.sts-ok.test"),
    "sts-badcert.test": (policy("enforce", "mx1.sts-badcert.test"), "mx1.sts-badcert.test", "127.8.7.12", "other.test"),
    "sts-uncovered.test": (
        policy("enforce", "mx1.sts-uncovered.test"),
        "mx9.sts-uncovered.test",
        "127.8.7.13",
        "mx9.sts-uncovered.test",
    ),
    "testing-bad.test": (policy("testing", "mx1.testing-bad.test"), "mx1.testing-bad.test", "127.8.7.14", "other.test"),
    "plain.test": (None, "mx1.plain.test", "127.8.7.15", "other.test"),
    "later.test": (policy("enforce", "mx1.later.test"), "mx1.later.test", "127.8.7.16", "mx1.later.test"),
    # Routed through a transport whose policy map is the "tlsrpt" profile (tlsrpt = true).
    "tlsrpt-old.test": (
        policy("enforce", "mx1.tlsrpt-old.test"),
        "mx1.tlsrpt-old.test",
        "127.8.7.17",
        "mx1.tlsrpt-old.test",
    ),
}


def world_spec():
    """The plain DNS records, policies and MX receivers of SCENARIOS."""
    records, policies, mxs = [], {}, []
    for domain, (text, mx, ip, cert_name) in SCENARIOS.items():
        records.append([domain, "MX", [f"10 {mx}."]])
        records.append([mx, "A", [ip]])
        if text:
            records.append([f"_mta-sts.{domain}", "TXT", ['"v=STSv1; id=1;"']])
            policies[f"mta-sts.{domain}"] = text
        mxs.append({"ip": ip, "name": mx, "cert_name": cert_name})
    return records, policies, mxs


@pytest.fixture(scope="module")
def sender(netns, sender_dir):
    s = Sender(
        netns,
        sender_dir,
        daemon_extra="[maps.tlsrpt]\ntlsrpt = true\n",
        main_cf_extra="transport_maps = inline:{ tlsrpt-old.test=smtp-tlsrpt: }\n",
        transports="smtp-tlsrpt unix - - n - - smtp -o smtp_tls_policy_maps=socketmap:inet:127.0.0.1:8461:tlsrpt",
    )
    with s.running(*world_spec()):
        yield s


def test_enforce_valid_certificate_delivered_over_verified_tls(sender):
    rcpt = "alice@sts-ok.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert "Verified TLS connection established to mx1.sts-ok.test" in log
    assert [m["tls"] for m in sender.delivered(rcpt)] == [True]


def test_enforce_wrong_certificate_deferred_not_bounced(sender):
    rcpt = "bob@sts-badcert.test"
    status, log = sender.deliver(rcpt)
    assert status == "deferred", log
    assert sender.delivered(rcpt) == []
    assert "bounced" not in [line for line in log.splitlines() if rcpt in line][-1]


def test_enforce_mx_not_covered_not_delivered(sender):
    # Postfix 3.7 checks the certificate against match= (the policy's names), so an MX whose
    # certificate is valid for its own, uncovered name is refused. 3.10.5+ skips it earlier.
    rcpt = "carol@sts-uncovered.test"
    status, log = sender.deliver(rcpt)
    assert status == "deferred", log
    assert sender.delivered(rcpt) == []


def test_testing_mode_with_bad_certificate_delivered(sender):
    rcpt = "dave@testing-bad.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert sender.delivered(rcpt)


def test_no_mta_sts_delivered_with_default_level(sender):
    rcpt = "erin@plain.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert [m["tls"] for m in sender.delivered(rcpt)] == [True]  # "may": TLS, not verified
    # "may": the chain is checked and logged as Trusted, the name is not (unlike "Verified" above).
    assert "Trusted TLS connection established to mx1.plain.test" in log


def test_daemon_stopped_defers_then_delivers(sender):
    rcpt = "frank@later.test"
    sender.stop_daemon()
    try:
        status, log = sender.deliver(rcpt)
        assert status == "deferred", log
        assert "policy table lookup error" in log  # socketmap unreachable: a temporary error
        assert sender.delivered(rcpt) == []
    finally:
        sender.start_daemon()
    ns_run(sender.ns, "postqueue", "-c", sender.etc, "-f", check=True)
    deadline = time.monotonic() + 30
    while not sender.delivered(rcpt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m["tls"] for m in sender.delivered(rcpt)] == [True]
    assert "status=sent" in [line for line in (sender.tmp / "maillog").read_text().splitlines() if rcpt in line][-1]


def test_tlsrpt_attributes_deferred_by_postfix_before_3_10(sender):
    # Why tlsrpt is off by default: Postfix <= 3.9 refuses the policy_type attribute and
    # defers (4.7.5), so the mail waits in the queue instead of being lost or sent in clear.
    version = ns_run(sender.ns, "postconf", "-c", sender.etc, "-h", "mail_version", capture_output=True, text=True)
    if tuple(int(x) for x in version.stdout.split(".")[:2]) >= (3, 10):
        pytest.skip("Postfix >= 3.10 accepts the TLSRPT attributes")
    rcpt = "grace@tlsrpt-old.test"
    status, log = sender.deliver(rcpt)
    assert status == "deferred", log
    assert 'invalid attribute name: "policy_type"' in log
    assert "client TLS configuration problem" in [line for line in log.splitlines() if rcpt in line][-1]
    assert sender.delivered(rcpt) == []
