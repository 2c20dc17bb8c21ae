"""The HTTPS policy fetch (RFC 8461 §3.3) through one shared aiohttp session.

No redirects, status 200 only, ``text/plain``, a streamed 64 KiB cap, one total
deadline, WebPKI verification with SNI and no fallback to the subject CN, no HTTP
caching. Library exceptions become ``FetchError`` here, most specific first.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Optional, Protocol

import aiohttp

from mtasts import __version__
from mtasts.core.policy import MAX_POLICY_SIZE, Policy, parse_policy
from mtasts.errors import FetchError, PolicyError
from mtasts.net.dns import DnsClient, DnsConnectorResolver

POLICY_PATH = "/.well-known/mta-sts.txt"
WEBPKI_INVALID = "sts-webpki-invalid"
POLICY_INVALID = "sts-policy-invalid"
_REDIRECTS = (301, 302, 303, 307, 308)
_READ_CHUNK = 16384
SSL_SHUTDOWN_GRACE = 0.25


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
        from mtasts.errors import ConfigError

        raise ConfigError(f"[fetch] ca_file: cannot load {ca_file!r}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # §7.2
    # §3.3: "Matching is performed only against the DNS-ID identifiers", never the CN.
    context.hostname_checks_common_name = False
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
    def __init__(self, dns_client: DnsClient, timeout: float, ca_file: str = "") -> None:
        self._dns = dns_client
        self.timeout = timeout
        self._ssl = make_ssl_context(ca_file)
        self._session: Optional[aiohttp.ClientSession] = None
        self._resolver = DnsConnectorResolver(dns_client)

    def prepare(self, domain: str) -> None:
        self._resolver.prefetch(policy_host(domain))

    def abandon(self, domain: str) -> None:
        self._resolver.forget(policy_host(domain))

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            ssl=self._ssl,
            use_dns_cache=False,
            force_close=True,  # thousands of policy hosts: keep no idle connections
            limit=256,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # our own deadline covers the whole fetch
            auto_decompress=True,
            headers={
                "User-Agent": f"mtasts/{__version__}",
                "Accept": "text/plain",
                "Accept-Encoding": "identity",
                # §3.3: senders must not use HTTP caching; ask intermediaries not to either.
                "Cache-Control": "no-cache",
            },
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            # TLS connections close with an SSL shutdown that needs the loop a little
            # longer; aiohttp's documented graceful shutdown waits for it.
            await asyncio.sleep(SSL_SHUTDOWN_GRACE)

    async def fetch(self, domain: str) -> FetchResult:
        url = policy_url(domain)
        try:
            return await asyncio.wait_for(self._fetch(url), self.timeout)
        except asyncio.TimeoutError:
            raise FetchError("timeout", f"{url}: no complete answer within {self.timeout:g} s") from None

    async def _fetch(self, url: str) -> FetchResult:
        assert self._session is not None, "PolicyFetcher.start() was not awaited"
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    raise FetchError(
                        "redirect",
                        f"{url}: HTTP {response.status} redirect to {response.headers.get('Location', '?')!r}"
                        " (RFC 8461 §3.3 forbids following it)",
                    )
                if response.status != 200:
                    raise FetchError("http-status", f"{url}: HTTP {response.status}, expected 200")
                content_type = response.headers.get("Content-Type")
                if not is_text_plain(content_type):
                    raise FetchError("content-type", f"{url}: Content-Type {content_type!r}, expected text/plain")
                body = bytearray()
                async for chunk in response.content.iter_chunked(_READ_CHUNK):
                    body += chunk
                    if len(body) > MAX_POLICY_SIZE:
                        raise FetchError(
                            "too-large", f"{url}: body over {MAX_POLICY_SIZE} bytes", POLICY_INVALID
                        )
        except FetchError:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError("certificate", f"{url}: {exc.certificate_error}", WEBPKI_INVALID) from exc
        except aiohttp.ClientSSLError as exc:
            raise FetchError("tls", f"{url}: {_reason(exc)}", WEBPKI_INVALID) from exc
        except ssl.SSLError as exc:
            raise FetchError("tls", f"{url}: {exc}", WEBPKI_INVALID) from exc
        except aiohttp.ClientConnectorError as exc:
            # A reset during the TLS handshake lands here too (e.g. a server that only
            # speaks TLS 1.0/1.1 and drops our TLS 1.2+ ClientHello).
            raise FetchError("connect", f"{url}: cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}") from exc
        except aiohttp.ClientError as exc:
            raise FetchError("http", f"{url}: {_reason(exc)}") from exc
        except OSError as exc:
            raise FetchError("connect", f"{url}: {exc}") from exc
        try:
            policy = parse_policy(bytes(body))
        except PolicyError as exc:
            raise FetchError("invalid-policy", f"{url}: {exc}", POLICY_INVALID) from exc
        return FetchResult(policy=policy, body=bytes(body), url=url)


def _os_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
