"""The bounds a hostile peer meets, in-process on a fake clock: rate-limited log lines,
the per-client unit of the publisher's handshake bound."""

import logging

from mtasts.logs import RateLimitedLog
from mtasts.servers.admission import client_of


def test_rate_limited_log_keeps_a_burst_then_sums_up(caplog):
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), burst=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(100):
            limited.warning("bad %d", i)
        assert [r.getMessage() for r in caplog.records] == ["bad 0", "bad 1", "bad 2"]
        assert limited.suppressed == 97
        now[0] = 59.9
        limited.warning("still quiet")
        assert len(caplog.records) == 3
        now[0] = 60.0
        limited.warning("next window")
    assert [r.getMessage() for r in caplog.records][3:] == [
        "98 more such lines in the last 60 s were not logged",
        "next window",
    ]
    assert limited.suppressed == 0


def test_the_handshake_bound_counts_ipv4_addresses_and_ipv6_slash_64s():
    assert client_of(("192.0.2.7", 443)) == "192.0.2.7"
    assert client_of(("2001:db8:1:2:aaaa::1", 443, 0, 0)) == "2001:db8:1:2::/64"
    assert client_of(("2001:db8:1:2:bbbb::9", 443, 0, 0)) == "2001:db8:1:2::/64"
    assert client_of(("2001:db8:1:3::1", 443, 0, 0)) != client_of(("2001:db8:1:2::1", 443, 0, 0))
    assert client_of(None) == "?"
