"""mtasts: MTA-STS (RFC 8461) for Postfix.

The package is split by what touches the outside world:

* ``mtasts.core``: the pure core. Protocols, parsers, matching, reply mapping and
  cache decisions. No I/O, no asyncio, no clock: ``now`` is always passed in.
* ``mtasts.net``: DNS (dnspython) and HTTPS (aiohttp) adapters.
* ``mtasts.store``: the cache tiers (memory, SQLite).
* ``mtasts.resolver``: discovery, single flight, background refresh.
* ``mtasts.servers``: the socketmap server and the local control socket.
* ``mtasts.daemon`` and ``mtasts.cli``: wiring and the command line.
"""

__version__ = "0.1.0"
