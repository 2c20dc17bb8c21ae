"""The one policy builder of the tests: an RFC 8461 §3.2 policy file, CRLF-terminated."""

from __future__ import annotations

from typing import Sequence


def policy_text(
    mode: str = "enforce",
    mx: Sequence[str] = ("mx1.{d}", "*.backup.{d}"),
    max_age: int = 604800,
    domain: str = "example.com",
) -> bytes:
    """*mx* patterns may hold ``{d}``, replaced by *domain*."""
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m.format(d=domain)}" for m in mx] + [f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()
