"""Distinct exit codes for usage errors, configuration errors, "daemon not running" and
runtime failures (mtasts.commands lists them), through the real command line in-process."""

from __future__ import annotations

import pytest

from mtasts.cli import main
from mtasts.exits import EXIT_CONFIG, EXIT_NOPERM, EXIT_RUNTIME, EXIT_UNAVAILABLE, EXIT_USAGE


def config(tmp_path, text=""):
    path = tmp_path / "mtasts.toml"
    path.write_text(f'[cache]\npath = "{tmp_path}/state/cache.sqlite3"\n' + text)
    return str(path)


def test_the_codes_are_all_distinct():
    codes = [0, 1, 2, 3, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_RUNTIME, EXIT_NOPERM, EXIT_CONFIG]
    assert len(set(codes)) == len(codes)


def test_argument_errors_exit_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["cache", "purge", "--config", config(tmp_path)])
    assert exited.value.code == EXIT_USAGE and "DOMAIN or --all" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == EXIT_USAGE


def test_a_key_that_is_no_domain_exits_usage_before_any_lookup(tmp_path, capsys):
    assert main(["query", "[192.0.2.1]", "--config", config(tmp_path)]) == EXIT_USAGE
    assert "no MTA-STS lookup for this key" in capsys.readouterr().err


def test_an_unknown_published_domain_exits_usage(tmp_path, capsys):
    path = config(tmp_path, '[publish.domains."example.com"]\nmx = ["mx.example.com"]\n')
    assert main(["publish", "policy", "other.example", "--config", path]) == EXIT_USAGE
    assert "other.example is not one of [publish.domains]" in capsys.readouterr().err


def test_a_bad_configuration_exits_config_naming_file_and_key(tmp_path, capsys):
    path = config(tmp_path, "[resolver]\ntimeout = -1\n")
    assert main(["cache", "list", "--config", path]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert path in err and "[resolver] timeout" in err


def test_no_daemon_and_no_store_exits_unavailable(tmp_path, capsys):
    assert main(["cache", "list", "--config", config(tmp_path)]) == EXIT_UNAVAILABLE
    assert "no daemon answered at" in capsys.readouterr().err


def test_a_file_that_cannot_be_written_is_a_runtime_failure(tmp_path, capsys):
    path = config(tmp_path, '[publish.domains."example.com"]\nmx = ["mx.example.com"]\n')
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    assert main(["publish", "write", str(blocker), "--config", path]) == EXIT_RUNTIME
    assert "not-a-directory" in capsys.readouterr().err
