"""``mtasts cache warm``: discover a list of domains, a bounded number at a time."""

from __future__ import annotations

import asyncio

from mtasts.commands.cache import read_domains
from mtasts.errors import FetchError, FetchFailure
from mtasts.servers.control import WARM_BATCH, ControlServer
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies


class CountingPolicies(FakePolicies):
    """Counts how many fetches run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0

    async def fetch(self, domain):
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)
            return await super().fetch(domain)
        finally:
            self.running -= 1


def test_read_domains_takes_the_first_word_once_and_skips_comments():
    lines = ["example.com 1234\n", "# top domains\n", "\n", "  other.example  # a note\n", "example.com\n"]
    assert read_domains(lines) == ["example.com", "other.example"]


def test_warm_discovers_each_domain_a_bounded_number_at_a_time(tmp_path):
    clock, dns, policies = Clock(), FakeDns(), CountingPolicies()
    keys = [f"d{i}.test" for i in range(40)]
    for k in keys:
        dns.publish(k, "id1")
        policies.serve(k, policy_body(k))
    dns.publish("broken.test", "id1")
    policies.serve("broken.test", FetchError(FetchFailure.CONNECT, "refused"))

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"refresh_concurrency": 4})) as host:
            control = ControlServer(host.resolver, str(tmp_path / "control.sock"))
            first = await control.execute(
                {"command": "warm", "domains": keys + ["broken.test", "plain.test", "[192.0.2.1]"]}
            )
            again = await control.execute({"command": "warm", "domains": keys[:5]})
            too_many = await control.execute({"command": "warm", "domains": ["x.test"] * (WARM_BATCH + 1)})
            return first, again, too_many, host.resolver.answer_nowait("postfix", keys[7])

    first, again, too_many, answer = asyncio.run(scenario())
    assert first == {"ok": True, "outcome": {"enforce": 40, "fetch-failure": 1, "no-record": 1, "invalid": 1}}
    assert again == {"ok": True, "outcome": {"cached": 5}} and policies.count(keys[0]) == 1
    assert policies.most == 4  # refresh_concurrency
    assert not too_many["ok"] and str(WARM_BATCH) in too_many["error"]
    assert answer == b"OK secure match=mx.d7.test servername=hostname"  # answered from the cache now
