"""One error tree for the whole package.

    MtastsError
    ├── ConfigError            local configuration is wrong (file, key, expectation)
    ├── ProtocolError          a peer broke a wire protocol
    │   ├── NetstringError     malformed netstring: close that connection
    │   ├── RequestError       well-formed netstring, unusable socketmap request
    │   ├── DnsWireError       a DNS message that cannot be read (or a name that cannot be sent)
    │   └── HttpWireError      a policy host's response that is no bounded HTTP/1.1
    │       └── BodyTooLarge   its body, as sent or decoded, is over the policy size limit
    ├── RecordError            the _mta-sts TXT answer yields no usable record (remote)
    ├── PolicyError            the policy body is invalid (remote)
    ├── DiscoveryError         DNS or HTTPS failed during discovery (remote)
    │   └── FetchError         the HTTPS policy fetch failed: a FetchFailure, which carries
    │                          its RFC 8460 result type
    ├── AnswerError            an answer Postfix would not read (our own bug, caught in tests)
    ├── ReportError            a TLSRPT report that cannot be read (remote; kept as broken)
    ├── StoreError             the local cache store failed (local; sqlite3 errors mapped here)
    ├── ResourceExhausted      no descriptor, buffer or memory for a lookup (local; TEMP, never
    │                          "no policy")
    ├── PostfixError           postconf is missing, failed or said nothing usable (local)
    ├── UsageError             a command-line argument the command cannot use
    └── DaemonNotRunning       no daemon answers on the control socket

Remote faults never defer mail: they mean "no policy" unless a valid policy is cached.
Local faults that leave a lookup undecided (ResourceExhausted, a failing store) defer it.
"""

from __future__ import annotations

import enum
import errno

# The errnos of a local resource running out: a lookup that meets one is undecided, not failed.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class MtastsError(Exception):
    """Base of every error raised on purpose by mtasts."""


class ConfigError(MtastsError):
    """The configuration is wrong; the message names the file, key and expectation."""


class ProtocolError(MtastsError):
    """A peer sent bytes that break the protocol."""


class NetstringError(ProtocolError):
    """Malformed or oversized netstring: the connection cannot be resynchronised."""


class RequestError(ProtocolError):
    """A netstring that is not a ``NAME SP KEY`` socketmap request."""


class DnsWireError(ProtocolError):
    """A DNS response that breaks RFC 1035's format, or a name no query can carry."""


class HttpWireError(ProtocolError):
    """A response that is no readable, bounded HTTP/1.x (the fetch's "http" failure)."""


class BodyTooLarge(HttpWireError):
    """The body, as sent or decoded, is over the reader's limit."""


class RecordError(MtastsError):
    """No usable ``_mta-sts`` TXT record (RFC 8461 §3.1)."""


class PolicyError(MtastsError):
    """The policy body does not parse per RFC 8461 §3.2."""


class DiscoveryError(MtastsError):
    """DNS or HTTPS failed while discovering a policy.

    ``kind`` is a short machine-readable reason used in logs and metrics.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class FetchFailure(enum.Enum):
    """Why a policy fetch failed: a closed set (metrics label it, so it stays bounded), each
    with the RFC 8460 §4.3.2.2 result type a TLSRPT report gives it."""

    TIMEOUT = ("timeout", "sts-policy-fetch-error")
    CONNECT = ("connect", "sts-policy-fetch-error")
    TLS = ("tls", "sts-webpki-invalid")
    CERTIFICATE = ("certificate", "sts-webpki-invalid")
    HTTP = ("http", "sts-policy-fetch-error")
    HTTP_STATUS = ("http-status", "sts-policy-fetch-error")
    REDIRECT = ("redirect", "sts-policy-fetch-error")
    CONTENT_TYPE = ("content-type", "sts-policy-fetch-error")
    TOO_LARGE = ("too-large", "sts-policy-invalid")
    INVALID_POLICY = ("invalid-policy", "sts-policy-invalid")

    def __init__(self, label: str, result_type: str) -> None:
        self.label = label
        self.result_type = result_type


class FetchError(DiscoveryError):
    """The HTTPS policy fetch failed (RFC 8461 §3.3): ``failure`` says why, ``kind`` is its
    label and ``result_type`` the TLSRPT result type (RFC 8460 §4.3)."""

    def __init__(self, failure: FetchFailure, detail: str) -> None:
        super().__init__(failure.label, detail)
        self.failure = failure
        self.result_type = failure.result_type


class AnswerError(MtastsError):
    """An ``smtp_tls_policy_maps`` answer that Postfix's grammar would not read."""


class ReportError(MtastsError):
    """A TLSRPT report (RFC 8460 §4) that cannot be read: kept as broken, with this reason."""


class StoreError(MtastsError):
    """The persistent cache store failed (local fault)."""


class ResourceExhausted(MtastsError):
    """A lookup found no file descriptor, socket buffer or memory (EMFILE, ENFILE, ENOBUFS,
    ENOMEM). A local fault: the lookup answers TEMP (Postfix retries), never "no policy",
    which would be a silent downgrade of an enforced domain."""

    @classmethod
    def check(cls, exc: BaseException, what: str) -> None:
        """Raise a ResourceExhausted for *exc* (from it) when it is one; else return."""
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
            reason = errno.errorcode.get(getattr(exc, "errno", None) or 0, "ENOMEM")
            raise cls(f"{what}: {reason} ({getattr(exc, 'strerror', None) or exc or 'out of memory'})") from exc


class PostfixError(MtastsError):
    """postconf is missing, failed or said nothing usable."""


class UsageError(MtastsError):
    """The command line asks for something the command cannot do (``mtasts`` exits 64)."""


class DaemonNotRunning(MtastsError):
    """Nothing answers on the control socket (``mtasts`` exits 69 when there is no store either)."""
