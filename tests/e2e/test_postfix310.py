"""Real Postfix 3.10 (Debian 13's package, run from a trixie root tree): what only a
Postfix >= 3.10 does with mtasts' answers.

- The TLSRPT attributes (``policy_type=sts policy_domain=... mx_host_pattern=... { policy_string
  = ... }``) are accepted: mail is delivered, not deferred with 4.7.5 as on 3.7.
- A testing policy's answer (``may`` plus the attributes) delivers despite a bad certificate.
- With ``smtp_tls_enforce_sts_mx_patterns = yes`` (the default) an MX host the policy does not
  cover is skipped by Postfix itself; 3.7 can only fail the certificate match.

The root tree comes from ``ci/postfix-root.sh`` (``.ci/run`` makes it); the daemon learns this
Postfix through its own postconf (``postconf -c``, chrooted into that tree).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile

import pytest

from tests.e2e.harness import Sender
from tests.e2e.test_postfix_delivery import world_spec

ROOT310 = pathlib.Path(os.environ.get("MTASTS_POSTFIX_ROOT", "/var/cache/mtasts-e2e/trixie"))
# .ci/run sets this: there, a missing root tree is a failure, not a skip.
REQUIRED = os.environ.get("MTASTS_REQUIRE_POSTFIX_ROOT") == "1"


def _skip_reason():
    if os.geteuid() != 0:
        return "network namespaces and chroot need root"
    if not (ROOT310 / "usr/sbin/postfix").exists():
        return f"no Postfix 3.10 root tree at {ROOT310} (make it with ci/postfix-root.sh)"
    return None


pytestmark = [
    pytest.mark.integration,
    # The netns fixture itself needs root; as root, a missing root tree fails in CI (below).
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and chroot need root"),
]


@pytest.fixture(scope="module")
def sender(netns):
    reason = _skip_reason()
    if reason:
        if REQUIRED and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    version = subprocess.run(
        ["chroot", str(ROOT310), "postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version.startswith("3.10."), version
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-e2e-310-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    # smtp_tlsrpt_enable stays "no" (Debian builds without libtlsrpt); the map sends the
    # attributes because the profile says so, as a 3.10 with TLSRPT on would get them.
    s = Sender(
        netns,
        tmp,
        daemon_extra="[maps.postfix]\ntlsrpt = true\n",
        postfix_root=str(ROOT310),
        main_cf_extra="smtp_tls_enforce_sts_mx_patterns = yes\n",
    )
    with s.running(*world_spec(), remove_dir=True):
        yield s


def test_the_daemon_read_postfix_3_10(sender):
    log = (sender.tmp / "mtasts.log").read_text()
    assert "Postfix 3.10." in log and "from postconf " + str(sender.tmp / "postconf") in log
    # servername= and the TLSRPT attributes are both for this Postfix.
    answer = sender.postmap_query("sts-ok.test")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == (
        "secure match=mx1.sts-ok.test servername=hostname policy_type=sts policy_domain=sts-ok.test"
        " mx_host_pattern=mx1.sts-ok.test { policy_string = version: STSv1 } { policy_string = mode: enforce }"
        " { policy_string = mx: mx1.sts-ok.test } { policy_string = max_age: 86400 }"
    )


def test_tlsrpt_attributes_are_accepted_and_the_mail_delivered(sender):
    rcpt = "alice@sts-ok.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert "Verified TLS connection established to mx1.sts-ok.test" in log
    assert "invalid attribute name" not in log and "4.7.5" not in log
    assert [m["tls"] for m in sender.delivered(rcpt)] == [True]


def test_testing_policy_answer_delivers_despite_a_bad_certificate(sender):
    answer = sender.postmap_query("testing-bad.test")
    assert answer.stdout.startswith("may policy_type=sts policy_domain=testing-bad.test"), answer
    rcpt = "bob@testing-bad.test"
    status, log = sender.deliver(rcpt)
    assert status == "sent", log
    assert len(sender.delivered(rcpt)) == 1


def test_an_mx_the_policy_does_not_cover_is_skipped_by_postfix(sender):
    rcpt = "carol@sts-uncovered.test"
    status, log = sender.deliver(rcpt)
    assert status == "deferred", log
    assert sender.delivered(rcpt) == []
    lines = [line for line in log.splitlines() if "sts-uncovered.test" in line]
    assert any(
        "MX name 'mx9.sts-uncovered.test' does not match STS MX pattern for 'sts-uncovered.test'" in line
        for line in lines
    ), "\n".join(lines)
    # 3.10 does not even connect to mx9: no TLS handshake, no certificate check.
    assert not any("TLS connection established to mx9" in line for line in lines), "\n".join(lines)
    assert not any("certificate verification failed" in line for line in lines), "\n".join(lines)
