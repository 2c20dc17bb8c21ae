"""``mtasts cache ...``: list, show, purge, refresh and count the cache.

The commands talk to the running daemon over its control socket, so a purge or refresh
takes effect at once; with the daemon stopped they work on its SQLite store.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List

from mtasts.commands.client import ask
from mtasts.commands.output import describe_override, print_dane, print_table
from mtasts.config import Config
from mtasts.exits import EXIT_NO, EXIT_OK, EXIT_RUNTIME
from mtasts.servers.control import WARM_BATCH
from mtasts.servers.jsonviews import iso_time


def read_domains(lines) -> List[str]:
    """The first word of each line, once each; blank lines and ``#`` comments skipped."""
    out: Dict[str, None] = {}
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words:
            out[words[0]] = None
    return list(out)


def cache_command(config: Config, args: argparse.Namespace) -> int:
    action = args.action
    if action == "warm":
        return _warm(config, args)
    request: Dict[str, Any] = {"command": "purge_all" if action == "purge" and args.all else action}
    if action == "export":
        request["map"] = args.map
    if getattr(args, "domain", None):
        request["domain"] = args.domain
    response, via = ask(config, request)
    if not response.get("ok"):
        print(f"mtasts: {response.get('error')}", file=sys.stderr)
        return EXIT_RUNTIME
    response["via"] = via
    if action == "export":
        _print_export(response)
        return EXIT_OK
    if args.json:
        response.pop("ok", None)
        print(json.dumps(response, indent=2))
    else:
        _print_cache(action, response)
    # "not cached" is the same answer in both forms: exit 1, as query without a policy.
    if action == "show" and response.get("entry") is None:
        return EXIT_NO
    return EXIT_OK


def _warm(config: Config, args: argparse.Namespace) -> int:
    """``cache warm``: the list in batches (a control request each), the outcome summed."""

    if args.file == "-":
        keys = read_domains(sys.stdin)
    else:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            keys = read_domains(f)
    # Each batch may wait for its slowest discoveries, refresh_concurrency at a time.
    rounds = -(-WARM_BATCH // config.cache.refresh_concurrency)
    timeout = rounds * (config.resolver.timeout + config.fetch.timeout) + 10
    total: Dict[str, int] = {}
    via = "daemon"
    for start in range(0, len(keys), WARM_BATCH):
        request = {"command": "warm", "domains": keys[start : start + WARM_BATCH]}
        response, via = ask(config, request, timeout, writes=True, announce=start == 0)
        if not response.get("ok"):
            print(f"mtasts: {response.get('error')}", file=sys.stderr)
            return EXIT_RUNTIME
        for state, count in response["outcome"].items():
            total[state] = total.get(state, 0) + count
        print(f"mtasts: {min(start + WARM_BATCH, len(keys))} of {len(keys)} domains", file=sys.stderr)
    print(
        f"warmed {len(keys)} domains via the {via}: "
        + (", ".join(f"{count} {state}" for state, count in sorted(total.items())) or "none")
    )
    return EXIT_OK


def _print_export(response: Dict[str, Any]) -> None:
    """A table for postmap(1): comment lines first (postmap skips them), one domain a line."""
    print(
        f"# smtp_tls_policy_maps from the mtasts cache ({response['via']}), map profile {response['map']!r},"
        f" {iso_time(time.time())}"
    )
    print(
        f"# {len(response['lines'])} domains with a policy answer. A static table does not expire:"
        f" regenerate it before {response['first_expiry'] or '-'}, when the first of these policies does"
    )
    for domain in response["dane_unchecked"]:
        print(f"# {domain}: left out, its DANE state is not checked yet ('mtasts cache refresh {domain}')")
    for line in response["lines"]:
        print(line)


def _print_cache(action: str, response: Dict[str, Any]) -> None:
    if action == "list":
        rows: List[List[str]] = [["DOMAIN", "STATE", "MODE", "ID", "EXPIRES", "MX"]]
        for e in response["entries"]:
            rows.append(
                [
                    e["domain"],
                    e["state"],
                    e["mode"] or "-",
                    e["policy_id"] or "-",
                    e["expires_at"] or (e["hold_until"] or "-"),
                    ",".join(e["mx"]) or "-",
                ]
            )
        print_table(rows)
        count = len(rows) - 1
        print(f"({count} {'entry' if count == 1 else 'entries'}, from the {response['via']})")
    elif action in ("show", "refresh"):
        entry = response.get("entry")
        if entry is None:
            print("not cached")
            if response.get("override"):  # it applies from the first lookup on: say so
                print(f"{'override:':16}{describe_override(response['override'])}")
            return
        for key, value in entry.items():
            if key in ("policy", "dane"):
                continue
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key + ':':16}{'-' if value is None else value}")
        if entry.get("policy"):
            print("policy:")
            for line in entry["policy"].splitlines():
                print(f"  | {line}")
        if entry.get("dane"):
            print_dane(entry["dane"])
        if "answer" in response:
            print(f"{'answer:':16}{response['answer']}")
        if response.get("override"):
            print(f"{'override:':16}{describe_override(response['override'])}")
    elif action == "history":
        for c in response["changes"]:
            flag = "  DOWNGRADE" if c["downgrade"] else ""
            print(f"{c['at']}  {c['change']:8} {c['old']} -> {c['new']}{flag}")
        print(f"({len(response['changes'])} changes of {response['domain']}, from the {response['via']})")
    elif action == "purge":
        print(
            f"purged {response['purged']} entr{'y' if response['purged'] == 1 else 'ies'} (via the {response['via']})"
        )
    elif action == "stats":
        for key, value in response["stats"].items():
            print(f"{key + ':':26}{value}")
        print(f"(from the {response['via']})")
