"""The mtasts command line against a running daemon and against the store alone."""

from __future__ import annotations

import json
import pathlib
import signal

import pytest

from tests.support.launcher import wait_for
from tests.support.policies import policy_text

pytestmark = pytest.mark.integration


def test_cache_list_show_stats_via_daemon(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_id="abc123")
    daemon.query(d)
    listing = daemon.cli("cache", "list")
    assert listing.returncode == 0
    assert d in listing.stdout and "from the daemon" in listing.stdout
    shown = json.loads(daemon.cli("cache", "show", d, "--json").stdout)
    entry = shown["entry"]
    assert shown["via"] == "daemon"
    assert entry["policy_id"] == "abc123" and entry["mode"] == "enforce" and entry["valid"] is True
    assert entry["mx"] == [f"mx1.{d}", f"*.backup.{d}"]
    stats = json.loads(daemon.cli("cache", "stats", "--json").stdout)["stats"]
    assert stats["policies"] >= 1 and stats["fetch_ok"] >= 1


def test_cache_export_writes_the_daemons_answers_for_postfix_and_from_the_store(world, daemon):
    d = world.new_domain()
    world.publish(d)
    answer = daemon.query(d)
    assert answer.startswith("OK secure")
    line = f"{d} {answer[3:]}"
    live = daemon.cli("cache", "export", "--postfix")
    assert live.returncode == 0 and line in live.stdout.splitlines()
    assert live.stdout.startswith("# smtp_tls_policy_maps from the mtasts cache (daemon)")
    assert daemon.cli("cache", "export").returncode == 64  # the format is named (EX_USAGE)
    daemon.stop()
    offline = daemon.cli("cache", "export", "--postfix")  # no daemon: the store's answers
    assert offline.returncode == 0 and line in offline.stdout.splitlines()


def test_cache_warm_from_stdin_then_answers_from_the_cache(world, daemon):
    import subprocess
    import sys

    names = [world.new_domain("warm") for _ in range(5)]
    for name in names:
        world.publish(name)
    listing = "\n".join(f"{n} 42" for n in names) + "\n# a comment\n" + names[0] + "\n"
    out = subprocess.run(
        [sys.executable, "-m", "mtasts", "cache", "warm", "-", "--config", str(daemon.config)],
        input=listing,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "warmed 5 domains via the daemon: 5 enforce", out.stderr
    assert sum(world.fetches(n) for n in names) == 5
    assert all(daemon.query(n).startswith("OK secure") for n in names)
    assert sum(world.fetches(n) for n in names) == 5  # the lookups needed no fetch


def test_override_add_list_show_remove_through_the_running_daemon(world, daemon):
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d).startswith("OK secure")
    added = daemon.cli("override", "add", d, "--until", "2h", "--reason", "ticket 7: STARTTLS stripped")
    assert added.returncode == 0 and added.stdout.startswith(f"added: {d}: may until ")
    assert daemon.query(d) == "OK may"  # at once, on the same connection
    listed = json.loads(daemon.cli("override", "list", "--json").stdout)
    assert [o["domain"] for o in listed["overrides"]] == [d] and listed["via"] == "daemon"
    assert "override:       " + d in daemon.cli("cache", "show", d).stdout
    assert "override in force" in daemon.log() and "ticket 7" in daemon.log()
    live = json.loads(daemon.cli("query", d, "--json").stdout)  # query shows what the daemon applies
    assert live["answer"] == "OK may" and live["override"]["reason"] == "ticket 7: STARTTLS stripped"
    assert daemon.cli("override", "add", d, "--until", "yesterday", "--reason", "x").returncode == 64
    assert daemon.cli("override", "remove", d).returncode == 0
    assert daemon.query(d).startswith("OK secure")
    assert daemon.cli("override", "remove", d).returncode == 1  # nothing left to remove


def test_lookup_export_and_query_give_the_same_answer_under_an_override(world, daemon):
    # Issue 25: `cache export` skipped the override, so the static table of a host that uses
    # it as its fallback enforced what the operator had just exempted.
    d = world.new_domain()
    world.publish(d)
    assert daemon.query(d).startswith("OK secure match=")
    assert daemon.cli("override", "add", d, "--level", "may", "--until", "2h", "--reason", "ticket 9").returncode == 0
    looked_up = daemon.query(d)
    exported = [
        line for line in daemon.cli("cache", "export", "--postfix").stdout.splitlines() if line.startswith(d + " ")
    ]
    queried = json.loads(daemon.cli("query", d, "--json").stdout)["answer"]
    assert looked_up == "OK may" and queried == "OK may"
    assert exported == [f"{d} may"]


def test_cache_show_names_the_override_of_a_domain_not_yet_looked_up(world, daemon):
    d = world.new_domain()
    assert daemon.cli("override", "add", d, "--until", "2h", "--reason", "ticket 8").returncode == 0
    shown = daemon.cli("cache", "show", d)
    assert shown.returncode == 1 and shown.stdout.startswith("not cached\noverride:       " + d)


def test_purge_takes_effect_in_running_daemon(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    world.host.sites[f"mta-sts.{d}"].status = 404
    assert daemon.cli("cache", "purge", d).returncode == 0
    assert daemon.query(d) == "NOTFOUND "  # rediscovered, and the fetch now fails
    assert daemon.cli("cache", "show", d).stdout.count("fetch-failure") == 1


def test_purge_all(world, daemon):
    for _ in range(3):
        d = world.new_domain()
        world.publish(d)
        daemon.query(d)
    out = json.loads(daemon.cli("cache", "purge", "--all", "--json").stdout)
    assert out["purged"] >= 3
    assert json.loads(daemon.cli("cache", "list", "--json").stdout)["entries"] == []


def test_refresh_picks_up_new_policy_now(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    world.publish(d, policy_text(mx=("only.{d}",), domain=d))  # body changed, id not
    out = daemon.cli("cache", "refresh", d, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == f"OK secure match=only.{d} servername=hostname"
    assert daemon.query(d) == f"OK secure match=only.{d} servername=hostname"


def test_cache_commands_work_on_the_store_when_stopped(world, daemon):
    d = world.new_domain()
    world.publish(d)
    daemon.query(d)
    daemon.stop(signal.SIGTERM)
    out = daemon.cli("cache", "show", d, "--json")
    shown = json.loads(out.stdout)
    assert shown["via"] == f"store {daemon.cache}" and shown["entry"]["valid"] is True
    control = pathlib.Path(daemon.cache).parent / "control.sock"
    assert out.stderr == f"mtasts: no daemon answered at {control}: reading the store {daemon.cache}\n"
    listed = daemon.cli("cache", "list")
    assert listed.stdout.splitlines()[-1] == f"(1 entry, from the store {daemon.cache})"
    assert daemon.cli("cache", "purge", d).returncode == 0
    gone = daemon.cli("cache", "show", d, "--json")
    assert json.loads(gone.stdout)["entry"] is None and gone.returncode == 1  # as in text form
    assert daemon.cli("cache", "show", d).returncode == 1
    refreshed = json.loads(daemon.cli("cache", "refresh", d, "--json").stdout)
    assert refreshed["via"] == f"store {daemon.cache}" and refreshed["entry"]["valid"] is True


def test_cache_commands_with_no_daemon_and_no_store_say_where_they_looked(make_daemon, tmp_path):
    d = make_daemon(start=False)
    out = d.cli("cache", "list")
    control = pathlib.Path(d.cache).parent / "control.sock"
    assert out.returncode == 69 and out.stdout == ""  # EX_UNAVAILABLE: no daemon, no store
    assert out.stderr == (
        f"mtasts: no daemon answered at {control}, and there is no cache at {d.cache}"
        " (is the daemon running, as another user, or with another --config?)\n"
    )
    assert not pathlib.Path(d.cache).exists()  # nothing created


def test_query_of_a_key_that_is_no_domain_is_a_usage_error(daemon):
    out = daemon.cli("query", ".example.com")
    assert out.returncode == 64 and out.stdout == ""  # EX_USAGE
    assert out.stderr == (
        "mtasts: '.example.com': no MTA-STS lookup for this key (a parent-domain probe, an IP"
        " literal, or not a domain); Postfix gets NOTFOUND for it\n"
    )


def test_query_command(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_id="q1")
    out = daemon.cli("query", d, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["txt"]["id"] == "q1"
    assert report["fetch"]["mode"] == "enforce"
    assert report["answer"].startswith("OK secure match=")
    human = daemon.cli("query", d)
    assert "answer:  OK secure" in human.stdout
    bad = daemon.cli("query", world.new_domain())
    assert bad.returncode == 1 and "nxdomain" in bad.stdout


def test_query_shows_fetch_failure(world, daemon):
    d = world.new_domain()
    world.publish(d, cert="untrusted")
    report = json.loads(daemon.cli("query", d, "--json").stdout)
    assert report["fetch"]["result_type"] == "sts-webpki-invalid"
    assert report["answer"] == "NOTFOUND "


def test_control_socket_is_private(daemon):
    import os
    import stat

    path = os.path.join(os.path.dirname(daemon.cache), "control.sock")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sighup_reloads_profiles_and_refuses_bad_config(world, daemon):
    d = world.new_domain()
    world.publish(d, policy_text(mode="testing", domain=d))
    assert daemon.query(d) == "NOTFOUND "
    good = daemon.config.read_text()
    daemon.config.write_text(good.replace('[maps.postfix]\ntesting = "ignore"', '[maps.postfix]\ntesting = "enforce"'))
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in daemon.log())
    assert daemon.query(d).startswith("OK secure")
    daemon.config.write_text(good + "\n[log]\nbogus = 1\n")
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in daemon.log())
    assert "[log] bogus: unknown key" in daemon.log()
    assert daemon.query(d).startswith("OK secure")  # the previous configuration stays
    assert daemon.proc.poll() is None


def test_sighup_applies_timeouts_and_keeps_connections_and_cache(world, daemon):
    cached = world.new_domain()
    world.publish(cached)
    sock = daemon.connect()
    assert daemon.query(cached).startswith("OK secure")
    daemon.config.write_text(daemon.config.read_text().replace("[fetch]\ntimeout = 3.0", "[fetch]\ntimeout = 0.5"))
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in daemon.log())
    slow = world.new_domain()
    world.publish(slow, hang=True)
    assert daemon.query(slow) == "NOTFOUND "
    assert "no complete answer within 0.5 s" in daemon.log()  # the new fetch timeout applies
    from tests.support.socketmap import netstring, read_netstring

    sock.sendall(netstring(f"postfix {cached}".encode()))  # a connection opened before the reload
    assert read_netstring(sock).decode().startswith("OK secure")
    assert json.loads(daemon.cli("cache", "stats", "--json").stdout)["stats"]["discoveries"] == 2


def test_purge_needs_domain_or_all(daemon):
    out = daemon.cli("cache", "purge")
    assert out.returncode == 64 and "DOMAIN or --all" in out.stderr
