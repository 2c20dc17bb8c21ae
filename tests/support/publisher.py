"""The publisher as a subprocess, and an HTTPS client that speaks to it byte by byte."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import sys

from tests.support.launcher import launch, mtasts_command

PUBLISHER_IP = "127.8.6.1"


class Publisher:
    def __init__(self, tmp_path, ca, domains):
        self.tmp = tmp_path
        self.ca = ca
        self.config = tmp_path / "publish.toml"
        self.log = tmp_path / "publisher.log"
        self.domains = domains
        if domains:
            self.write(domains)
        self.proc = None

    def cert_for(self, domain, *names, expired=False):
        cert = self.tmp / f"{domain}.pem"
        key = self.tmp / f"{domain}.key"
        names = names or (f"mta-sts.{domain}",)
        if expired:
            now = datetime.datetime.now(datetime.timezone.utc)
            issued = self.ca.issue_cert(*names, not_after=now - datetime.timedelta(days=1))
        else:
            issued = self.ca.issue_cert(*names)
        issued.cert_chain_pems[0].write_to_path(str(cert))
        for pem in issued.cert_chain_pems[1:]:
            pem.write_to_path(str(cert), append=True)
        issued.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)

    def write(self, domains, extra="", listen=None, publish_extra=""):
        text = f"[publish]\nlisten = {json.dumps(listen or [PUBLISHER_IP + ':443'])}\n" + publish_extra
        for d, table in domains.items():
            text += f'[publish.domains."{d}"]\n'
            for k, v in table.items():
                text += f"{k} = {json.dumps(v)}\n"
        self.config.write_text(text + extra)

    def start(self, activated_socket=None):
        command = mtasts_command("serve", "--only", "publisher", "-c", str(self.config))
        if activated_socket is None:
            self.proc, self._log = launch(command, self.log, ready="ready: publisher only")
        else:
            # As systemd does it: the socket as fd 3, LISTEN_PID = the daemon's own pid.
            fd = activated_socket.fileno()
            shell = f"exec 3<&{fd}; LISTEN_PID=$$ LISTEN_FDS=1 exec " + " ".join(command)
            self.proc, self._log = launch(
                ["bash", "-c", shell], self.log, ready="ready: publisher only", pass_fds=(fd,)
            )
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()

    def policy_bytes(self, domain):
        return subprocess.run(
            [sys.executable, "-m", "mtasts", "publish", "policy", domain, "-c", str(self.config)],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout

    def cli(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "mtasts", *args, "-c", str(self.config)], capture_output=True, text=True, timeout=30
        )


def https(ca, sni, request: bytes, *, max_version=None, source=None, ip=PUBLISHER_IP):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if max_version:
        ctx.maximum_version = max_version
    with socket.create_connection((ip, 443), timeout=10, source_address=(source, 0) if source else None) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(ca, host, path="/.well-known/mta-sts.txt", method="GET", sni=None, source=None, ip=PUBLISHER_IP):
    req = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    return https(ca, sni or host, req, source=source, ip=ip)


def post(ca, host, body: bytes, path="/tlsrpt", content_type="application/tlsrpt+gzip", headers: str = "", source=None):
    req = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n"
    ).encode() + body
    return https(ca, host, req, source=source)
