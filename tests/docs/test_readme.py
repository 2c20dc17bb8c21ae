"""The README's promises that can be checked mechanically."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def quick_start():
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line.strip()]


def test_quick_start_is_two_commands():
    commands = quick_start()
    assert len(commands) == 2
    assert commands[0].endswith("mtasts serve")


def test_ci_runs_the_readme_test_command():
    assert quick_start()[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_documented_config_block_parses_to_the_defaults():
    from mtasts.config import Config, parse_config

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib

    block = README.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    documented = parse_config(tomllib.loads(block), "README")
    defaults = Config()
    # Each section's values (not which keys the block happens to set), and the map profiles.
    for section in (
        "socketmap",
        "resolver",
        "fetch",
        "cache",
        "metrics",
        "dane",
        "postfix",
        "control",
        "log",
        "reports",
        "maps",
    ):
        assert getattr(documented, section) == getattr(defaults, section), section


def test_every_cli_command_is_documented():
    from mtasts.cli import _parser

    parser = _parser()
    sub = [a for a in parser._actions if a.dest == "command"][0]
    for name in sub.choices:
        assert re.search(rf"mtasts {name}\b", README), name


def test_every_cli_argument_has_help_text():
    import argparse

    from mtasts.cli import _parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield " ".join(path), action

    missing = [f"{where}: {action.dest}" for where, action in walk(_parser(), ["mtasts"]) if not action.help]
    assert missing == []
