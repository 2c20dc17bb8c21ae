"""A socketmap client's side of the wire, byte by byte (netstrings, as Postfix sends them)."""

from __future__ import annotations

import socket


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def read_netstring(sock: socket.socket) -> bytes:
    head = b""
    while not head.endswith(b":"):
        c = sock.recv(1)
        if not c:
            raise ConnectionError("closed")
        head += c
    length = int(head[:-1])
    data = b""
    while len(data) < length + 1:
        chunk = sock.recv(length + 1 - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    assert data[-1:] == b","
    return data[:-1]
