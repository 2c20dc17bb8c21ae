"""HTTP/1.1 as the policy fetch speaks it (RFC 9112): one GET, one response read whole.

Pure: ``build_request`` makes the request's bytes; a ``ResponseReader`` is fed the
response's bytes as they arrive and gives the head, then the body, or raises
``HttpWireError``. It stops after the head so that the caller judges the status and the
media type (RFC 8461 §3.3) before reading any body, and it never holds more than the
size limit of body (``BodyTooLarge``) or ``MAX_HEAD`` of header section.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from mtasts.errors import ProtocolError

# A status line and header fields this long are no policy host's (aiohttp allowed ~8 KiB a line).
MAX_HEAD = 32 * 1024
MAX_FIELDS = 100
# A chunk-size line with extensions (RFC 9112 §7.1.1); nothing legitimate comes near this.
MAX_CHUNK_LINE = 1024

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?\Z", re.S)
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}\Z")


class HttpWireError(ProtocolError):
    """A response that is no readable HTTP/1.x (the fetch's "http" failure)."""


class BodyTooLarge(HttpWireError):
    """The body, as sent or decoded, is over the reader's limit."""


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
        return [item.strip() for field, value in self.fields if field == name
                for item in value.split(",") if item.strip()]


def build_request(host: str, path: str, fields: Tuple[Tuple[str, str], ...]) -> bytes:
    """A GET of *path* on *host*; the connection closes after the response (one fetch)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in fields]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


# Reader states.
_HEAD, _BODY_PENDING, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(9)


class ResponseReader:
    """Reads one response to a GET. ``feed`` returns as soon as the head is complete
    (``head`` is then set; the body waits for the next ``feed``, which may be empty);
    ``end`` says the connection closed. ``done``: the body is complete (``body``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head: Optional[Head] = None
        self._state = _HEAD
        self._buffer = bytearray()
        self._remaining = 0  # of a Content-Length body or of the current chunk
        self._raw = 0  # body octets as sent (after the chunk framing)
        self._decoded = bytearray()
        self._decoder: Optional[Any] = None  # a zlib decompressor for a coded body
        self._trailer_octets = 0
        self._scanned = 0  # head octets already searched for the blank line

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def body(self) -> bytes:
        assert self.done, "the body is not complete"
        return bytes(self._decoded)

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._state == _HEAD:
            self._read_head()
            return
        if self._state == _BODY_PENDING:
            self._state = self._framing()
        while self._step():
            pass

    def end(self) -> None:
        """The server closed the connection: complete a close-delimited body, or raise."""
        if self._state == _HEAD:
            if not self._buffer:
                raise HttpWireError("connection closed without a response")
            raise HttpWireError("connection closed in the middle of the response header")
        if self._state == _BODY_PENDING:
            self.feed(b"")  # frame (and read) what came with the head first
        if self._state == _UNTIL_CLOSE:
            self._finish()
            return
        if self._state == _DONE:
            return
        if self._state == _LENGTH:
            raise HttpWireError(f"connection closed {self._remaining} octets before the end of the body")
        raise HttpWireError("connection closed in the middle of the chunked body")

    # -- the head -------------------------------------------------------------------

    def _read_head(self) -> None:
        while True:
            # Only the new bytes (and the two before them) can complete the blank line: a
            # head trickled one octet at a time is not scanned again from its start each time.
            start = max(0, self._scanned - 2)
            end = self._buffer.find(b"\n\r\n", start)
            bare = self._buffer.find(b"\n\n", start)
            ends = [(i, 3) for i in (end,) if i >= 0] + [(i, 2) for i in (bare,) if i >= 0]
            if not ends:
                if len(self._buffer) > MAX_HEAD:
                    raise HttpWireError(f"response header section over {MAX_HEAD} octets")
                self._scanned = len(self._buffer)
                return
            self._scanned = 0
            at, skip = min(ends)
            if at + skip > MAX_HEAD:
                raise HttpWireError(f"response header section over {MAX_HEAD} octets")
            block = bytes(self._buffer[:at])
            del self._buffer[:at + skip]
            head = _parse_head(block)
            # 1xx (RFC 9110 §15.2): interim; the final response follows. 101 was never asked for.
            if 100 <= head.status < 200 and head.status != 101:
                continue
            self.head = head
            self._state = _BODY_PENDING
            return

    def _framing(self) -> int:
        """RFC 9112 §6.3: how the body of this response ends."""
        head = self.head
        assert head is not None
        codings = [c.lower() for c in head.values("content-encoding") if c.lower() != "identity"]
        if codings == ["gzip"] or codings == ["x-gzip"]:
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif codings == ["deflate"]:
            self._decoder = zlib.decompressobj()
        elif codings:
            raise HttpWireError(f"unsupported Content-Encoding {', '.join(codings)!r}")
        if head.status in (204, 304) or 100 <= head.status < 200:
            self._finish()
            return _DONE
        transfer = [c.lower() for c in head.values("transfer-encoding") if c.lower() != "identity"]
        if transfer:
            # A Transfer-Encoding overrides any Content-Length (§6.3 rule 3); we asked for
            # no other transfer coding than chunked (RFC 9112 §7.4, no TE field sent).
            if transfer != ["chunked"]:
                raise HttpWireError(f"unsupported Transfer-Encoding {', '.join(transfer)!r}")
            return _CHUNK_SIZE
        lengths = set(head.values("content-length"))
        if not lengths:
            return _UNTIL_CLOSE
        if len(lengths) > 1 or not all(c.isdigit() and c.isascii() for c in next(iter(lengths))):
            raise HttpWireError(f"invalid Content-Length {', '.join(sorted(lengths))!r}")  # §6.3 rule 5
        self._remaining = int(next(iter(lengths)))
        if self._remaining > self.limit:
            raise BodyTooLarge(f"Content-Length {self._remaining} over {self.limit} octets")
        if self._remaining == 0:
            self._finish()
            return _DONE
        return _LENGTH

    # -- the body -------------------------------------------------------------------

    def _step(self) -> bool:
        """One step of the body; False when more input (or the end) is needed."""
        state, buffer = self._state, self._buffer
        if state in (_LENGTH, _UNTIL_CLOSE, _CHUNK_DATA):
            if not buffer:
                return False
            take = len(buffer) if state == _UNTIL_CLOSE else min(len(buffer), self._remaining)
            self._content(bytes(buffer[:take]))
            del buffer[:take]
            if state == _UNTIL_CLOSE:
                return False
            self._remaining -= take
            if self._remaining:
                return False
            if state == _LENGTH:
                self._finish()
                self._state = _DONE
                return False
            self._state = _CHUNK_END
            return True
        if state == _DONE:
            return False
        line = self._line()
        if line is None:
            return False
        if state == _CHUNK_END:
            if line:
                raise HttpWireError("chunk data longer than its size")
            self._state = _CHUNK_SIZE
        elif state == _CHUNK_SIZE:
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.match(size_text):
                raise HttpWireError(f"invalid chunk size {bytes(size_text[:40])!r}")
            size = int(size_text, 16)
            if self._raw + size > self.limit:
                raise BodyTooLarge(f"body over {self.limit} octets")
            self._remaining = size
            self._state = _CHUNK_DATA if size else _TRAILER
        elif state == _TRAILER:  # trailer fields are read and ignored (§7.1.2)
            if not line:
                self._finish()
                self._state = _DONE
                return False
        return True

    def _line(self) -> Optional[bytes]:
        """The next line of chunk framing without its end, or None until it is complete."""
        at = self._buffer.find(b"\n")
        if at < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise HttpWireError(f"chunk framing line over {MAX_CHUNK_LINE} octets")
            return None
        if at > MAX_CHUNK_LINE:
            raise HttpWireError(f"chunk framing line over {MAX_CHUNK_LINE} octets")
        line = bytes(self._buffer[:at])
        del self._buffer[:at + 1]
        if self._state == _TRAILER:
            self._trailer_octets += at + 1
            if self._trailer_octets > MAX_HEAD:
                raise HttpWireError(f"chunk trailers over {MAX_HEAD} octets")
        return line[:-1] if line.endswith(b"\r") else line

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
        if self._decoder is not None:
            if not self._decoder.eof:
                raise HttpWireError("compressed body ends before its stream does")
        self._state = _DONE


def _parse_head(block: bytes) -> Head:
    lines = block.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    status_line = lines[0]
    match = _STATUS_LINE.match(status_line)
    if match is None:
        raise HttpWireError(f"no HTTP status line: {status_line[:60]!r}")
    if match.group(1) != b"1":
        raise HttpWireError(f"HTTP/{match.group(1).decode()}.{match.group(2).decode()} is not HTTP/1.x")
    fields: List[Tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 §5.2): a user agent replaces it with a space.
            if not fields:
                raise HttpWireError("header section starts with a continuation line")
            name, value = fields[-1]
            more = line.strip(b" \t").decode("latin-1")
            fields[-1] = (name, f"{value} {more}".strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            # Also a space before the colon, which RFC 9112 §5.1 says to reject.
            raise HttpWireError(f"invalid header field {line[:60]!r}")
        fields.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
        if len(fields) > MAX_FIELDS:
            raise HttpWireError(f"more than {MAX_FIELDS} header fields")
    reason = (match.group(4) or b"").decode("latin-1")
    return Head(status=int(match.group(3)), reason=reason, fields=tuple(fields))
