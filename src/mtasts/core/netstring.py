"""Netstrings (http://cr.yp.to/proto/netstring.txt) as Postfix's socketmap uses them.

Incremental and I/O-free: feed bytes as they arrive, get complete payloads back.
"""

from __future__ import annotations

from typing import List

from mtasts.errors import NetstringError

# Postfix >= 3.12 refuses to send socketmap queries over 10000 bytes
# (socketmap_max_query_size); nothing longer can be a genuine request.
MAX_REQUEST_SIZE = 10000
# Postfix >= 3.10 rejects replies over 100000 bytes (socketmap_max_reply_size).
MAX_REPLY_SIZE = 100000
# A length prefix longer than this is garbage whatever the limit (leading zeros included).
_MAX_PREFIX_DIGITS = 10


def encode(payload: bytes) -> bytes:
    """Frame *payload* as ``<len>:<payload>,``."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Splits a byte stream into netstring payloads.

    ``feed`` returns every payload completed by the new bytes. Any framing error raises
    ``NetstringError``; after that the stream cannot be resynchronised and the caller
    must close the connection.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_size: int = MAX_REQUEST_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete netstring."""
        return len(self._buf)

    def feed(self, data: bytes) -> List[bytes]:
        buf = self._buf
        buf += data
        payloads: List[bytes] = []
        pos = 0
        size = len(buf)
        while pos < size:
            colon = buf.find(b":", pos, pos + _MAX_PREFIX_DIGITS + 1)
            if colon < 0:
                head = buf[pos:]
                if not head.isdigit() or len(head) > _MAX_PREFIX_DIGITS:
                    self._fail("length prefix is not a decimal number")
                break
            head = buf[pos:colon]
            if not head.isdigit():
                self._fail("length prefix is not a decimal number")
            length = int(head)
            if length > self._max:
                self._fail(f"netstring of {length} bytes exceeds the limit of {self._max}")
            end = colon + 1 + length
            if end >= size:
                break
            if buf[end] != 0x2C:  # ","
                self._fail("netstring does not end with ','")
            payloads.append(bytes(buf[colon + 1 : end]))
            pos = end + 1
        if pos:
            del buf[:pos]
        return payloads

    def _fail(self, why: str) -> None:
        self._buf.clear()
        raise NetstringError(why)
