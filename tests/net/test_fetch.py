"""net/fetch against scripted TLS servers on loopback: what it sends, responses framed and
trickled, garbage, truncation, certificates, addresses that refuse or never answer, the
deadline. No root: the servers listen on 127.0.0.x port 0 (the fetcher's port is settable)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time

import pytest
import trustme

from mtasts.errors import FetchError
from mtasts.net.fetch import PolicyFetcher, interleave_families

DOMAIN = "example.test"
HOST = "mta-sts." + DOMAIN
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 86400\r\n"
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"


class Addresses:
    """The policy host's addresses as DnsClient.addresses gives them (family, address)."""

    def __init__(self, *addresses: str) -> None:
        self.asked = []
        self.answer = [(socket.AF_INET, a) for a in addresses]

    async def addresses(self, host: str, family: int = socket.AF_UNSPEC):
        self.asked.append(host)
        if not self.answer:
            raise OSError(f"cannot resolve {host}: no A or AAAA record")
        return self.answer


class ScriptedHttps:
    """A TLS server on 127.0.0.1 (any port) that reads one request per connection, runs
    ``script(tls)`` and closes (with a TLS close_notify unless *notify* is false), or with
    *hold* waits for the client to close (``closed``); ``requests`` holds what each
    connection sent."""

    def __init__(self, tmp_path, script, name=HOST, port=0, hold=False, notify=True):
        self.ca = trustme.CA()
        self.ca_file = str(tmp_path / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(name).configure_cert(self.context)
        self.script = script
        self.hold = hold
        self.notify = notify
        self.requests = []
        self.closed = threading.Event()  # set when a held connection's client end went away
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                self.script(tls)
                if self.notify and not self.hold:
                    try:
                        tls.unwrap().close()
                    except (OSError, ssl.SSLError):
                        pass
                    return
                if self.hold:
                    tls.settimeout(10)
                    while tls.recv(4096):  # until the client closes
                        pass
                    self.closed.set()
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.listener.close()


def fetch(server, addresses=None, timeout=3.0, ca_file=None):
    async def run():
        fetcher = PolicyFetcher(
            addresses or Addresses("127.0.0.1"), timeout, ca_file or server.ca_file, port=server.port
        )
        await fetcher.start()
        try:
            return await fetcher.fetch(DOMAIN)
        finally:
            await fetcher.close()

    return asyncio.run(run())


def failure(server, **kw) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(server, **kw)
    return caught.value


def sender(*pieces, pause=0.0):
    def script(tls):
        for piece in pieces:
            tls.sendall(piece)
            time.sleep(pause)

    return script


def test_the_request_and_a_policy_read_back(tmp_path):
    server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(POLICY) + POLICY), hold=True)
    result = fetch(server)
    assert result.body == POLICY and result.policy.max_age == 86400
    assert result.url == f"https://{HOST}/.well-known/mta-sts.txt"
    request = server.requests[0].decode()
    lines = request.split("\r\n")
    assert lines[0] == "GET /.well-known/mta-sts.txt HTTP/1.1"
    assert f"Host: {HOST}" in lines and "Connection: close" in lines
    assert "Cache-Control: no-cache" in lines and "Accept-Encoding: identity" in lines  # §3.3: no caching
    assert server.closed.wait(5)  # and the connection is closed after the response


def test_a_chunked_response_trickled_in_tiny_segments(tmp_path):
    wire = (
        OK_HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(POLICY[i : i + 7]), POLICY[i : i + 7]) for i in range(0, len(POLICY), 7))
        + b"0\r\n\r\n"
    )
    server = ScriptedHttps(tmp_path, sender(*(wire[i : i + 5] for i in range(0, len(wire), 5)), pause=0.002))
    assert fetch(server).body == POLICY


@pytest.mark.parametrize(
    "reply,kind,text",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "http", "illegal status line"),
        (OK_HEAD + b"Content-Length: 500\r\n\r\n" + POLICY, "http", "before the end of the body"),
        (OK_HEAD + b"Content-Encoding: br\r\n\r\nxx", "http", "unsupported Content-Encoding"),
        (b"", "http", "closed without a response"),
        (OK_HEAD + b"Content-Length: 99999999\r\n\r\n", "too-large", "body over 65536 bytes"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 99999999\r\n\r\n", "http-status", "HTTP 404, expected 200"),
        (
            b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/\r\n\r\n",
            "redirect",
            "redirect to 'https://elsewhere.example/'",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>", "content-type", "Content-Type 'text/html'"),
        (OK_HEAD + b"\r\nversion: STSv1\r\nmode: bogus\r\n", "invalid-policy", "mode"),
    ],
)
def test_unusable_responses_fail_for_their_own_reason(tmp_path, reply, kind, text):
    server = ScriptedHttps(tmp_path, sender(reply))
    error = failure(server)
    assert error.kind == kind and text in str(error), str(error)


def test_a_certificate_for_another_name_is_a_webpki_failure(tmp_path):
    server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + POLICY), name="mta-sts.other.test")
    error = failure(server)
    assert error.kind == "certificate" and "Hostname mismatch" in str(error)
    assert error.result_type == "sts-webpki-invalid"


def test_an_untrusted_certificate_is_a_webpki_failure(tmp_path):
    server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + POLICY))
    other = ScriptedHttps(tmp_path / "..", sender(b""))  # another CA's file
    error = failure(server, ca_file=other.ca_file)
    assert error.kind == "certificate" and "unable to get local issuer certificate" in str(error)


def test_a_silent_server_meets_the_deadline_and_the_connection_is_closed(tmp_path):
    server = ScriptedHttps(tmp_path, sender(), hold=True)
    started = time.monotonic()
    error = failure(server, timeout=0.5)
    assert error.kind == "timeout" and 0.5 <= time.monotonic() - started < 2
    assert server.closed.wait(5)


def test_a_refusing_address_is_passed_for_the_next(tmp_path):
    server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + POLICY))
    assert fetch(server, addresses=Addresses("127.0.0.2", "127.0.0.1")).body == POLICY
    for refusing in (("127.0.0.2", "127.0.0.3"), ("127.0.0.2",)):
        error = failure(server, addresses=Addresses(*refusing))
        assert error.kind == "connect" and "ConnectionRefusedError" in str(error), str(error)
        assert f"{HOST}:{server.port}" in str(error)


def test_no_address_is_a_connect_failure_naming_the_host(tmp_path):
    server = ScriptedHttps(tmp_path, sender())
    error = failure(server, addresses=Addresses())
    assert error.kind == "connect" and "no A or AAAA record" in str(error)


def test_an_address_that_never_answers_is_overtaken_after_the_stagger(tmp_path):
    server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + POLICY))
    # A listener on 127.0.0.4 that never accepts, its queue full: the kernel drops further SYNs.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.4", server.port))
    black_hole.listen(0)
    queued = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.4", server.port))
        queued.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.4", server.port))
        pytest.skip("this kernel completes connections beyond the listen queue")
    except socket.timeout:
        pass
    finally:
        probe.close()
    started = time.monotonic()
    assert fetch(server, addresses=Addresses("127.0.0.4", "127.0.0.1")).body == POLICY
    took = time.monotonic() - started
    assert PolicyFetcher.CONNECT_STAGGER <= took < 1.5, took
    for s in queued:
        s.close()
    black_hole.close()


def test_address_families_alternate_the_first_family_first():
    v4, v6 = socket.AF_INET, socket.AF_INET6
    given = [(v4, "192.0.2.1"), (v4, "192.0.2.2"), (v4, "192.0.2.3"), (v6, "2001:db8::1"), (v6, "2001:db8::2")]
    assert interleave_families(given) == [given[0], given[3], given[1], given[4], given[2]]
    assert interleave_families(given[3:] + given[:1]) == [given[3], given[0], given[4]]
    assert interleave_families(given[:2]) == given[:2]


def test_a_close_delimited_body_ends_at_close_notify_only(tmp_path):
    # RFC 9112 §9.8: a FIN or RST without close_notify may be anyone's, cutting the policy
    # anywhere: "mx1.victim.atk" read as "mx1.victim.at", max_age 31557600 read as 3.
    victim = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.victim.atk\r\nmax_age: 31557600\r\n"
    assert fetch(ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + victim))).body == victim
    for cut in (len(victim), len(victim) - 3, len(victim) - 22):
        server = ScriptedHttps(tmp_path, sender(OK_HEAD + b"\r\n" + victim[:cut]), notify=False)
        error = failure(server)
        assert error.kind == "http" and "without TLS close_notify" in str(error), str(error)


def test_a_reset_after_a_complete_length_framed_body_changes_nothing(tmp_path):
    def reset(tls):
        tls.sendall(OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(POLICY) + POLICY)
        time.sleep(0.3)  # read by then: the fetch does not wait for the close
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    assert fetch(ScriptedHttps(tmp_path, reset, notify=False)).body == POLICY


def streamer(head, piece):
    """A host that sends *head*, then *piece* as fast as it can until the client leaves."""

    def script(tls):
        tls.sendall(head)
        block = piece * max(1, 16384 // len(piece))
        try:
            while True:
                tls.sendall(block)
        except (OSError, ssl.SSLError):
            pass

    return script


def test_a_host_streaming_interim_responses_is_refused_at_their_bound(tmp_path):
    # The defect of issue 24: "HTTP/1.1 100 Continue" at ~3 MB/s kept the event loop busy
    # past the deadline. Refused after MAX_INTERIM of them, whatever the deadline.
    server = ScriptedHttps(tmp_path, streamer(b"", b"HTTP/1.1 100 Continue\r\n\r\n"), notify=False)
    error = failure(server, timeout=30.0)
    assert error.kind == "http" and "interim (1xx) responses" in str(error), str(error)


def test_a_host_streaming_chunk_framing_is_refused_at_the_response_bound(tmp_path):
    server = ScriptedHttps(
        tmp_path,
        streamer(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"1;" + b"e" * 1000 + b"\r\nx\r\n"),
        notify=False,
    )
    error = failure(server, timeout=30.0)
    assert error.kind == "http" and "octets with its framing" in str(error), str(error)


def test_a_fetch_that_keeps_receiving_lets_the_event_loop_run(tmp_path):
    # A trickle inside every bound (a header field, one octet at a time, never ending): the
    # loop must still turn between reads, and the deadline must end it.
    def trickle(tls):
        tls.sendall(OK_HEAD)
        try:
            for _ in range(100000):
                tls.sendall(b"X")
                time.sleep(0.001)
        except (OSError, ssl.SSLError):
            pass

    server = ScriptedHttps(tmp_path, trickle, notify=False)

    async def run():
        fetcher = PolicyFetcher(Addresses("127.0.0.1"), 0.5, server.ca_file, port=server.port)
        await fetcher.start()
        turns = 0

        async def ticker():
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        try:
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(DOMAIN)
        finally:
            task.cancel()
            await fetcher.close()
        return caught.value, turns

    error, turns = asyncio.run(run())
    assert error.kind == "timeout" or "Receive buffer too long" in str(error), str(error)
    assert turns > 10  # the ticker ran while the fetch was reading
