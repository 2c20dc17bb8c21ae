"""Real Postfix delivering (and refusing to deliver) because of mtasts' answers.

Everything runs in a network namespace whose resolv.conf points at the test DNS server:
the world (DNS, HTTPS policy host, receiving MX hosts with STARTTLS), the mtasts daemon,
and a private Postfix instance (own config directory and queue, smtp(8) not chrooted).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("postfix"), reason="Postfix is not installed (.ci/run installs it)"),
]


def policy(mode, *mx):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: 86400\r\n" % (mode, "".join(f"mx: {m}\r\n" for m in mx))


# domain -> (policy or None, MX host, MX address, certificate name the MX presents)
SCENARIOS = {
    "sts-ok.test": (policy("enforce", "mx1.sts-ok.test"), "mx1.sts-ok.test", "127.8.7.11", "mx1.sts-ok.test"),
    "sts-badcert.test": (policy("enforce", "mx1.sts-badcert.test"), "mx1.sts-badcert.test", "127.8.7.12", "other.test"),
    "sts-uncovered.test": (policy("enforce", "mx1.sts-uncovered.test"), "mx9.sts-uncovered.test", "127.8.7.13",
                           "mx9.sts-uncovered.test"),
    "testing-bad.test": (policy("testing", "mx1.testing-bad.test"), "mx1.testing-bad.test", "127.8.7.14", "other.test"),
    "plain.test": (None, "mx1.plain.test", "127.8.7.15", "other.test"),
    "later.test": (policy("enforce", "mx1.later.test"), "mx1.later.test", "127.8.7.16", "mx1.later.test"),
    # Routed through a transport whose policy map is the "tlsrpt" profile (tlsrpt = true).
    "tlsrpt-old.test": (policy("enforce", "mx1.tlsrpt-old.test"), "mx1.tlsrpt-old.test", "127.8.7.17",
                        "mx1.tlsrpt-old.test"),
}


def ns_run(ns, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)


def ns_popen(ns, *cmd, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)


@pytest.fixture(scope="module")
def netns():
    name = f"mtasts-e2e-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    etc = pathlib.Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.53\noptions timeout:2 attempts:2\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    ns_run(name, "ip", "link", "set", "lo", "up", check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])
    shutil.rmtree(etc, ignore_errors=True)


class Sender:
    """The world, the daemon and Postfix, all inside the namespace."""

    def __init__(self, ns, tmp: pathlib.Path):
        self.ns, self.tmp = ns, tmp
        self.inbox = tmp / "inbox"
        self.inbox.mkdir()
        self.ca = tmp / "ca.pem"
        self.procs = []
        self.files = []

    def start_world(self):
        records, policies, mxs = [], {}, []
        for domain, (text, mx, ip, cert_name) in SCENARIOS.items():
            records.append([domain, "MX", [f"10 {mx}."]])
            records.append([mx, "A", [ip]])
            if text:
                records.append([f"_mta-sts.{domain}", "TXT", ['"v=STSv1; id=1;"']])
                policies[f"mta-sts.{domain}"] = text
            mxs.append({"ip": ip, "name": mx, "cert_name": cert_name})
        spec = self.tmp / "world.json"
        spec.write_text(json.dumps({"ca_file": str(self.ca), "outdir": str(self.inbox), "records": records,
                                    "policies": policies, "mx": mxs}))
        world = ns_popen(self.ns, sys.executable, "-m", "tests.e2e.world", str(spec), cwd=str(ROOT),
                         stdout=subprocess.PIPE, text=True)
        self.procs.append(world)
        assert world.stdout.readline().strip() == "ready"

    def start_daemon(self):
        cfg = self.tmp / "mtasts.toml"
        cfg.write_text(f'[socketmap]\nlisten = ["inet:127.0.0.1:8461"]\n[resolver]\nnameservers = ["127.0.0.53"]\n'
                       f'[fetch]\nca_file = "{self.ca}"\n[cache]\npath = "{self.tmp}/cache.sqlite3"\n'
                       f'[maps.tlsrpt]\ntlsrpt = true\n')
        log = open(self.tmp / "mtasts.log", "ab")
        offset = log.tell()
        self.files.append(log)
        self.daemon = ns_popen(self.ns, sys.executable, "-m", "mtasts", "serve", "-c", str(cfg),
                               stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        deadline = time.monotonic() + 15
        while " ready: " not in (self.tmp / "mtasts.log").read_text()[offset:]:
            assert time.monotonic() < deadline and self.daemon.poll() is None, (self.tmp / "mtasts.log").read_text()
            time.sleep(0.05)

    def stop_daemon(self):
        self.daemon.terminate()
        self.daemon.wait(10)

    def start_postfix(self):
        etc = self.tmp / "postfix"
        etc.mkdir()
        (self.tmp / "queue").mkdir()
        (self.tmp / "data").mkdir()
        shutil.chown(self.tmp / "data", "postfix")
        master = []
        for line in pathlib.Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line[:1].isalpha() and len(fields) >= 8:
                fields[4] = "n"  # no chroot: smtp(8) must see the namespace's resolv.conf
                if fields[0] == "smtp" and fields[1] == "inet":
                    continue  # no smtpd needed: mail is injected with sendmail
                line = " ".join(fields)
            master.append(line)
        master.append("smtp-tlsrpt unix - - n - - smtp -o smtp_tls_policy_maps=socketmap:inet:127.0.0.1:8461:tlsrpt")
        (etc / "master.cf").write_text("\n".join(master) + "\n")
        (etc / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {self.tmp}/queue
data_directory = {self.tmp}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = sender.example
mydestination =
maillog_file = {self.tmp}/maillog
maillog_file_prefixes = /tmp
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtp_tls_CAfile = {self.ca}
smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix
transport_maps = inline:{{ tlsrpt-old.test=smtp-tlsrpt: }}
smtp_connect_timeout = 5s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
""")
        self.etc = str(etc)
        ns_run(self.ns, "postfix", "-c", self.etc, "start", check=True, capture_output=True)

    def stop_postfix(self):
        ns_run(self.ns, "postfix", "-c", self.etc, "stop", capture_output=True)

    def send(self, rcpt):
        mid = f"<{uuid.uuid4().hex}@sender.example>"
        msg = f"From: s@sender.example\nTo: {rcpt}\nSubject: e2e\nMessage-ID: {mid}\n\nhello\n"
        ns_run(self.ns, "sendmail", "-C", self.etc, "-f", "s@sender.example", rcpt, input=msg.encode(), check=True)

    def status(self, rcpt, timeout=30.0):
        """Postfix's first delivery status for rcpt, and its log lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = (self.tmp / "maillog").read_text() if (self.tmp / "maillog").exists() else ""
            lines = [line for line in log.splitlines() if f"to=<{rcpt}>" in line and "status=" in line]
            if lines:
                return re.search(r"status=(\w+)", lines[-1]).group(1), log
            time.sleep(0.2)
        return None, log

    def deliver(self, rcpt):
        """Submit a message to rcpt and wait for Postfix's verdict: (status, log)."""
        self.send(rcpt)
        return self.status(rcpt)

    def delivered(self, rcpt):
        return [json.loads(p.read_text()) for p in self.inbox.glob("*.json") if rcpt in json.loads(p.read_text())["rcpts"]]

    def close(self):
        if hasattr(self, "etc"):
            self.stop_postfix()
        for p in self.procs + [getattr(self, "daemon", None)]:
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
            if p is not None and p.stdout is not None:
                p.stdout.close()
        for f in self.files:
            f.close()


@pytest.fixture(scope="module")
def sender(netns):
    import tempfile

    # Postfix's daemons run as "postfix": pytest's 0700 temp directories are out of their reach.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-e2e-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    s = Sender(netns, tmp)
    try:
        s.start_world()
        s.start_daemon()
        s.start_postfix()
        yield s
    finally:
        s.close()
        if not os.environ.get("MTASTS_E2E_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


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
