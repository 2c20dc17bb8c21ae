"""mtasts: MTA-STS (RFC 8461) for Postfix.

The package is split by what touches the outside world:

* ``mtasts.core``: the pure core. Protocols, parsers, matching, reply mapping and
  cache decisions. No I/O, no asyncio, no clock: ``now`` is always passed in.
* ``mtasts.net``: the edges: DNS (our exchange; dnspython for resolv.conf and ``check``),
  HTTPS fetch (ssl sockets and ``core.httpwire``), DANE lookups, the
  STARTTLS probe; each takes plain values, and ``DnsLookups``/``PolicySource`` are the
  Protocols that tests replace with fakes.
* ``mtasts.store``: the cache tiers (memory, SQLite, and the fleet's shared Redis).
* ``mtasts.resolver``: answers, discovery (TXT -> record -> fetch -> policy or a hold),
  single flight, holds, refresh, overrides, DANE tracking: one room a job.
* ``mtasts.servers``: socketmap, control socket, policy publisher, metrics.
* ``mtasts.commands``: query, cache, check, publish, doctor (and the exit codes).
* ``mtasts.daemon``, ``mtasts.cli``, ``mtasts.config``, ``mtasts.errors``: wiring, the
  command line, the configuration's value objects, the error tree.
"""

__version__ = "0.1.0"
