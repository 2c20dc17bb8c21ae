"""The HTTPS policy fetch (RFC 8461 §3.3).

No redirects, status 200 only, ``text/plain``, a 64 KiB cap on the body as sent and as
decoded, one total deadline, WebPKI verification with SNI and no fallback to the subject
CN, no HTTP caching, one connection per fetch. Socket, TLS and HTTP errors become
``FetchError`` here, most specific first.

A policy host is anyone's server: every read yields to the event loop and checks the
deadline (a host streaming bytes as fast as it can must not keep the loop that answers
Postfix busy), and a response ended by a FIN or RST without TLS close_notify is not taken
as complete unless its own framing says it is (RFC 9112 §9.8).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from mtasts import __version__
from mtasts.core.httpwire import Exchange, Head
from mtasts.core.policy import MAX_POLICY_SIZE, Policy, parse_policy
from mtasts.errors import (
    BodyTooLarge,
    ConfigError,
    FetchError,
    FetchFailure,
    HttpWireError,
    PolicyError,
    ResourceExhausted,
)
from mtasts.net.dns import DnsClient, discard_result

POLICY_PATH = "/.well-known/mta-sts.txt"
_REDIRECTS = (301, 302, 303, 307, 308)
_READ_CHUNK = 16384


@dataclass(frozen=True)
class FetchResult:
    policy: Policy
    body: bytes
    url: str


def policy_host(domain: str) -> str:
    # The Policy Host is built from the Policy Domain, even when _mta-sts is a CNAME (§3.2).
    return "mta-sts." + domain


def policy_url(domain: str) -> str:
    return f"https://{policy_host(domain)}{POLICY_PATH}"


def make_ssl_context(ca_file: str) -> ssl.SSLContext:
    """WebPKI verification as RFC 8461 §3.3 and §7.2 require.

    With ``ca_file`` empty the system store is used; it honours SSL_CERT_FILE/DIR.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[fetch] ca_file: cannot load {ca_file!r}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # §7.2
    # §3.3: "Matching is performed only against the DNS-ID identifiers", never the CN.
    context.hostname_checks_common_name = False
    # A connection cut without close_notify must say so, or a close-delimited policy cut
    # short reads as a shorter one (RFC 9112 §9.8). Some builds (pyenv's 3.8) set this.
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


def is_text_plain(content_type: Optional[str]) -> bool:
    """§3.2: media type text/plain; parameters ignored, case-insensitive (RFC 2045)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "text/plain"


class PolicySource(Protocol):
    """Where discovery gets a policy from; ``PolicyFetcher`` is the real one (HTTPS)."""

    def prepare(self, domain: str) -> None:
        """A fetch of *domain* may follow: start what needs no connection (the policy
        host's addresses), so the fetch does not wait for it."""

    def abandon(self, domain: str) -> None:
        """No fetch of *domain* follows after all: drop what ``prepare`` started."""

    async def fetch(self, domain: str) -> FetchResult:
        """The policy of *domain*; FetchError (with its TLSRPT result type) otherwise."""


class PolicyFetcher:
    """HTTPS GETs of policies: a non-blocking ``ssl.SSLSocket`` driven from the event loop
    and ``core.httpwire`` (h11) for HTTP/1.1: no asyncio SSL protocol and no HTTP client
    session, whose cost was a first lookup's largest after the TLS handshake itself."""

    # Prefetches nobody took (a fetch that never came): the oldest are dropped beyond this.
    MAX_PREFETCHED = 1024
    # Fetches with an open connection at once; more wait (inside their deadline).
    MAX_CONNECTIONS = 256
    # RFC 8305 §5: the next address is tried this long after the last attempt began.
    CONNECT_STAGGER = 0.25

    def __init__(self, dns_client: DnsClient, timeout: float, ca_file: str = "", port: int = 443) -> None:
        self._dns = dns_client
        self.timeout = timeout
        self.port = port  # 443 (§3.3); tests use another
        self._ssl = make_ssl_context(ca_file)
        self._request_fields = (
            ("User-Agent", f"mtasts/{__version__}"),
            ("Accept", "text/plain"),
            ("Accept-Encoding", "identity"),
            # §3.3: senders must not use HTTP caching; ask intermediaries not to either.
            ("Cache-Control", "no-cache"),
        )
        self._prefetched: Dict[str, asyncio.Future[List[Tuple[int, str]]]] = {}
        self._slots: Optional[asyncio.Semaphore] = None

    def prepare(self, domain: str) -> None:
        host = policy_host(domain)
        early = self._prefetched.get(host)
        if early is not None and not (early.done() and not early.cancelled() and early.exception() is not None):
            return
        task = asyncio.ensure_future(self._dns.addresses(host))
        task.add_done_callback(discard_result)  # a lookup nobody takes must not log "never retrieved"
        self._prefetched[host] = task
        while len(self._prefetched) > self.MAX_PREFETCHED:
            self._forget(next(iter(self._prefetched)))

    def abandon(self, domain: str) -> None:
        self._forget(policy_host(domain))

    def _forget(self, host: str) -> None:
        task = self._prefetched.pop(host, None)
        if task is not None and not task.done():
            task.cancel()

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.MAX_CONNECTIONS)  # made in the loop (3.8 binds one)

    async def close(self) -> None:
        for host in list(self._prefetched):
            self._forget(host)

    async def fetch(self, domain: str) -> FetchResult:
        url = policy_url(domain)
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            return await asyncio.wait_for(self._fetch(domain, url, deadline), self.timeout)
        except asyncio.TimeoutError:
            raise self._late(url) from None

    def _late(self, url: str) -> FetchError:
        return FetchError(FetchFailure.TIMEOUT, f"{url}: no complete answer within {self.timeout:g} s")

    async def _fetch(self, domain: str, url: str, deadline: float) -> FetchResult:
        assert self._slots is not None, "PolicyFetcher.start() was not awaited"
        host = policy_host(domain)
        early = self._prefetched.pop(host, None)
        async with self._slots:
            try:
                addresses = await (early if early is not None else self._dns.addresses(host))
            except OSError as exc:
                raise self._cannot_connect(url, host, _os_reason(exc)) from None
            plain = await self._connect(url, host, addresses)
            try:
                tls = self._ssl.wrap_socket(
                    plain, server_hostname=host, do_handshake_on_connect=False, suppress_ragged_eofs=False
                )
            except (ssl.SSLError, ValueError, OSError) as exc:
                plain.close()
                raise FetchError(FetchFailure.TLS, f"{url}: {_os_reason(exc)}") from exc
            except BaseException:
                plain.close()
                raise
            with tls:
                connection = _Connection(tls)
                try:
                    await connection.io(tls.do_handshake)
                except ssl.SSLCertVerificationError as exc:
                    raise FetchError(FetchFailure.CERTIFICATE, f"{url}: {exc}") from exc
                except (ssl.SSLError, OSError) as exc:
                    if _cut_off(exc) or isinstance(exc, ssl.SSLZeroReturnError):
                        # The server hung up on our ClientHello: e.g. one that only speaks TLS 1.0/1.1.
                        raise FetchError(
                            FetchFailure.CONNECT,
                            f"{url}: {host}:{self.port} closed the connection during the"
                            f" TLS handshake ({_os_reason(exc)})",
                        ) from exc
                    if isinstance(exc, ssl.SSLError):
                        raise FetchError(FetchFailure.TLS, f"{url}: {exc}") from exc
                    raise self._cannot_connect(url, host, _os_reason(exc)) from exc
                try:
                    body = await self._exchange(connection, host, url, deadline)
                except (ssl.SSLError, OSError) as exc:
                    raise FetchError(FetchFailure.HTTP, f"{url}: {_os_reason(exc)}") from exc
        try:
            policy = parse_policy(body)
        except PolicyError as exc:
            raise FetchError(FetchFailure.INVALID_POLICY, f"{url}: {exc}") from exc
        return FetchResult(policy=policy, body=body, url=url)

    async def _exchange(self, connection: _Connection, host: str, url: str, deadline: float) -> bytes:
        try:
            exchange = Exchange(host, POLICY_PATH, self._request_fields, MAX_POLICY_SIZE)
            request = memoryview(exchange.request)
            while request:
                request = request[await connection.io(connection.tls.send, request) :]
            while exchange.head is None:
                await self._receive(connection, exchange, url, deadline)
            _judge(url, exchange.head)
            exchange.feed(b"")
            while not exchange.done:
                await self._receive(connection, exchange, url, deadline)
        except BodyTooLarge as exc:
            raise FetchError(FetchFailure.TOO_LARGE, f"{url}: body over {MAX_POLICY_SIZE} bytes ({exc})") from None
        except HttpWireError as exc:
            raise FetchError(FetchFailure.HTTP, f"{url}: {exc}") from None
        return exchange.body

    async def _receive(self, connection: _Connection, exchange: Exchange, url: str, deadline: float) -> None:
        """One read into *exchange*. A read that needs no wait returns at once, so this
        yields to the event loop after each one and checks the deadline itself: a host
        streaming as fast as it can gets one turn of the loop per read, like everyone else."""
        data = await connection.io(connection.receive)
        if data:
            exchange.feed(data)
            await asyncio.sleep(0)
            if asyncio.get_running_loop().time() >= deadline:
                raise self._late(url)
        else:
            exchange.end(clean=data is not None)

    def _cannot_connect(self, url: str, host: str, reason: str) -> FetchError:
        return FetchError(FetchFailure.CONNECT, f"{url}: cannot connect to {host}:{self.port}: {reason}")

    async def _connect(self, url: str, host: str, addresses: List[Tuple[int, str]]) -> socket.socket:
        """A TCP connection to one of *addresses*, the families alternating, each attempt
        CONNECT_STAGGER after the last began or as soon as it failed (RFC 8305 §5)."""
        loop = asyncio.get_running_loop()
        if len(addresses) == 1:  # the common case needs no race
            try:
                return await _attempt(loop, *addresses[0], self.port)
            except OSError as exc:
                raise self._cannot_connect(url, host, _os_reason(exc)) from None
        errors: List[BaseException] = []
        attempts: Set[asyncio.Future[socket.socket]] = set()
        waiting = interleave_families(addresses)
        try:
            while waiting or attempts:
                if waiting:
                    attempts.add(asyncio.ensure_future(_attempt(loop, *waiting.pop(0), self.port)))
                done, attempts = await asyncio.wait(
                    attempts, timeout=self.CONNECT_STAGGER if waiting else None, return_when=asyncio.FIRST_COMPLETED
                )
                connected = [attempt.result() for attempt in done if attempt.exception() is None]
                errors += [error for error in (attempt.exception() for attempt in done) if error is not None]
                exhausted = [e for e in errors if isinstance(e, ResourceExhausted)]
                if exhausted and not connected:
                    raise exhausted[0]  # undecided here, not a policy host that cannot be reached
                if connected:
                    for extra in connected[1:]:  # two connected in the same turn: keep one
                        extra.close()
                    return connected[0]  # the attempts still running are cancelled below
        finally:
            for attempt in attempts:
                attempt.cancel()
                attempt.add_done_callback(_close_connected)
        reason = "; ".join(dict.fromkeys(_os_reason(e) for e in errors)) or "no address"
        raise self._cannot_connect(url, host, reason)


def interleave_families(addresses: List[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """RFC 8305 §4: alternate the address families, the first address's family first, so
    that a family that does not work costs one stagger, not one per address of it."""
    by_family: Dict[int, List[Tuple[int, str]]] = {}
    for address in addresses:
        by_family.setdefault(address[0], []).append(address)
    queues = list(by_family.values())
    ordered = []
    while queues:
        ordered += [queue.pop(0) for queue in queues]
        queues = [queue for queue in queues if queue]
    return ordered


async def _attempt(loop: asyncio.AbstractEventLoop, family: int, address: str, port: int) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        ResourceExhausted.check(exc, f"a socket to connect to {address} port {port}")
        raise
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (address, port))
    except OSError as exc:
        sock.close()
        ResourceExhausted.check(exc, f"connecting to {address} port {port}")
        raise
    except BaseException:
        sock.close()
        raise
    return sock


def _close_connected(attempt: asyncio.Future[socket.socket]) -> None:
    """An attempt that connected after another won (or after the fetch gave up) is closed."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()


def _judge(url: str, head: Head) -> None:
    """§3.3: status 200 only, no redirects followed; §3.2: text/plain."""
    if head.status in _REDIRECTS:
        raise FetchError(
            FetchFailure.REDIRECT,
            f"{url}: HTTP {head.status} redirect to {head.get('Location') or '?'!r}"
            " (RFC 8461 §3.3 forbids following it)",
        )
    if head.status != 200:
        raise FetchError(FetchFailure.HTTP_STATUS, f"{url}: HTTP {head.status}, expected 200")
    content_type = head.get("Content-Type")
    if not is_text_plain(content_type):
        raise FetchError(FetchFailure.CONTENT_TYPE, f"{url}: Content-Type {content_type!r}, expected text/plain")


class _Connection:
    """Waits for a non-blocking TLS socket through the event loop's selector."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self._fd = tls.fileno()
        self._loop = asyncio.get_running_loop()

    def receive(self) -> Optional[bytes]:
        """The next bytes; b"" after a TLS close_notify; None when the connection ended
        without one (a FIN or RST: the server, or anyone on the path, cut it)."""
        try:
            return self.tls.recv(_READ_CHUNK)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLZeroReturnError:
            return b""
        except (ssl.SSLError, OSError) as exc:
            if _cut_off(exc):
                return None
            raise

    async def io(self, operation: Callable[..., Any], *args: Any) -> Any:
        """*operation* retried until the socket lets it complete."""
        while True:
            try:
                return operation(*args)
            except ssl.SSLWantReadError:
                await self._ready(self._loop.add_reader, self._loop.remove_reader)
            except ssl.SSLWantWriteError:
                await self._ready(self._loop.add_writer, self._loop.remove_writer)

    async def _ready(self, add: Callable[..., None], remove: Callable[[int], bool]) -> None:
        waiter = self._loop.create_future()
        add(self._fd, _wake, waiter)
        try:
            await waiter
        finally:
            remove(self._fd)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _cut_off(exc: BaseException) -> bool:
    """Whether *exc* says the TLS connection ended without close_notify. OpenSSL 3 names it
    UNEXPECTED_EOF_WHILE_READING, which Python < 3.10 raises as a plain SSLError."""
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)):
        return True
    return isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"


def _os_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
