"""Each TLS connection's read buffer (asyncio's SSLProtocol, CPython >= 3.11) is 32 KiB in the
daemon, not 256 KiB: measured on a real TLS connection over loopback."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import sys

import pytest
import trustme

from mtasts.daemon import TLS_READ_BUFFER, smaller_tls_buffers

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="before 3.11 asyncio sizes each read instead")


def test_a_tls_connection_gets_the_smaller_read_buffer():
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def buffer_size() -> int:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        size = len(writer.transport._ssl_protocol._ssl_buffer)  # the buffer each connection holds
        writer.close()
        server.close()
        await server.wait_closed()
        return size

    default = asyncio.sslproto.SSLProtocol.max_size
    try:
        assert asyncio.run(buffer_size()) == 256 * 1024  # CPython's default
        smaller_tls_buffers()
        assert asyncio.run(buffer_size()) == TLS_READ_BUFFER == 32 * 1024
    finally:
        asyncio.sslproto.SSLProtocol.max_size = default
