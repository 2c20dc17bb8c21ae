"""Postfix socketmap requests and replies (socketmap_table(5)).

A request payload is ``NAME SP KEY``; a reply payload starts with a status word.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mtasts.errors import RequestError


class Status(enum.Enum):
    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"  # Postfix defers the mail
    TIMEOUT = "TIMEOUT"  # Postfix defers the mail
    PERM = "PERM"  # Postfix treats the table as misconfigured


@dataclass(frozen=True)
class SocketmapRequest:
    map_name: str
    key: str


def parse_request(payload: bytes) -> SocketmapRequest:
    """Split a request payload into map name and key.

    Undecodable bytes are kept as U+FFFD: such a key is no domain and gets an answer
    (``NOTFOUND``) rather than a closed connection.
    """
    space = payload.find(b" ")
    if space <= 0:
        raise RequestError("request is not 'NAME KEY'")
    name = payload[:space].decode("utf-8", "replace")
    key = payload[space + 1 :].decode("utf-8", "replace")
    if not key:
        raise RequestError("request has an empty key")
    return SocketmapRequest(name, key)


def format_reply(status: Status, data: str = "") -> bytes:
    """Build a reply payload.

    ``NOTFOUND`` carries a trailing space like Postfix's own servers. A bare ``OK`` is
    refused: Postfix 3.10 reads it as not found.
    """
    if status is Status.OK and not data:
        raise ValueError("an OK reply needs data")
    # No CR/LF or NUL may reach Postfix inside a reply.
    if any(c in data for c in "\r\n\0"):
        raise ValueError("reply data contains a line break or NUL")
    return f"{status.value} {data}".encode()


NOTFOUND = format_reply(Status.NOTFOUND)
