"""Configuration errors name the file, the key and what was expected."""

import pytest

from mtasts.config import Config, Endpoint, load_config, parse_config
from mtasts.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "mtasts.toml"
    p.write_text(text)
    return str(p)


def test_embedded_defaults_match_the_documented_ones():
    c = Config()
    assert [str(x) for x in c.socketmap.listen] == ["inet:127.0.0.1:8461"]
    assert c.socketmap.socket_mode == 0o660 and c.resolver.timeout == 5.0 and c.fetch.timeout == 15.0
    assert c.cache.backend == "sqlite" and c.cache.path == "/var/lib/mtasts/cache.sqlite3"
    assert c.cache.memory_entries == 100000 and c.cache.txt_recheck == 60
    assert c.maps["postfix"].testing == "ignore" and c.maps["postfix"].sni is True


def test_full_example(tmp_path):
    c = load_config(
        write(
            tmp_path,
            """
[socketmap]
listen = ["inet:127.0.0.1:8461", "unix:/var/spool/postfix/mtasts/socketmap.sock", "inet:[::1]:8461"]
socket_mode = "0666"
[resolver]
nameservers = ["127.0.0.1", "127.0.0.1:5353", "[::1]:53"]
timeout = 2
[fetch]
timeout = 10.5
[cache]
backend = "memory"
path = "/tmp/x.sqlite3"
[maps.postfix]
testing = "enforce"
sni = false
[maps.reporting]
tlsrpt = true
testing_level = "encrypt"
[metrics]
listen = "[::1]:9461"
[dane]
mode = "off"
probe = "example.org."
""",
        )
    )
    assert c.socketmap.listen[1] == Endpoint("unix", path="/var/spool/postfix/mtasts/socketmap.sock")
    assert c.socketmap.listen[2] == Endpoint("inet", host="::1", port=8461)
    assert c.resolver.servers == (("127.0.0.1", 53), ("127.0.0.1", 5353), ("::1", 53))
    assert c.socketmap.socket_mode == 0o666 and c.resolver.timeout == 2.0 and c.cache.backend == "memory"
    assert c.maps["postfix"].testing == "enforce" and not c.maps["postfix"].sni
    assert not c.maps["postfix"].tlsrpt and c.maps["postfix"].testing_level == "may"
    assert c.maps["reporting"].tlsrpt and c.maps["reporting"].testing_level == "encrypt"
    assert c.metrics.listen.address == ("::1", 9461) and c.dane.mode == "off" and c.dane.probe == "example.org."


@pytest.mark.parametrize(
    "text,message",
    [
        ("[fetch]\ntimeout = -1\n", "[fetch] timeout: expected a positive number of seconds, got -1"),
        ('[fetch]\ntimeout = "5"\n', "[fetch] timeout: expected a positive number of seconds, got '5'"),
        ("[fetch]\ntimout = 5\n", "[fetch] timout: unknown key; known keys: timeout, ca_file"),
        ("[fech]\n", "unknown section [fech]"),
        ('[socketmap]\nlisten = ["tcp:1.2.3.4:5"]\n', "[socketmap] listen: expected a list of 'inet:HOST:PORT'"),
        ("[socketmap]\nlisten = []\n", "[socketmap] listen: expected at least one listener"),
        ('[socketmap]\nsocket_mode = "999"\n', "[socketmap] socket_mode: expected an octal mode"),
        ('[resolver]\nnameservers = ["dns.google"]\n', "[resolver] nameservers: expected a list of IP addresses"),
        ('[cache]\nbackend = "valkey"\n', '[cache] backend: expected "sqlite", "memory" or "redis", got \'valkey\''),
        ('[cache]\nurl = "http://r:6379"\n', "[cache] url: expected a redis://, rediss:// or unix:// URL"),
        ('[cache]\npath = "relative.db"\n', "[cache] path: expected an absolute path"),
        ("[cache]\nmemory_entries = 0\n", "[cache] memory_entries: expected a positive whole number, got 0"),
        ('[maps.postfix]\ntesting = "yes"\n', '[maps.postfix] testing: expected "ignore" or "enforce", got \'yes\''),
        ("[maps.postfix]\nsni = 1\n", "[maps.postfix] sni: expected true or false, got 1"),
        ('[metrics]\nlisten = "9461"\n', '[metrics] listen: expected "HOST:PORT"'),
        ('[metrics]\nlisten = "127.0.0.1:0"\n', '[metrics] listen: expected "HOST:PORT"'),
        ('[dane]\nmode = "on"\n', '[dane] mode: expected "prefer" or "off", got \'on\''),
        ('[dane]\nprobe = "not a name"\n', "[dane] probe: expected a DNS name known to be DNSSEC-signed"),
        ("[dane]\nmin_ttl = 600\nmax_ttl = 60\n", "[dane] min_ttl: expected at most max_ttl (60.0), got 600.0"),
        (
            '[maps.postfix]\ntlsrpt = "yes"\n',
            "[maps.postfix] tlsrpt: expected true or false (true needs Postfix >= 3.10)",
        ),
        (
            '[maps.postfix]\ntesting_level = "secure"\n',
            '[maps.postfix] testing_level: expected "may" or "encrypt", got \'secure\'',
        ),
        ("[maps.postfix]\nfoo = 1\n", "[maps.postfix] foo: unknown key"),
        ('[log]\nlevel = "loud"\n', "[log] level: expected"),
        ('[maps.postfix]\ndane = "no"\n', "[maps.postfix] dane: expected true or false (true needs Postfix >= 2.11"),
        ('[postfix]\nversion = "latest"\n', "[postfix] version: expected the version of the Postfix that queries"),
        ("[postfix]\nversion = 3.7\n", "[postfix] version: expected the version"),
        ("[postfix]\ndnssec = true\n", "[postfix] dnssec: needs [postfix] version"),
        ('[postfix]\nversion = "3.7.11"\ndnssec = "yes"\n', "[postfix] dnssec: expected true or false"),
        ("[postfix]\npostconf = 1\n", "[postfix] postconf: expected a path to Postfix's postconf"),
        ('[postfix]\nmail_version = "3.7"\n', "[postfix] mail_version: unknown key; known keys: postconf,"),
        ("[cache]\nnegative_ttl_min = 100\nnegative_ttl_max = 10\n", "[cache] negative_ttl_min: expected at most"),
        ("not toml = = =\n", "not valid TOML"),
        ('[cache]\nbackend = "redis"\nsentinels = ["10.0.0.1"]\n', "[cache] sentinel_master: expected the name"),
        ('[cache]\nbackend = "redis"\nsentinel_master = "m"\n', "[cache] sentinels: expected at least one"),
        (
            '[cache]\nsentinels = ["10.0.0.1"]\nsentinel_master = "m"\n',
            "[cache] sentinels: only used with backend = \"redis\", got backend = 'sqlite'",
        ),
        ('[cache]\nsentinels = "10.0.0.1:26379"\n', "[cache] sentinels: expected a list of 'HOST:PORT'"),
        ('[cache]\nsentinels = ["10.0.0.1:0"]\n', "[cache] sentinels: expected a list of 'HOST:PORT'"),
    ],
)
def test_errors_name_file_key_expectation(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(path + ": ")
    assert message in str(err.value)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.toml"))


def test_unknown_map_uses_default_profile():
    c = parse_config({"maps": {"default": {"testing": "enforce"}}}, "x")
    assert c.profile("other") is None and c.default_profile.testing == "enforce"


def test_cli_reports_config_error(tmp_path, capsys):
    from mtasts.cli import main

    path = write(tmp_path, "[fetch]\ntimeout = 0\n")
    assert main(["serve", "--config", path]) == 78  # EX_CONFIG
    assert f"{path}: [fetch] timeout: expected a positive number" in capsys.readouterr().err


def test_postfix_section_and_explicit_profile_settings(tmp_path):
    c = load_config(
        write(
            tmp_path,
            '[postfix]\nversion = "2.10.1"\ndnssec = false\n'
            '[maps.postfix]\nsni = false\n[maps.other]\ntesting = "enforce"\n',
        )
    )
    # None: the file did not say (tlsrpt: that Postfix then counts as without TLSRPT).
    assert (c.postfix.version, c.postfix.dnssec, c.postfix.tlsrpt) == ("2.10.1", False, None)
    assert c.postfix.given == frozenset({"version", "dnssec"})
    assert c.maps["postfix"].explicit == frozenset({"sni"})
    assert c.maps["other"].explicit == frozenset({"testing"})
    c = load_config(
        write(tmp_path, '[postfix]\npostconf = "/opt/postfix/sbin/postconf"\nconfig_directory = "/etc/postfix-out"\n')
    )
    assert (c.postfix.postconf, c.postfix.config_directory, c.postfix.version) == (
        "/opt/postfix/sbin/postconf",
        "/etc/postfix-out",
        None,
    )  # no version: postconf says


def test_a_wrong_policy_mode_names_the_choices_without_python_enum_text(tmp_path):
    path = write(tmp_path, '[publish.domains."example.com"]\nmode = "enforced"\nmx = ["mx.example.com"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f'{path}: [publish.domains."example.com"] mode: expected "enforce", "testing" or "none", got \'enforced\''
    )


def test_socketmap_and_publish_listeners_accept_both_forms(tmp_path):
    c = load_config(
        write(
            tmp_path,
            '[socketmap]\nlisten = ["127.0.0.1:8461", "inet:[::1]:8461"]\n'
            '[publish]\nlisten = ["inet:127.0.0.1:443", "[::1]:443"]\n',
        )
    )
    assert [str(x) for x in c.socketmap.listen] == ["inet:127.0.0.1:8461", "inet:[::1]:8461"]
    assert [e.address for e in c.publish.listen] == [("127.0.0.1", 443), ("::1", 443)]
    with pytest.raises(
        ConfigError, match=r"\[socketmap\] listen: expected a list of 'inet:HOST:PORT' \(or 'HOST:PORT'\)"
    ):
        load_config(write(tmp_path, '[socketmap]\nlisten = ["::1:8461"]\n'))


def test_sentinels_take_the_default_port_and_ipv6(tmp_path):
    path = write(
        tmp_path,
        '[cache]\nbackend = "redis"\nsentinel_master = "mymaster"\n'
        'sentinels = ["s1.example", "10.0.0.2:26380", "[2001:db8::1]:26381", "[2001:db8::2]"]\n',
    )
    cache = load_config(path).cache
    assert tuple(e.address for e in cache.sentinels) == (
        ("s1.example", 26379),
        ("10.0.0.2", 26380),
        ("2001:db8::1", 26381),
        ("2001:db8::2", 26379),
    )
    assert cache.sentinel_master == "mymaster"
