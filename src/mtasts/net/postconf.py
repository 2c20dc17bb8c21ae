"""Asking the local Postfix about itself: ``postconf NAME...`` (an edge: it runs a command).

Plain values in, plain values out: which postconf (``[postfix] postconf``, else on PATH,
else /usr/sbin/postconf), which configuration directory (``postconf -c``), and what it said
(``core.postfixcaps.parse_postconf``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from mtasts.core.postfixcaps import parse_postconf
from mtasts.errors import PostfixError

FALLBACK_POSTCONF = "/usr/sbin/postconf"
# postconf reads main.cf and exits; anything slower is a broken installation.
POSTCONF_TIMEOUT = 10.0
# What the answers depend on; an old Postfix prints "unknown parameter" for the newer ones.
ANSWER_PARAMETERS = ("mail_version", "smtp_dns_support_level", "smtp_tlsrpt_enable")


def find_postconf(configured: str = "") -> Optional[str]:
    """*configured* (``[postfix] postconf``), else ``postconf`` on PATH, else /usr/sbin/postconf."""
    if configured:
        return configured
    found = shutil.which("postconf")
    if found:
        return found
    return FALLBACK_POSTCONF if os.access(FALLBACK_POSTCONF, os.X_OK) else None


def postconf_command(path: str, config_directory: str, *args: str) -> List[str]:
    command = [path]
    if config_directory:
        command += ["-c", config_directory]
    return command + list(args)


def run_postconf(
    configured: str, config_directory: str, names: Sequence[str], *flags: str
) -> Tuple[str, Dict[str, str]]:
    """(the postconf path, {name: value}) for *names*; names Postfix does not know are absent."""
    path = find_postconf(configured)
    if path is None:
        raise PostfixError("no postconf on PATH nor at " + FALLBACK_POSTCONF)
    command = postconf_command(path, config_directory, *flags, *names)
    try:
        done = subprocess.run(command, capture_output=True, timeout=POSTCONF_TIMEOUT, check=False)
    except OSError as exc:
        raise PostfixError(f"cannot run {path}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise PostfixError(f"{' '.join(command)} did not finish in {POSTCONF_TIMEOUT:.0f} s") from None
    output = done.stdout.decode("utf-8", "replace")
    values = parse_postconf(output)
    if done.returncode != 0 and not values:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PostfixError(f"{' '.join(command)} failed (exit {done.returncode}): {why[-1] if why else 'no output'}")
    return path, values
