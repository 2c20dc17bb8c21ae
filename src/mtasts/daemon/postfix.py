"""The Postfix that reads the answers: what the file says of it, else what its postconf says
(``net.postconf``), and the map profiles fitted to it (``core.postfixcaps``).

At start and on SIGHUP the daemon learns which answers that Postfix can use. ``[postfix]
version`` in the file wins over postconf: the Postfix may run on another host.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional, Tuple

from mtasts.config import Config
from mtasts.core.postfixcaps import PostfixInfo, fit_profiles, parse_version
from mtasts.core.reply import MapProfile
from mtasts.errors import PostfixError
from mtasts.net.postconf import ANSWER_PARAMETERS, run_postconf

log = logging.getLogger("mtasts.postfix")


def learn_postfix(
    config: Config, quiet: bool = False, postconf_run: Optional[Tuple[str, Dict[str, str]]] = None
) -> PostfixInfo:
    """What the configuration says of Postfix, else what postconf says (*postconf_run*: a
    run already made, as (path, values)), else unknown (logged as a WARNING unless *quiet*:
    the CLI reports it instead)."""
    if config.postfix.version:
        return PostfixInfo(
            parse_version(config.postfix.version),
            config.postfix.dnssec is True,
            config.postfix.tlsrpt is True,
            source=f"[postfix] in {config.source}",
        )
    try:
        path, values = (
            postconf_run
            if postconf_run is not None
            else run_postconf(config.postfix.postconf, config.postfix.config_directory, ANSWER_PARAMETERS)
        )
    except PostfixError as exc:
        if quiet:
            return PostfixInfo(source=str(exc))
        log.warning(
            "Postfix unknown (%s): answering what every Postfix since 2.10 accepts (no servername=,"
            " no DANE, no TLSRPT attributes); set [postfix] version and dnssec to say which Postfix"
            " queries this daemon",
            exc,
        )
        return PostfixInfo(source=str(exc))
    info = PostfixInfo.from_postconf(values, f"postconf {path}")
    if info.version is None and not quiet:
        log.warning(
            "%s gave no usable mail_version (%r): answering what every Postfix since 2.10 accepts",
            path,
            values.get("mail_version", ""),
        )
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


def profile_summary(profile: MapProfile, dane_mode: str) -> str:
    features = ["secure match=..." + (" servername=hostname" if profile.sni else " (no servername=)")]
    features.append(
        "dane/dane-only where DANE applies" if profile.dane and dane_mode == "prefer" else "no DANE answers"
    )
    features.append("TLSRPT attributes" if profile.tlsrpt else "no TLSRPT attributes")
    return ", ".join(features)
