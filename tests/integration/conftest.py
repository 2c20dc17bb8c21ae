"""Fixtures: a loopback DNS server, an HTTPS policy host, and the daemon as a subprocess."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
from typing import List, Optional

import pytest

from tests.support.dnsserver import TestDns
from tests.support.launcher import free_port, launch, mtasts_command
from tests.support.policies import policy_text
from tests.support.policyhost import PolicyHost, Site
from tests.support.socketmap import netstring, read_netstring

pytestmark = pytest.mark.integration

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def dns_server():
    server = TestDns()
    yield server
    server.close()


@pytest.fixture(scope="session")
def policy_host():
    if os.geteuid() != 0:
        pytest.skip("the policy host listens on port 443: run the integration tests as root (CI does)")
    host = PolicyHost()
    yield host
    host.close()


class World:
    """Test domains published through the DNS server and the policy host."""

    def __init__(self, dns: TestDns, host: PolicyHost) -> None:
        self.dns = dns
        self.host = host

    def new_domain(self, label="d") -> str:
        return f"{label}{next(_counter)}.example"

    def publish(self, domain: str, body: Optional[bytes] = None, policy_id: str = "1", **site) -> Site:
        if body is None:
            body = policy_text(domain=domain)
        self.dns.set(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={policy_id};"')
        s = Site(body=body, **site)
        self.dns.set(f"mta-sts.{domain}", "A", self.host.ip_for(s.tls))
        self.host.sites[f"mta-sts.{domain}"] = s
        return s

    def set_id(self, domain: str, policy_id: str) -> None:
        self.dns.set(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={policy_id};"')

    def fetches(self, domain: str) -> int:
        return len(self.host.paths(f"mta-sts.{domain}"))


@pytest.fixture
def world(dns_server, policy_host):
    return World(dns_server, policy_host)


# The Postfix these daemons answer, unless a test names another: one that can use every
# answer but the TLSRPT attributes, so the answers do not depend on this machine's Postfix.
TEST_POSTFIX = '[postfix]\nversion = "3.7.11"\ndnssec = true\n'


class Daemon:
    def __init__(self, tmp_path, dns: TestDns, ca_file: str, extra: str = "", socketmap: str = "") -> None:
        self.dir = tmp_path
        self.port = free_port()
        self.unix = str(tmp_path / "socketmap.sock")
        self.config = tmp_path / "mtasts.toml"
        self.cache = str(tmp_path / "cache.sqlite3")
        self.config.write_text(
            f"""
[socketmap]
listen = ["inet:127.0.0.1:{self.port}", "unix:{self.unix}"]
{socketmap}
[resolver]
nameservers = ["{dns.address}"]
timeout = 2.0
[fetch]
timeout = 3.0
ca_file = "{ca_file}"
[cache]
path = "{self.cache}"
txt_recheck = 1
failure_ttl = 1
negative_ttl_min = 2
negative_ttl_max = 30
[maps.postfix]
testing = "ignore"
[maps.strict]
testing = "enforce"
[maps.oldpostfix]
sni = false
[maps.tlsrpt]
tlsrpt = true
{"" if "[postfix]" in extra else TEST_POSTFIX}{extra}
"""
        )
        self.logfile = tmp_path / "daemon.log"
        self.proc: Optional[subprocess.Popen] = None
        self._sock: Optional[socket.socket] = None
        self._conns: List[socket.socket] = []

    def start(self) -> Daemon:
        self.proc, self._log = launch(mtasts_command("serve", "--config", str(self.config)), self.logfile)
        return self

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def connect(self, unix: bool = False) -> socket.socket:
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.unix)
        else:
            s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(20)
        self._conns.append(s)
        return s

    def query(self, key: str, name: str = "postfix") -> str:
        if self._sock is None:
            self._sock = self.connect()
        self._sock.sendall(netstring(f"{name} {key}".encode()))
        return read_netstring(self._sock).decode()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            mtasts_command(*args, "--config", str(self.config)),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close_connections(self) -> None:
        for s in self._conns:
            s.close()
        self._conns.clear()
        self._sock = None

    def stop(self, sig=signal.SIGTERM) -> int:
        self.close_connections()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def make_daemon(tmp_path, dns_server, policy_host):
    started: List[Daemon] = []
    ca_file = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca_file))

    def make(extra: str = "", start: bool = True, socketmap: str = "") -> Daemon:
        d = Daemon(tmp_path, dns_server, str(ca_file), extra, socketmap)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.close_connections()
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()
