"""The e2e harness: a network namespace holding the test world, the mtasts daemon and a
private Postfix instance (own config directory and queue, smtp(8) not chrooted)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import uuid

from tests.support.launcher import launch, mtasts_command

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ns_run(ns, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)


def ns_popen(ns, *cmd, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)


def make_netns(name):
    subprocess.run(["ip", "netns", "add", name], check=True)
    etc = pathlib.Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.53\noptions timeout:2 attempts:2\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    ns_run(name, "ip", "link", "set", "lo", "up", check=True)
    return name


def _uid_in(root: pathlib.Path, user: str) -> int:
    """*user*'s uid in the passwd file of the system rooted at *root*."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise LookupError(f"no user {user} in {root}/etc/passwd")


def remove_netns(name):
    subprocess.run(["ip", "netns", "del", name])
    shutil.rmtree(pathlib.Path("/etc/netns") / name, ignore_errors=True)


class Sender:
    """The world, the daemon and Postfix, all inside the namespace."""

    def __init__(
        self,
        ns,
        tmp: pathlib.Path,
        dns_ip: str = "127.0.0.53",
        daemon_extra: str = "",
        main_cf_extra: str = "",
        transports: str = "",
        postfix_root: str = "",
    ):
        self.ns, self.tmp = ns, tmp
        self.dns_ip, self.daemon_extra = dns_ip, daemon_extra
        self.main_cf_extra, self.transports = main_cf_extra, transports
        self.inbox = tmp / "inbox"
        self.inbox.mkdir()
        self.ca = tmp / "ca.pem"
        self.procs = []
        self.files = []
        # Another Postfix (another Debian release's root tree): its commands run chrooted
        # there, with this test directory bind-mounted at the same path inside.
        self.root = pathlib.Path(postfix_root) if postfix_root else None
        if self.root is not None:
            inside = self.root / str(tmp).lstrip("/")
            inside.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", str(tmp), str(inside)], check=True)
            self.mounted = inside
            (self.root / "etc" / "resolv.conf").write_text("nameserver 127.0.0.53\noptions timeout:2 attempts:2\n")
            (self.root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")

    def postfix_command(self, *cmd):
        """A Postfix command of the Postfix under test (chrooted into its root, if any)."""
        return ("chroot", str(self.root), *cmd) if self.root is not None else cmd

    def postconf_wrapper(self) -> str:
        """An executable that runs that Postfix's postconf, for the daemon's [postfix] postconf."""
        path = self.tmp / "postconf"
        path.write_text(f'#!/bin/sh\nexec chroot {self.root} /usr/sbin/postconf "$@"\n')
        path.chmod(0o755)
        return str(path)

    @contextlib.contextmanager
    def running(self, records, policies, mxs, then=None, remove_dir=False):
        """World, daemon and Postfix up for the block (*then(self)* after the world, before
        the daemon), all stopped after it; *remove_dir*: the test directory too."""
        try:
            self.start_world(records, policies, mxs)
            if then is not None:
                then(self)
            self.start_daemon()
            self.start_postfix()
            yield self
        finally:
            self.close()
            if remove_dir and not os.environ.get("MTASTS_E2E_KEEP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def start_world(self, records, policies, mxs):
        """DNS records for the plain test DNS server, policies by policy host name, MX receivers."""
        spec = self.tmp / "world.json"
        spec.write_text(
            json.dumps(
                {
                    "ca_file": str(self.ca),
                    "outdir": str(self.inbox),
                    "records": records,
                    "policies": policies,
                    "mx": mxs,
                    "dns_ip": self.dns_ip,
                }
            )
        )
        world = ns_popen(
            self.ns,
            sys.executable,
            "-m",
            "tests.e2e.world",
            str(spec),
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(world)
        assert world.stdout.readline().strip() == "ready"

    def start_daemon(self):
        # The daemon learns this Postfix as it would in production: postconf -c on its main.cf.
        if not hasattr(self, "etc"):
            self.write_postfix_config()
        cfg = self.tmp / "mtasts.toml"
        postfix = "" if "[postfix]" in self.daemon_extra else f'[postfix]\nconfig_directory = "{self.etc}"\n'
        if self.root is not None and postfix:
            postfix += f'postconf = "{self.postconf_wrapper()}"\n'
        cfg.write_text(
            f'[socketmap]\nlisten = ["inet:127.0.0.1:8461"]\n[resolver]\nnameservers = ["127.0.0.53"]\n'
            f'[fetch]\nca_file = "{self.ca}"\n[cache]\npath = "{self.tmp}/cache.sqlite3"\n'
            f"{postfix}{self.daemon_extra}"
        )
        self.daemon, log = launch(
            ["ip", "netns", "exec", self.ns, *mtasts_command("serve", "-c", str(cfg))],
            self.tmp / "mtasts.log",
            cwd=str(ROOT),
        )
        self.files.append(log)

    def stop_daemon(self):
        self.daemon.terminate()
        self.daemon.wait(10)

    def start_postfix(self):
        if not hasattr(self, "etc"):
            self.write_postfix_config()
        ns_run(self.ns, *self.postfix_command("postfix", "-c", self.etc, "start"), check=True, capture_output=True)

    def write_postfix_config(self):
        etc = self.tmp / "postfix"
        etc.mkdir()
        (self.tmp / "queue").mkdir()
        (self.tmp / "data").mkdir()
        etc_root = self.root or pathlib.Path("/")
        os.chown(self.tmp / "data", _uid_in(etc_root, "postfix"), -1)
        master = []
        for line in (etc_root / "etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line[:1].isalpha() and len(fields) >= 8:
                fields[4] = "n"  # no chroot: smtp(8) must see the namespace's resolv.conf
                if fields[0] == "smtp" and fields[1] == "inet":
                    continue  # no smtpd needed: mail is injected with sendmail
                line = " ".join(fields)
            master.append(line)
        master.extend(line for line in self.transports.splitlines() if line.strip())
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
smtp_connect_timeout = 5s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
{self.main_cf_extra}""")
        self.etc = str(etc)

    def stop_postfix(self):
        ns_run(self.ns, *self.postfix_command("postfix", "-c", self.etc, "stop"), capture_output=True)

    def postmap_query(self, key, table="socketmap:inet:127.0.0.1:8461:postfix"):
        return ns_run(
            self.ns, *self.postfix_command("postmap", "-c", self.etc, "-q", key, table), capture_output=True, text=True
        )

    def send(self, rcpt):
        mid = f"<{uuid.uuid4().hex}@sender.example>"
        msg = f"From: s@sender.example\nTo: {rcpt}\nSubject: e2e\nMessage-ID: {mid}\n\nhello\n"
        ns_run(
            self.ns,
            *self.postfix_command("sendmail", "-C", self.etc, "-f", "s@sender.example", rcpt),
            input=msg.encode(),
            check=True,
        )

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
        return [
            json.loads(p.read_text()) for p in self.inbox.glob("*.json") if rcpt in json.loads(p.read_text())["rcpts"]
        ]

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
        if getattr(self, "mounted", None) is not None:
            subprocess.run(["umount", "-l", str(self.mounted)])
            self.mounted = None
