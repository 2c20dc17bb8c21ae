"""Log lines for machines: ``[log] format = "json"``, one JSON object per line.

Stable keys: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``;
and where the line is about one domain: ``domain``, plus ``outcome`` (what happened: learned,
changed, refreshed, no-record, fetch-failure, dns-failure, invalid-record, expired,
refresh-failed, override, downgrade, change, dane-...), ``policy_id``, ``mode``, ``duration_ms``
(the discovery's wall time) when the line knows them; ``exception`` with a traceback.
The text format (the default, journald-friendly) is unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict

STABLE_KEYS = ("domain", "outcome", "policy_id", "mode", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: Dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        domain = getattr(record, "domain", None)
        if domain is None and isinstance(record.msg, str) and record.msg.startswith("%s: ") and record.args:
            # Our per-domain lines all begin "DOMAIN: ...": the domain without a second copy.
            first = record.args[0] if isinstance(record.args, tuple) else None
            domain = first if isinstance(first, str) else None
        if domain is not None:
            data["domain"] = domain
        for key in STABLE_KEYS[1:]:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)
