"""HTTP/1.1 as the policy fetch speaks it (RFC 9112): one GET, one response, through h11.

Pure: an ``Exchange`` gives the request's bytes and is fed the response's bytes as they
arrive; it gives the head, then the body, or raises ``HttpWireError``. h11 (the sans-I/O
parser) reads the messages; this module adds what a policy fetch needs on top and bounds
everything a policy host controls:

* ``feed`` returns as soon as the final head is read, so the caller judges the status and
  the media type (RFC 8461 §3.3) before any body is read;
* at most ``MAX_INTERIM`` interim (1xx) responses, ``MAX_FIELDS`` header fields, a head of
  ``MAX_HEAD`` octets, and ``MAX_RESPONSE`` octets for the whole response, framing included
  (a host streaming ``100 Continue`` or one-octet chunks stops at these, not at the deadline);
* the body at most *limit* octets as sent and as decoded (gzip or deflate, only when a server
  sends them unasked; a compression bomb stops at the limit);
* a body delimited by the connection's close is complete only after a TLS close_notify
  (RFC 9112 §9.8): ``end(clean=False)`` is a truncation, never a shorter policy.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import h11

from mtasts.errors import BodyTooLarge, HttpWireError

# A status line and header fields this long are no policy host's (h11's default is 16 KiB;
# aiohttp allowed ~8 KiB a line). Also bounds each chunk-size line and the trailers.
MAX_HEAD = 32 * 1024
MAX_FIELDS = 100
# 100 Continue and 103 Early Hints are all a server may send before its answer to a GET; a
# few are harmless, a stream of them is an attack on the reader (RFC 9110 §15.2 sets no bound).
MAX_INTERIM = 8
# Octets of chunk framing (sizes, extensions, line ends, trailers) allowed beside the body:
# a policy in one-octet chunks costs six octets an octet; more is no server's honest framing.
FRAMING_ALLOWANCE = 64 * 1024

__all__ = ["MAX_FIELDS", "MAX_HEAD", "MAX_INTERIM", "BodyTooLarge", "Exchange", "Head", "HttpWireError"]


@dataclass(frozen=True)
class Head:
    status: int
    reason: str
    # (lower-case name, value) in the order sent; values decoded as ISO-8859-1 (RFC 9110 §5.5).
    fields: Tuple[Tuple[str, str], ...]

    def get(self, name: str) -> Optional[str]:
        """The first value of field *name* (case-insensitive), or None."""
        name = name.lower()
        for field, value in self.fields:
            if field == name:
                return value
        return None

    def values(self, name: str) -> List[str]:
        """Every comma-separated element of every *name* field (RFC 9110 §5.3)."""
        name = name.lower()
        return [
            item.strip() for field, value in self.fields if field == name for item in value.split(",") if item.strip()
        ]


class Exchange:
    """One GET of *path* on *host* (the connection closes after the response) and the
    response to it. ``request``: the bytes to send. ``feed`` the response's bytes as they
    come; ``head`` is set once the final head is read (``feed`` then returns; the body waits
    for the next ``feed``, which may be empty); ``end`` says the connection closed, and
    whether cleanly (a TLS close_notify). ``done``: the body is complete (``body``)."""

    def __init__(self, host: str, path: str, fields: Tuple[Tuple[str, str], ...], limit: int) -> None:
        self.limit = limit
        self.max_response = MAX_HEAD * (MAX_INTERIM + 1) + limit + FRAMING_ALLOWANCE
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        headers = [("Host", host)] + list(fields) + [("Connection", "close")]
        try:
            self.request = self._h11.send(h11.Request(method="GET", target=path, headers=headers))
        except h11.LocalProtocolError as exc:  # a host or field no request can carry
            raise HttpWireError(f"cannot send the request: {exc}") from None
        self.head: Optional[Head] = None
        self.done = False
        self._received = 0
        self._interim = 0
        self._body_started = False
        self._close_delimited = False
        self._raw = 0  # body octets as sent (after any chunk framing)
        self._decoded = bytearray()
        self._decoder: Optional[Any] = None  # a zlib decompressor for a coded body

    @property
    def body(self) -> bytes:
        assert self.done, "the body is not complete"
        return bytes(self._decoded)

    def feed(self, data: bytes) -> None:
        if data:
            self._received += len(data)
            if self._received > self.max_response:
                raise HttpWireError(f"response over {self.max_response} octets with its framing")
            self._h11.receive_data(data)
        if self.head is None:
            self._pump(stop_at_head=True)
            return
        self._start_body()
        self._pump(stop_at_head=False)

    def end(self, clean: bool = True) -> None:
        """The server closed the connection; *clean*: after a TLS close_notify."""
        if self.done:
            return
        if self.head is None:
            self._pump(stop_at_head=True)  # a head complete in what came last
        if self.head is not None:
            self._start_body()
        if self.head is not None and self._close_delimited and not clean:
            raise HttpWireError(
                "connection closed without TLS close_notify: the body, delimited only by the"
                " close, may be cut short (RFC 9112 §9.8)"
            )
        if self.head is None and self._received == 0:
            raise HttpWireError("connection closed without a response")
        self._h11.receive_data(b"")
        self._pump(stop_at_head=False)
        if not self.done:
            raise HttpWireError("connection closed in the middle of the response")

    def _pump(self, stop_at_head: bool) -> None:
        while not self.done:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpWireError(_reason(exc, self.head)) from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                self._interim += 1
                if self._interim > MAX_INTERIM:
                    raise HttpWireError(f"more than {MAX_INTERIM} interim (1xx) responses")
            elif isinstance(event, h11.Response):
                self.head = self._read_head(event)
                if stop_at_head:
                    return
            elif isinstance(event, h11.Data):
                self._content(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._finish()
            else:  # ConnectionClosed before a message is caught by h11 itself
                raise HttpWireError(f"unexpected {type(event).__name__}")

    def _read_head(self, response: Any) -> Head:
        if not bytes(response.http_version).startswith(b"1."):
            raise HttpWireError(f"HTTP/{response.http_version.decode('latin-1')} is not HTTP/1.x")
        if len(response.headers) > MAX_FIELDS:
            raise HttpWireError(f"more than {MAX_FIELDS} header fields")
        fields = tuple((bytes(n).decode("ascii"), bytes(v).decode("latin-1")) for n, v in response.headers)
        return Head(status=response.status_code, reason=bytes(response.reason).decode("latin-1"), fields=fields)

    def _start_body(self) -> None:
        """RFC 9112 §6.3 and RFC 9110 §8.4: how the body is framed and coded; once, after the
        caller has seen the head (a 404 is judged as one, whatever length it announces)."""
        if self._body_started:
            return
        self._body_started = True
        head = self.head
        assert head is not None
        codings = [c.lower() for c in head.values("content-encoding") if c.lower() != "identity"]
        if codings in (["gzip"], ["x-gzip"]):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif codings == ["deflate"]:
            self._decoder = zlib.decompressobj()
        elif codings:
            raise HttpWireError(f"unsupported Content-Encoding {', '.join(codings)!r}")
        length = head.get("content-length")
        bodiless = head.status in (204, 304)
        if (
            length is not None and not bodiless and not head.values("transfer-encoding") and int(length) > self.limit
        ):  # h11: a number
            raise BodyTooLarge(f"Content-Length {int(length)} over {self.limit} octets")
        self._close_delimited = not bodiless and length is None and not head.values("transfer-encoding")

    def _content(self, data: bytes) -> None:
        self._raw += len(data)
        if self._raw > self.limit:
            raise BodyTooLarge(f"body over {self.limit} octets")
        if self._decoder is None:
            self._decoded += data
            return
        room = self.limit - len(self._decoded)
        try:
            out = self._decoder.decompress(data, room + 1)
        except zlib.error as exc:
            raise HttpWireError(f"undecodable compressed body: {exc}") from None
        self._decoded += out
        if len(self._decoded) > self.limit or self._decoder.unconsumed_tail:
            raise BodyTooLarge(f"decoded body over {self.limit} octets")

    def _finish(self) -> None:
        if self._decoder is not None and self._raw and not self._decoder.eof:
            raise HttpWireError("compressed body ends before its stream does")
        self.done = True


def _reason(exc: Exception, head: Optional[Head]) -> str:
    """h11's words, with what a reader of the log needs: where in the response it was."""
    text = str(exc) or type(exc).__name__
    if head is None:
        return f"unreadable response head: {text}"
    if "complete message body" in text:
        return f"connection closed before the end of the body: {text}"
    return f"unreadable response body: {text}"
