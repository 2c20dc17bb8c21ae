"""What the daemon says: log lines (text for journald, or JSON for machines) and systemd's
notify protocol.

``[log] format = "json"``: one JSON object per line. Stable keys: ``time`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``; and where the line is about one domain:
``domain``, plus ``outcome`` (what happened: learned, changed, refreshed, no-record,
fetch-failure, dns-failure, invalid-record, expired, refresh-failed, override, downgrade,
change, dane-...), ``policy_id``, ``mode``, ``duration_ms`` (the discovery's wall time) when the
line knows them; ``exception`` with a traceback. The text format (the default) is for
journald, which adds the time itself under systemd.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from typing import Any, Dict

log = logging.getLogger("mtasts")

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


def setup_logging(level: str, form: str = "text") -> None:
    """Log to stderr in *form*: "text" (journald adds the time under systemd, JOURNAL_STREAM
    set) or "json" (``JsonFormatter``); a reload may change both."""
    if form == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        journald = os.environ.get("JOURNAL_STREAM")
        formatter = logging.Formatter(
            "%(levelname)s %(message)s" if journald else "%(asctime)s %(levelname)s %(message)s"
        )
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level.upper())


def sd_notify(message: str) -> None:
    """systemd's notify protocol (sd_notify(3)); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
