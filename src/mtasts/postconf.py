"""Asking the local Postfix about itself: ``postconf NAME...``.

At start and on SIGHUP the daemon learns which answers the Postfix that queries it can
use (``core.postfixcaps``). ``[postfix] version`` in the file wins over postconf: the
Postfix may run on another host than the daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from mtasts.config import Config
from mtasts.core.postfixcaps import PostfixInfo, fit_profiles, parse_postconf, parse_version
from mtasts.errors import PostfixError

log = logging.getLogger("mtasts.postfix")

FALLBACK_POSTCONF = "/usr/sbin/postconf"
# postconf reads main.cf and exits; anything slower is a broken installation.
POSTCONF_TIMEOUT = 10.0
# What the answers depend on; an old Postfix prints "unknown parameter" for the newer ones.
ANSWER_PARAMETERS = ("mail_version", "smtp_dns_support_level", "smtp_tlsrpt_enable")


def find_postconf(config: Config) -> Optional[str]:
    """``[postfix] postconf``, else ``postconf`` on PATH, else /usr/sbin/postconf."""
    if config.postfix.postconf:
        return config.postfix.postconf
    found = shutil.which("postconf")
    if found:
        return found
    return FALLBACK_POSTCONF if os.access(FALLBACK_POSTCONF, os.X_OK) else None


def postconf_command(config: Config, path: str, *args: str) -> List[str]:
    command = [path]
    if config.postfix.config_directory:
        command += ["-c", config.postfix.config_directory]
    return command + list(args)


def run_postconf(config: Config, names: Sequence[str], *flags: str) -> Tuple[str, Dict[str, str]]:
    """(the postconf path, {name: value}) for *names*; names Postfix does not know are absent."""
    path = find_postconf(config)
    if path is None:
        raise PostfixError("no postconf on PATH nor at " + FALLBACK_POSTCONF)
    command = postconf_command(config, path, *flags, *names)
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=POSTCONF_TIMEOUT, check=False)
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


def learn_postfix(
    config: Config, quiet: bool = False, postconf_run: Optional[Tuple[str, Dict[str, str]]] = None
) -> PostfixInfo:
    """What the configuration says of Postfix, else what postconf says (*postconf_run*: a
    run already made, as (path, values)), else unknown (logged as a WARNING unless *quiet*:
    the CLI reports it instead)."""
    if config.postfix.version:
        return PostfixInfo(parse_version(config.postfix.version), config.postfix.dnssec is True, config.postfix.tlsrpt is True,
                           source=f"[postfix] in {config.source}")
    try:
        path, values = postconf_run if postconf_run is not None else run_postconf(config, ANSWER_PARAMETERS)
    except PostfixError as exc:
        if quiet:
            return PostfixInfo(source=str(exc))
        log.warning("Postfix unknown (%s): answering what every Postfix since 2.10 accepts (no servername=,"
                    " no DANE, no TLSRPT attributes); set [postfix] version and dnssec to say which Postfix"
                    " queries this daemon", exc)
        return PostfixInfo(source=str(exc))
    info = PostfixInfo.from_postconf(values, f"postconf {path}")
    if info.version is None and not quiet:
        log.warning("%s gave no usable mail_version (%r): answering what every Postfix since 2.10 accepts",
                    path, values.get("mail_version", ""))
    return info


def fit_to_postfix(config: Config, info: PostfixInfo) -> Config:
    """*config* with its map profiles fitted to *info*; each explicit setting that Postfix
    would defer on or silently weaken is logged as a WARNING."""
    maps, default, warnings = fit_profiles(config.maps, config.default_profile, info)
    for warning in warnings:
        log.warning("%s: %s", config.source, warning)
    return dataclasses.replace(config, maps=maps, default_profile=default)


def describe_answers(config: Config) -> str:
    """One line: what each map profile answers (for the start-up log and ``doctor``)."""
    parts = []
    for name, profile in sorted(config.maps.items()):
        parts.append(f"map {name}: {profile_summary(profile, config.dane.mode)}")
    if "default" not in config.maps:
        parts.append(f"other maps: {profile_summary(config.default_profile, config.dane.mode)}")
    return "; ".join(parts)


def profile_summary(profile, dane_mode: str) -> str:
    features = ["secure match=..." + (" servername=hostname" if profile.sni else " (no servername=)")]
    features.append("dane/dane-only where DANE applies" if profile.dane and dane_mode == "prefer"
                    else "no DANE answers")
    features.append("TLSRPT attributes" if profile.tlsrpt else "no TLSRPT attributes")
    return ", ".join(features)
