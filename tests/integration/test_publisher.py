"""The publisher over real HTTPS, and the round trip through our own resolver."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from tests.support.launcher import rss_kib, wait_for
from tests.support.publisher import PUBLISHER_IP, Publisher, get, https

pytestmark = pytest.mark.integration


def _has_not_after():
    import inspect

    import trustme

    return "not_after" in inspect.signature(trustme.CA.issue_cert).parameters


@pytest.fixture
def publisher(tmp_path, policy_host, world):
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("pub")
    cert, key = pub.cert_for(d)
    pub.domains = {
        d: {
            "mode": "enforce",
            "mx": [f"mx1.{d}", f"*.mx.{d}"],
            "max_age": 86400,
            "tlsrpt_rua": [f"mailto:tlsrpt@{d}"],
            "cert": cert,
            "key": key,
            "host_addresses": [PUBLISHER_IP],
        }
    }
    pub.write(pub.domains)
    pub.start()
    pub.domain = d
    yield pub
    pub.stop()


def test_serves_policy(publisher):
    d = publisher.domain
    status, headers, body = get(publisher.ca, f"mta-sts.{d}")
    assert status == 200
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == publisher.policy_bytes(d)
    assert body.startswith(b"version: STSv1\r\nmode: enforce\r\n")


def test_head(publisher):
    status, headers, body = get(publisher.ca, f"mta-sts.{publisher.domain}", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/.well-known/mta-sts.txt/",
        "/.well-known/",
        "/../etc/passwd",
        "/.well-known/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/.well-known/mta-sts.TXT",
    ],
)
def test_m134_other_paths_404_never_redirect(publisher, path):
    status, headers, body = get(publisher.ca, f"mta-sts.{publisher.domain}", path=path)
    assert status == 404 and "location" not in headers and b"root:" not in body


def test_unknown_host_header_404(publisher):
    status, _, _ = get(publisher.ca, "mta-sts.other.example", sni=f"mta-sts.{publisher.domain}")
    assert status == 404


def test_m136_unknown_or_missing_sni_aborts_handshake(publisher):
    with pytest.raises(ssl.SSLError):
        get(publisher.ca, "mta-sts.unknown.example")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((PUBLISHER_IP, 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw)  # no SNI at all


def test_m137_tls_below_1_2_refused(publisher):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            https(
                publisher.ca,
                f"mta-sts.{publisher.domain}",
                b"GET / HTTP/1.0\r\n\r\n",
                max_version=ssl.TLSVersion.TLSv1_1,
            )


def test_round_trip_through_our_resolver(publisher, world, daemon):
    """The records printed by `publish records`, loaded into DNS, are what the resolver discovers."""
    d = publisher.domain
    out = publisher.cli("publish", "records", d, "--format", "json")
    assert out.returncode == 0, out.stderr
    for record in json.loads(out.stdout):
        value = f'"{record["value"]}"' if record["type"] == "TXT" else record["value"]
        world.dns.set(record["name"], record["type"], value)
    assert daemon.query(d) == f"OK secure match=mx1.{d}:.mx.{d} servername=hostname"
    policy_id = json.loads(daemon.cli("cache", "show", d, "--json").stdout)["entry"]["policy_id"]
    assert f"id={policy_id}" in json.loads(out.stdout)[0]["value"]


def test_sighup_reloads_policy_and_id(publisher):
    d = publisher.domain
    before = publisher.cli("publish", "records", d).stdout
    publisher.domains[d]["mx"] = [f"new.{d}"]
    publisher.write(publisher.domains)
    publisher.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: get(publisher.ca, f"mta-sts.{d}")[2].count(b"mx: new.") == 1)
    after = publisher.cli("publish", "records", d).stdout
    assert before != after


def test_certificate_problems_reported(publisher, tmp_path):
    d = publisher.domain
    wrong_cert, wrong_key = publisher.cert_for("wrong-" + d, "www.other.example")
    publisher.domains[d]["cert"] = wrong_cert
    publisher.write(publisher.domains)
    out = publisher.cli("publish", "records", d)
    assert f"does not cover mta-sts.{d}" in out.stderr
    _, other_key = publisher.cert_for("x-" + d)
    publisher.domains[d]["cert"], publisher.domains[d]["key"] = publisher.cert_for(d)[0], other_key
    publisher.write(publisher.domains)
    assert "does not match certificate" in publisher.cli("publish", "records", d).stderr
    # A running publisher given a bad certificate aborts that name's handshakes.
    publisher.domains[d]["cert"], publisher.domains[d]["key"] = wrong_cert, wrong_key
    publisher.write(publisher.domains)
    publisher.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "does not cover" in publisher.log.read_text())
    with pytest.raises(ssl.SSLError):
        get(publisher.ca, f"mta-sts.{d}")


def test_keeps_serving_many_connections(publisher):
    import concurrent.futures

    def one(i):
        # Senders from 16 addresses; the silent ones all come from 127.0.0.1.
        return get(publisher.ca, f"mta-sts.{publisher.domain}", source=f"127.8.5.{i % 16 + 1}")[0]

    idle = [socket.create_connection((PUBLISHER_IP, 443)) for _ in range(1000)]  # 1000 clients that say nothing
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert set(pool.map(one, range(100))) == {200}
        # A sender behind the silent clients' own address gets through once their
        # handshakes have gone stale.
        time.sleep(1.1)
        assert get(publisher.ca, f"mta-sts.{publisher.domain}", source="127.0.0.1")[0] == 200
    finally:
        for s in idle:
            s.close()


def test_write_and_snippets(publisher, tmp_path):
    d = publisher.domain
    out = publisher.cli("publish", "write", str(tmp_path / "www"))
    assert out.returncode == 0
    assert (tmp_path / "www" / d / "mta-sts.txt").read_bytes() == publisher.policy_bytes(d)
    apache = publisher.cli("publish", "snippet", "apache", d, "--dir", str(tmp_path / "www")).stdout
    assert (
        f"ServerName mta-sts.{d}" in apache
        and f"Alias /.well-known/mta-sts.txt {tmp_path}/www/{d}/mta-sts.txt" in apache
    )
    nginx = publisher.cli("publish", "snippet", "nginx", d).stdout
    assert f"server_name mta-sts.{d};" in nginx and "return 404;" in nginx
    unknown = publisher.cli("publish", "policy", "not-published.example")
    assert unknown.returncode == 64 and "not-published.example is not one of [publish.domains]" in unknown.stderr


def test_m136_expired_certificate_aborts_handshake(publisher):
    if not _has_not_after():
        pytest.skip("this trustme cannot issue expired certificates")
    d = publisher.domain
    publisher.domains[d]["cert"], publisher.domains[d]["key"] = publisher.cert_for(
        "old-" + d, f"mta-sts.{d}", expired=True
    )
    publisher.write(publisher.domains)
    assert "expired on" in publisher.cli("publish", "records", d).stderr
    publisher.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "expired on" in publisher.log.read_text())
    with pytest.raises(ssl.SSLError):
        get(publisher.ca, f"mta-sts.{d}")


def test_socket_activation(tmp_path, policy_host, world):
    """Port 443 without root on EL7: systemd binds it and passes the socket (LISTEN_FDS)."""
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("act")
    cert, key = pub.cert_for(d)
    pub.write({d: {"mx": [f"mx.{d}"], "cert": cert, "key": key}}, listen=["systemd"])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.8.6.2", 443))
    sock.listen(16)
    try:
        pub.start(activated_socket=sock)
        assert "(socket held by systemd)" in pub.log.read_text()
        assert get(pub.ca, f"mta-sts.{d}", ip="127.8.6.2")[0] == 200
    finally:
        pub.stop()
        sock.close()


def test_systemd_listen_without_socket_is_an_error(tmp_path, policy_host):
    pub = Publisher(tmp_path, policy_host.ca, {})
    pub.write({"x.example": {"mode": "none"}}, listen=["systemd"])
    out = subprocess.run(
        [sys.executable, "-m", "mtasts", "serve", "--only", "publisher", "-c", str(pub.config)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 78 and "no socket was passed (LISTEN_FDS)" in out.stderr


def test_slow_clients_are_dropped(publisher):
    """Slowloris: a client that never finishes the TLS handshake, and one that never sends a
    request after it, are both closed within about 10 seconds."""
    no_tls = socket.create_connection((PUBLISHER_IP, 443))
    ctx = ssl.create_default_context()
    publisher.ca.configure_trust(ctx)
    silent = ctx.wrap_socket(
        socket.create_connection((PUBLISHER_IP, 443)), server_hostname=f"mta-sts.{publisher.domain}"
    )
    trickle = ctx.wrap_socket(
        socket.create_connection((PUBLISHER_IP, 443)), server_hostname=f"mta-sts.{publisher.domain}"
    )
    trickle.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")  # and never the rest
    started = time.monotonic()
    for s in (no_tls, silent, trickle):
        s.settimeout(20)
    try:
        assert no_tls.recv(10) == b""
        assert silent.recv(10) == b""
        assert trickle.recv(10) == b""
        assert time.monotonic() - started < 15
        assert get(publisher.ca, f"mta-sts.{publisher.domain}")[0] == 200
    finally:
        for s in (no_tls, silent, trickle):
            s.close()


def test_connection_cap(tmp_path, policy_host, world):
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("cap")
    cert, key = pub.cert_for(d)
    pub.write({d: {"mx": [f"mx.{d}"], "cert": cert, "key": key}}, publish_extra="max_connections = 5\n")
    pub.start()
    ctx = ssl.create_default_context()
    pub.ca.configure_trust(ctx)
    held = []
    try:
        for _ in range(8):
            s = ctx.wrap_socket(socket.create_connection((PUBLISHER_IP, 443)), server_hostname=f"mta-sts.{d}")
            s.settimeout(5)
            held.append(s)
        closed = 0
        for s in held:
            try:
                s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts." + d.encode() + b"\r\n\r\n")
                if s.recv(100) == b"":
                    closed += 1
            except (ConnectionError, ssl.SSLError):
                closed += 1
        assert closed == 3
        assert "over 5 connections" in pub.log.read_text()
    finally:
        for s in held:
            s.close()
        pub.stop()


def test_oversized_header_refused(publisher):
    host = f"mta-sts.{publisher.domain}"
    request = (
        f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nX-Big: {'a' * 10000}\r\nConnection: close\r\n\r\n"
    )
    status, _, body = https(publisher.ca, host, request.encode())
    assert status in (400, 431) and b"version: STSv1" not in body
    assert get(publisher.ca, host)[0] == 200


def test_missing_certificate_file_aborts_that_name_only(publisher, tmp_path, world):
    d = publisher.domain
    other = world.new_domain("nocert")
    publisher.domains[other] = {
        "mx": [f"mx.{other}"],
        "cert": str(tmp_path / "missing.pem"),
        "key": str(tmp_path / "missing.key"),
    }
    publisher.write(publisher.domains)
    publisher.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: f"not serving mta-sts.{other}" in publisher.log.read_text())
    with pytest.raises(ssl.SSLError):
        get(publisher.ca, f"mta-sts.{other}")
    assert get(publisher.ca, f"mta-sts.{d}")[0] == 200


def test_certificate_file_change_reloads_without_signal(tmp_path, policy_host, world, monkeypatch):
    """certbot renews in place: the publisher notices the new files by itself."""
    import asyncio

    from mtasts.config import load_config
    from mtasts.servers import publisher as publisher_module

    monkeypatch.setattr(publisher_module, "WATCH_INTERVAL", 0.1)
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("renew")
    cert, key = pub.cert_for(d, "www.other.example")  # starts with a certificate for the wrong name
    pub.write({d: {"mx": [f"mx.{d}"], "cert": cert, "key": key}}, listen=["127.8.6.3:443"])

    async def scenario():
        server = publisher_module.PolicyPublisher(load_config(str(pub.config)))
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(None, probe, "127.8.6.3", pub.ca, f"mta-sts.{d}")
            time.sleep(0.05)  # a new mtime
            pub.cert_for(d)  # the renewed certificate, written over the same files
            await asyncio.sleep(0.5)
            after = await loop.run_in_executor(None, probe, "127.8.6.3", pub.ca, f"mta-sts.{d}")
            return before, after
        finally:
            await server.close()

    before, after = asyncio.run(scenario())
    assert before == "handshake failed" and after == 200


def probe(ip, ca, host):
    try:
        return get(ca, host, ip=ip)[0]
    except ssl.SSLError:
        return "handshake failed"


def test_resolver_and_publisher_in_one_serve(tmp_path, policy_host, world, make_daemon):
    d = world.new_domain("both")
    pub = Publisher(tmp_path, policy_host.ca, {})
    cert, key = pub.cert_for(d)
    daemon = make_daemon(start=False)
    daemon.config.write_text(
        daemon.config.read_text()
        + f"""
[publish]
listen = ["127.8.6.4:443"]
[publish.domains."{d}"]
mx = ["mx1.{d}"]
cert = "{cert}"
key = "{key}"
host_addresses = ["127.8.6.4"]
"""
    )
    daemon.start()
    records = json.loads(daemon.cli("publish", "records", d, "--format", "json").stdout)
    for record in records:
        value = f'"{record["value"]}"' if record["type"] == "TXT" else record["value"]
        world.dns.set(record["name"], record["type"], value)
    assert daemon.query(d) == f"OK secure match=mx1.{d} servername=hostname"
    assert "publisher listening on 127.8.6.4:443" in daemon.log()


def test_records_detect_published_host_address(tmp_path, policy_host, world, make_daemon):
    d = world.new_domain("detect")
    daemon = make_daemon(start=False)
    daemon.config.write_text(daemon.config.read_text() + f'[publish.domains."{d}"]\nmx = ["mx1.{d}"]\n')
    out = daemon.cli("publish", "records", d)
    assert f"; mta-sts.{d}.\t3600\tIN\tA\t<address" in out.stdout  # nothing known yet
    world.dns.set(f"mta-sts.{d}", "A", "127.8.6.9")
    out = daemon.cli("publish", "records", d)
    assert f"mta-sts.{d}.\t3600\tIN\tA\t127.8.6.9" in out.stdout and "using the published ones" in out.stderr


def test_half_open_tls_flood_is_bounded_and_others_are_still_served(tmp_path, policy_host, world):
    # An anonymous client opens TCP connections and never sends a ClientHello. Each admitted
    # TLS handshake costs CPython about 300 KiB; before the bound 2,000 of them cost 600 MB.
    # Now a silent connection holds no TLS state at all, and one client only so many.
    from mtasts.servers.admission import MAX_SILENT_PER_CLIENT

    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("flood")
    cert, key = pub.cert_for(d)
    pub.write({d: {"mx": [f"mx.{d}"], "cert": cert, "key": key}})
    pub.start()
    flood = []
    try:
        before = rss_kib(pub.proc.pid)
        for _ in range(1500):
            s = socket.socket()
            s.bind(("127.8.6.200", 0))  # one client address
            s.connect((PUBLISHER_IP, 443))
            flood.append(s)
        time.sleep(1.0)
        during = rss_kib(pub.proc.pid)
        # Another client is served meanwhile.
        status, _headers, body = get(pub.ca, f"mta-sts.{d}", source="127.8.6.201")
        assert status == 200 and b"mode: enforce" in body
        # Past the per-client bound the server closed the flood's connections at once.
        closed = 0
        for s in flood:
            s.settimeout(0.01)
            try:
                closed += s.recv(1) == b""
            except (socket.timeout, BlockingIOError):
                pass
            except ConnectionError:
                closed += 1
        assert closed >= len(flood) - MAX_SILENT_PER_CLIENT
        assert during - before < 30 * 1024, (before, during)  # KiB
        assert "have sent nothing: closing the oldest" in pub.log.read_text()
        assert pub.log.read_text().count("have sent nothing") <= 11  # rate-limited
    finally:
        for s in flood:
            s.close()
        pub.stop()


def test_a_certificate_that_expires_while_serving_is_no_longer_served(tmp_path, policy_host, world, monkeypatch):
    """RFC 8461 §7.1: no handshake with an expired certificate, also when it expired after start."""
    import asyncio
    import datetime

    from mtasts.config import load_config
    from mtasts.servers import publisher as publisher_module

    if not _has_not_after():
        pytest.skip("this trustme cannot issue short-lived certificates")
    monkeypatch.setattr(publisher_module, "WATCH_INTERVAL", 0.1)
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("expiring")
    cert, key = tmp_path / "short.pem", tmp_path / "short.key"
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    issued = pub.ca.issue_cert(f"mta-sts.{d}", not_after=soon)
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    pub.write({d: {"mx": [f"mx.{d}"], "cert": str(cert), "key": str(key)}}, listen=["127.8.6.5:443"])

    def unverified(host):
        # The client does not check expiry itself: only the server's refusal shows.
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            with socket.create_connection(("127.8.6.5", 443), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as s:
                    s.sendall(
                        f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
                    )
                    return s.recv(12)
        except (ssl.SSLError, ConnectionError):
            return "handshake failed"

    async def scenario():
        server = publisher_module.PolicyPublisher(load_config(str(pub.config)))
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(None, unverified, f"mta-sts.{d}")
            await asyncio.sleep(max(0.0, soon.timestamp() - time.time()) + 1.5)
            after = await loop.run_in_executor(None, unverified, f"mta-sts.{d}")
            return before, after
        finally:
            await server.close()

    before, after = asyncio.run(scenario())
    assert before == b"HTTP/1.1 200" and after == "handshake failed"


def test_the_start_message_counts_only_what_is_served(tmp_path, policy_host, world):
    pub = Publisher(tmp_path, policy_host.ca, {})
    good, bad = world.new_domain("good"), world.new_domain("nocert")
    cert, key = pub.cert_for(good)
    pub.write(
        {
            good: {"mx": [f"mx.{good}"], "cert": cert, "key": key},
            bad: {"mx": [f"mx.{bad}"], "cert": str(tmp_path / "missing.pem"), "key": str(tmp_path / "missing.key")},
        },
        listen=["127.8.6.6:443"],
    )
    pub.start()
    try:
        log = pub.log.read_text()
        assert f"not serving mta-sts.{bad} over TLS" in log
        assert "publisher listening on 127.8.6.6:443 for 1 domain (1 of 2 not served: no usable certificate" in log
        assert "ready: publisher only, 1 domain (1 of 2 not served" in log
    finally:
        pub.stop()


def _tls_connection(ca, host, source):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    raw = socket.create_connection((PUBLISHER_IP, 443), timeout=10, source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname=host)


def _closed(sockets):
    """Which of *sockets* the server has closed (a moment after the last was opened)."""
    time.sleep(0.5)
    out = []
    for s in sockets:
        s.settimeout(0.01)
        try:
            out.append(s.recv(1) == b"")
        except (ConnectionError, ssl.SSLError):
            out.append(True)
        except socket.timeout:
            out.append(False)
    return out


@pytest.fixture
def flood_publisher(tmp_path, policy_host, world):
    pub = Publisher(tmp_path, policy_host.ca, {})
    d = world.new_domain("flood")
    cert, key = pub.cert_for(d)
    pub.write({d: {"mx": [f"mx.{d}"], "cert": cert, "key": key}}, publish_extra="max_connections = 40\n")
    pub.start()
    pub.domain = d
    yield pub
    pub.stop()


def test_one_address_cannot_hold_every_connection(flood_publisher):
    # Issue 24, 5: one address held all 2000 slots and 0 of 5 legitimate fetches were served.
    from mtasts.servers.admission import MAX_CONNECTIONS_PER_CLIENT

    pub, host = flood_publisher, f"mta-sts.{flood_publisher.domain}"
    held = [_tls_connection(pub.ca, host, "127.8.7.1") for _ in range(MAX_CONNECTIONS_PER_CLIENT + 10)]
    try:
        closed = _closed(held)
        assert closed == [True] * 10 + [False] * MAX_CONNECTIONS_PER_CLIENT  # the oldest idle ones made room
        assert get(pub.ca, host, source="127.8.7.2")[0] == 200
        assert "connections from 127.8.7.1: closing the oldest idle one" in pub.log.read_text()
    finally:
        for s in held:
            s.close()


def test_past_max_connections_the_oldest_idle_ones_make_room_for_new_senders(flood_publisher):
    pub, host = flood_publisher, f"mta-sts.{flood_publisher.domain}"
    held = [_tls_connection(pub.ca, host, f"127.8.8.{i % 10 + 1}") for i in range(40)]  # 4 per address
    try:
        statuses = [get(pub.ca, host, source=f"127.8.9.{i + 1}")[0] for i in range(5)]
        assert statuses == [200] * 5
        assert sum(_closed(held)) >= 1  # room made once; each fetch closes after its answer
        assert "max_connections): closing the oldest idle one" in pub.log.read_text()
    finally:
        for s in held:
            s.close()


def test_silent_connections_from_many_addresses_take_no_handshake_slot(flood_publisher):
    # Issue 24, 5: fresh silent connections from 64 addresses kept the 64 handshake slots
    # young, and 94 % of real fetches were refused. Silence now costs no TLS state at all.
    pub, host = flood_publisher, f"mta-sts.{flood_publisher.domain}"
    silent = []
    try:
        for i in range(256):
            s = socket.socket()
            s.bind((f"127.8.10.{i % 64 + 1}", 0))
            s.connect((PUBLISHER_IP, 443))
            silent.append(s)
        statuses = [get(pub.ca, host, source="127.8.11.1")[0] for _ in range(5)]
        assert statuses == [200] * 5
        assert "TLS handshakes in progress" not in pub.log.read_text()
    finally:
        for s in silent:
            s.close()


def test_malformed_requests_log_one_line_each_and_no_traceback(flood_publisher):
    pub, host = flood_publisher, f"mta-sts.{flood_publisher.domain}"
    for junk in [
        b"\x00\x01\x02 nonsense\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    ] * 10:
        with _tls_connection(pub.ca, host, "127.8.12.1") as s:
            s.sendall(junk)
            try:
                s.recv(100)
            except (ConnectionError, ssl.SSLError, socket.timeout):
                pass
    assert get(pub.ca, host)[0] == 200
    log = pub.log.read_text()
    assert "Traceback" not in log and "Error handling request" not in log
    assert 1 <= log.count("a client's request was refused") <= 10
