"""``mtasts override add|list|remove``: exemptions with an end (see ``mtasts.core.override``).

Stored with the cache (the daemon's, or its store when it is stopped), so they survive
restarts; the configuration file's ``[overrides."domain"]`` are listed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict

from mtasts.commands.client import ask
from mtasts.commands.output import describe_override
from mtasts.config import Config
from mtasts.core.nexthop import policy_domain
from mtasts.core.override import parse_until
from mtasts.errors import UsageError
from mtasts.exits import EXIT_NO, EXIT_OK, EXIT_RUNTIME


def override_command(config: Config, args: argparse.Namespace) -> int:
    request: Dict[str, Any] = {"command": f"override_{args.action}"}
    if args.action in ("add", "remove"):
        domain = policy_domain(args.domain)
        if domain is None:
            raise UsageError(f"{args.domain!r} is not a domain that can have a policy")
        request["domain"] = domain
    if args.action == "add":
        try:
            request["until"] = parse_until(args.until, time.time())
        except ValueError as exc:
            raise UsageError(f"--until: {exc}") from None
        request.update(level=args.level, reason=args.reason, dane=args.dane)
    response, via = ask(config, request)
    if not response.get("ok"):
        print(f"mtasts: {response.get('error')}", file=sys.stderr)
        return EXIT_RUNTIME
    if getattr(args, "json", False):
        response.pop("ok", None)
        print(json.dumps(dict(response, via=via), indent=2))
    elif args.action == "list":
        for o in response["overrides"]:
            print(describe_override(o))
        print(f"({len(response['overrides'])} in force, from the {via})")
    elif args.action == "add":
        print(f"added: {describe_override(response['override'])}")
    else:
        print(f"removed {response['removed']} override{'' if response['removed'] == 1 else 's'} (via the {via})")
        return EXIT_OK if response["removed"] else EXIT_NO
    return EXIT_OK
