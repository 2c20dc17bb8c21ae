"""Prometheus metrics on [metrics] listen, scraped over HTTP from the daemon subprocess."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.support.launcher import free_port
from tests.support.policies import policy_text

pytestmark = pytest.mark.integration
prometheus = pytest.importorskip("prometheus_client")


def scrape(port):
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_lookups_fetches_and_cache(world, make_daemon):
    port = free_port()
    d = make_daemon(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    enforce, testing, broken = world.new_domain(), world.new_domain(), world.new_domain()
    world.publish(enforce)
    world.publish(testing, policy_text(mode="testing", domain=testing))
    world.publish(broken, status=404)
    for _ in range(3):
        d.query(enforce)
    d.query(testing)
    d.query(broken)
    d.query("." + enforce)
    d.query(enforce, "oldpostfix")
    s = scrape(port)
    assert value(s, "mtasts_lookups_total", map="postfix", answer="secure") == 3
    assert value(s, "mtasts_lookups_total", map="postfix", answer="notfound") == 3  # testing, 404, parent probe
    assert value(s, "mtasts_lookups_total", map="oldpostfix", answer="secure") == 1
    assert value(s, "mtasts_fetches_total", outcome="ok") == 2
    assert value(s, "mtasts_fetches_total", outcome="http-status") == 1
    assert value(s, "mtasts_fetch_duration_seconds_count") == 3
    assert value(s, "mtasts_fetch_duration_seconds_bucket", le="+Inf") == 3
    assert value(s, "mtasts_cache_hits_total", tier="memory") >= 3
    assert value(s, "mtasts_cached_policies", mode="enforce") == 1
    assert value(s, "mtasts_cached_policies", mode="testing") == 1
    assert value(s, "mtasts_open_connections") == 1  # the test's own socketmap connection
    assert value(s, "mtasts_internal_errors_total") == 0


def test_metrics_port_taken_is_a_clear_error(make_daemon):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = make_daemon(f'[metrics]\nlisten = "127.0.0.1:{port}"\n', start=False)
        with pytest.raises(RuntimeError, match=rf"\[metrics\] listen: cannot listen on 127.0.0.1:{port}"):
            d.start()
