"""``[log] format = "json"``: one object per line with stable keys, from the resolver's own lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from mtasts.daemon.journal import JsonFormatter
from mtasts.errors import FetchError, FetchFailure
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies


def test_the_resolvers_lines_are_json_objects_with_domain_outcome_id_and_duration():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    dns.publish("good.test", "abc123")
    policies.serve("good.test", policy_body("good.test"))
    dns.publish("bad.test", "x1")
    policies.serve("bad.test", FetchError(FetchFailure.CERTIFICATE, "expired"))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("mtasts")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel: it clears the loggers' cached levels
    try:

        async def scenario():
            async with running(Host(clock, dns, policies)) as host:
                await host.answer("good.test")
                await host.answer("bad.test")

        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    learned = [x for x in lines if x.get("outcome") == "learned"]
    assert len(learned) == 1 and learned[0]["domain"] == "good.test" and learned[0]["policy_id"] == "abc123"
    assert learned[0]["mode"] == "enforce" and isinstance(learned[0]["duration_ms"], float)
    assert learned[0]["time"].endswith("Z") and learned[0]["level"] == "INFO"
    failed = [x for x in lines if x.get("outcome") == "fetch-failure"]
    assert len(failed) == 1 and failed[0]["domain"] == "bad.test" and "expired" in failed[0]["message"]


def test_a_line_without_a_domain_has_no_domain_key_and_exceptions_are_kept():
    formatter = JsonFormatter()
    plain = logging.LogRecord("mtasts", logging.WARNING, __file__, 1, "listening on %s", ("x",), None)
    assert "domain" not in json.loads(formatter.format(plain))
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("mtasts", logging.ERROR, __file__, 1, "%s: oops", ("d.test",), sys.exc_info())
    data = json.loads(formatter.format(failed))
    assert data["domain"] == "d.test" and "ValueError: boom" in data["exception"]
