"""Exemptions (``mtasts override``) on a fake clock: applied before any policy, expiring on
their own, below DANE unless they say otherwise, logged once per window, kept in the store."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mtasts.config import load_config
from mtasts.core.override import Override, parse_until
from mtasts.errors import ConfigError
from mtasts.servers.control import ControlServer
from mtasts.store.sqlite import SqliteStore
from mtasts.store.tiered import PolicyCache
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import T0, Clock, FakeDns, FakePolicies

D = "broken.test"
SECURE = b"OK secure match=mx.broken.test servername=hostname"
MX = "mx.broken.test"
TLSA = "3 1 1 " + "ab" * 32


def world(signed=False):
    dns, policies = FakeDns(), FakePolicies()
    dns.publish(D, "id1")
    policies.serve(D, policy_body(D, max_age=86400 * 30))
    if signed:
        dns.signed(D, "MX", f"10 {MX}.")
        dns.signed(MX, "A", "192.0.2.25")
        dns.signed(MX, "AAAA")
        dns.signed(f"_25._tcp.{MX}", "TLSA", TLSA)
    return Clock(), dns, policies


def control(host, tmp_path):
    return ControlServer(host.resolver, str(tmp_path / "control.sock"))


def test_parse_until_reads_durations_and_utc_dates():
    assert parse_until("48h", T0) == T0 + 48 * 3600
    assert parse_until("30m", T0) == T0 + 1800 and parse_until("2w", T0) == T0 + 14 * 86400
    assert parse_until("2030-01-02", T0) == 1893542400.0
    assert parse_until("2030-01-02T12:30", T0) == 1893542400.0 + 12.5 * 3600
    for bad in ("0h", "tomorrow", "2020-01-01", "2030-02-30", "12"):
        with pytest.raises(ValueError):
            parse_until(bad, T0)


def test_an_override_replaces_the_policy_answer_until_it_expires(tmp_path, caplog):
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            assert await host.answer(D) == SECURE
            added = await control(host, tmp_path).execute(
                {
                    "command": "override_add",
                    "domain": D,
                    "level": "may",
                    "until": clock() + 3600,
                    "reason": "ticket 42: their firewall strips STARTTLS",
                }
            )
            with caplog.at_level(logging.WARNING, "mtasts.resolver"):
                during = [host.resolver.answer_nowait("postfix", D) for _ in range(50)]
                clock.advance(601)
                during.append(host.resolver.answer_nowait("postfix", D))  # a new log window
                shown = await control(host, tmp_path).execute({"command": "show", "domain": D})
                clock.advance(3000)  # past the end
                after = host.resolver.answer_nowait("postfix", D)
            listed = await control(host, tmp_path).execute({"command": "override_list"})
            return added, during, shown, after, listed, host.resolver.counters.override_answers

    added, during, shown, after, listed, applied = asyncio.run(scenario())
    assert added["ok"] and set(during) == {b"OK may"} and applied == 51
    assert shown["override"]["level"] == "may" and shown["override"]["reason"].startswith("ticket 42")
    assert after == SECURE and listed["overrides"] == []  # expired on its own
    in_force = [r for r in caplog.records if "override in force" in r.getMessage()]
    assert len(in_force) == 2  # once per 10-minute window, not once per lookup
    assert "answering 'may' instead of 'OK secure match=mx.broken.test" in in_force[0].getMessage()
    assert any("override (may, ticket 42" in r.getMessage() and "expired" in r.getMessage() for r in caplog.records)


def test_an_override_does_not_lower_dane_unless_it_says_so(tmp_path):
    clock, dns, policies = world(signed=True)

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer"})) as host:
            assert await host.answer(D) == b"OK dane-only"
            ctl = control(host, tmp_path)
            add = {
                "command": "override_add",
                "domain": D,
                "level": "may",
                "until": clock() + 60,
                "reason": "expired certificate",
            }
            await ctl.execute(add)
            below = host.resolver.answer_nowait("postfix", D)
            await ctl.execute(dict(add, dane=True))
            over = host.resolver.answer_nowait("postfix", D)
            return below, over

    assert asyncio.run(scenario()) == (b"OK dane-only", b"OK may")


def test_an_override_for_a_domain_never_looked_up_still_checks_dane_first(tmp_path):
    # No MTA-STS here at all: without the override Postfix's own DANE would apply, so the
    # override's "may" must not replace it silently.
    clock, dns, policies = world(signed=True)
    dns.remove("_mta-sts." + D)

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer"})) as host:
            await control(host, tmp_path).execute(
                {"command": "override_add", "domain": D, "level": "encrypt", "until": clock() + 60, "reason": "test"}
            )
            return await host.answer(D)

    assert asyncio.run(scenario()) == b"OK dane-only"


def test_bad_override_requests_are_refused_with_the_reason(tmp_path):
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            ctl = control(host, tmp_path)
            return [
                await ctl.execute(r)
                for r in (
                    {"command": "override_add", "domain": D, "level": "dane", "until": clock() + 60, "reason": "x"},
                    {"command": "override_add", "domain": D, "level": "may", "until": clock() - 1, "reason": "x"},
                    {"command": "override_add", "domain": D, "level": "may", "reason": "x"},
                    {"command": "override_add", "domain": D, "level": "may", "until": clock() + 60, "reason": " "},
                    {"command": "override_remove", "domain": D},
                )
            ]

    refused = asyncio.run(scenario())
    assert [r["ok"] for r in refused[:4]] == [False] * 4
    assert "level" in refused[0]["error"] and "end in the future" in refused[1]["error"]
    assert "end in the future" in refused[2]["error"] and "reason" in refused[3]["error"]
    assert refused[4] == {"ok": True, "removed": 0}


def test_stored_overrides_survive_a_restart_and_file_overrides_cannot_be_removed_by_command(tmp_path):
    path = tmp_path / "mtasts.toml"
    path.write_text(
        '[overrides."partner.test"]\nlevel = "encrypt"\nreason = "contract: no MTA-STS"\nuntil = "2099-01-01"\n'
    )
    config = load_config(str(path))
    assert config.overrides["partner.test"].until == 4070908800.0
    clock, dns, policies = world()
    store_path = str(tmp_path / "cache.sqlite3")

    from mtasts.resolver import PolicyResolver

    async def first():
        cache = PolicyCache(100, SqliteStore(store_path))
        ctl = ControlServer(
            PolicyResolver(Host(clock, dns, policies).config, cache, dns, policies, clock=clock),
            str(tmp_path / "c.sock"),
        )
        await ctl.execute(
            {"command": "override_add", "domain": D, "level": "none", "until": clock() + 3600, "reason": "r"}
        )
        cache.close()

    async def second():
        cache = PolicyCache(100, SqliteStore(store_path))
        resolver = PolicyResolver(config, cache, dns, policies, clock=clock)
        ctl = ControlServer(resolver, str(tmp_path / "c.sock"))
        listed = await ctl.execute({"command": "override_list"})
        refused = await ctl.execute({"command": "override_remove", "domain": "partner.test"})
        cache.close()
        return listed, refused

    asyncio.run(first())
    listed, refused = asyncio.run(second())
    assert [(o["domain"], o["level"], o["source"]) for o in listed["overrides"]] == [
        (D, "none", "cli"),
        ("partner.test", "encrypt", str(path)),
    ]
    assert not refused["ok"] and str(path) in refused["error"]


def test_the_config_file_names_what_is_wrong_with_an_override(tmp_path):
    path = tmp_path / "mtasts.toml"
    for text, expected in (
        ('[overrides."x.test"]\nlevel = "dane"\nreason = "r"\n', "level: expected 'may' or 'encrypt' or 'none'"),
        ('[overrides."x.test"]\nlevel = "may"\n', "reason: expected a text"),
        ('[overrides."x.test"]\nreason = "r"\nuntil = "48h"\n', "until: expected a UTC date"),
        ('[overrides."x.test"]\nreason = "r"\nfoo = 1\n', "foo: unknown key"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(str(path))
        assert str(path) in str(err.value) and '[overrides."x.test"]' in str(err.value) and expected in str(err.value)


def test_no_override_costs_the_cached_path_nothing_but_a_test():
    clock, dns, policies = world()
    host = Host(clock, dns, policies)
    assert host.resolver.overrides == {}  # the hot path tests this dict's truth only
    host.resolver.overrides[D] = Override(D, "may", clock() + 10, "r")
    assert host.resolver.override_in_force(D, clock()).reply == b"OK may"
    clock.advance(10)
    assert host.resolver.override_in_force(D, clock()) is None


def test_an_override_set_on_one_host_holds_for_the_whole_fleet(tmp_path):
    from tests.support.fakes import SharedHub

    clock, dns, policies = world()
    hub = SharedHub()

    async def scenario():
        a = Host(clock, dns, policies, shared=hub.host("a"))
        b = Host(clock, dns, policies, shared=hub.host("b"))
        async with running(a), running(b):
            assert await b.answer(D) == SECURE
            await control(a, tmp_path).execute(
                {
                    "command": "override_add",
                    "domain": D,
                    "level": "encrypt",
                    "until": clock() + 3600,
                    "reason": "fleet-wide",
                }
            )
            await a.settle()
            on_b = b.resolver.answer_nowait("postfix", D)
            late = Host(clock, dns, policies, shared=hub.host("late"))  # started after the override
            async with running(late):
                on_late = await late.answer(D)
            await control(a, tmp_path).execute({"command": "override_remove", "domain": D})
            await a.settle()
            after = b.resolver.answer_nowait("postfix", D)
        return on_b, on_late, after

    assert asyncio.run(scenario()) == (b"OK encrypt", b"OK encrypt", SECURE)
