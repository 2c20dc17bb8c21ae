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


class PostfixClient:
    """A socketmap client that fails where Postfix's would (dict_sockmap.c): one persistent
    connection; a lookup whose connection ends before the reply (end of file, reset) is
    retried once on a new connection; a refused connect or a second failure is an error,
    which in Postfix defers the mail."""

    def __init__(self, connect) -> None:
        self._connect = connect  # () -> a connected socket
        self._sock = None
        self.retries = 0

    def lookup(self, request: bytes) -> bytes:
        for attempt in (1, 2):
            if self._sock is None:
                self._sock = self._connect()  # OSError (refused): the lookup fails
                self._sock.settimeout(20)
            try:
                self._sock.sendall(netstring(request))
                return read_netstring(self._sock)
            except (ConnectionError, BrokenPipeError) as exc:
                self._sock.close()
                self._sock = None
                if attempt == 2:
                    raise ConnectionError(f"lookup failed twice: {exc}") from exc
                self.retries += 1
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
