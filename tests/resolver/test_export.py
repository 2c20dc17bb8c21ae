"""``mtasts cache export --postfix``: the cached answers as a static smtp_tls_policy_maps
table, read back by Postfix's own postmap where it is installed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from mtasts.commands.cache import _print_export
from mtasts.core import freshness
from mtasts.core.policy import parse_policy
from mtasts.core.policyanswer import read_answer
from mtasts.servers.control import ControlServer
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies

TLSA = "3 1 1 " + "ab" * 32


def world():
    dns, policies = FakeDns(), FakePolicies()
    for domain, mode in (("enforce.test", "enforce"), ("testing.test", "testing"), ("dane.test", "enforce")):
        dns.publish(domain, "id1")
        policies.serve(domain, policy_body(domain, mode=mode, max_age=86400 * 7))
    mx = "mx.dane.test"
    dns.signed("dane.test", "MX", f"10 {mx}.")
    dns.signed(mx, "A", "192.0.2.25")
    dns.signed(mx, "AAAA")
    dns.signed(f"_25._tcp.{mx}", "TLSA", TLSA)
    return Clock(), dns, policies


def export(tmp_path):
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer"})) as host:
            for domain in ("enforce.test", "testing.test", "dane.test"):
                await host.answer(domain)
            # A policy whose DANE state was never checked (as after a SIGHUP that turned DANE on).
            body = policy_body("raw.test")
            host.cache.put(freshness.learned(None, "raw.test", parse_policy(body), "id1", clock(), 0.0))
            return await ControlServer(host.resolver, str(tmp_path / "control.sock")).execute(
                {"command": "export", "map": "postfix"}
            )

    return asyncio.run(scenario())


def test_export_lists_each_answer_postfix_would_get_and_leaves_out_unchecked_dane(tmp_path):
    response = export(tmp_path)
    assert response["ok"] and sorted(response["lines"]) == [
        "dane.test dane-only",
        "enforce.test secure match=mx.enforce.test servername=hostname",
    ]  # testing: NOTFOUND, no line; raw.test: its DANE state unknown
    assert response["dane_unchecked"] == ["raw.test"]
    for line in response["lines"]:
        read_answer(line.split(" ", 1)[1])  # Postfix's grammar (raises on anything it refuses)


@pytest.mark.skipif(not shutil.which("postmap"), reason="Postfix is not installed (.ci/run installs it)")
def test_postmap_reads_the_exported_table(tmp_path, capsys):
    response = export(tmp_path)
    response["via"] = "test"
    _print_export(response)
    table = tmp_path / "tls_policy"
    table.write_text(capsys.readouterr().out)
    assert table.read_text().startswith("# smtp_tls_policy_maps from the mtasts cache")

    (tmp_path / "main.cf").write_text("")  # postmap reads a main.cf; this machine may have none

    def query(key):
        return subprocess.run(
            ["postmap", "-c", str(tmp_path), "-q", key, f"texthash:{table}"], capture_output=True, text=True
        )

    assert query("enforce.test").stdout.strip() == "secure match=mx.enforce.test servername=hostname"
    assert query("dane.test").stdout.strip() == "dane-only"
    for absent in ("testing.test", "raw.test"):
        assert query(absent).returncode == 1  # not in the table: Postfix's own default applies
