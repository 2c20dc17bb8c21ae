"""The MTA-STS policy body (RFC 8461 §3.2).

Decisions where RFC 8461 §3.2 leaves a gap, all documented in the README ("Policy parsing"):

* Blank lines (or lines of only whitespace) are ignored: they are common at
  the end of hand-written files and carry no meaning.
* A line that is not ``name ":" *WSP value`` (leading whitespace, space before the
  colon, no colon, a bad field name) makes the whole policy invalid (§3.2 ABNF: ``sts-policy-field``).
* An ``mx`` value that is not ``["*."] Domain`` (lists, IP addresses, partial
  wildcards) makes the whole policy invalid (§3.2 ``sts-policy-mx-value``): enforcing a policy with an
  entry silently dropped could send mail nowhere. A trailing dot is accepted (an absolute name).
* ``max_age`` above 31557600 is clamped to 31557600 (§3.2: "up to 31557600").
* Extension values may be empty; control characters are never allowed (§3.2 ``sts-policy-ext-value``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from mtasts.core.hostname import MxPattern
from mtasts.errors import PolicyError

# RFC 8461 §3.3 suggests senders cap the body at 64 KiB.
MAX_POLICY_SIZE = 64 * 1024
# RFC 8461 §3.2: "maximum value of 31557600" (one year).
MAX_MAX_AGE = 31557600

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_MAX_AGE = re.compile(r"[0-9]{1,10}\Z")  # 1*10(DIGIT)
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is WSP, everything else is out
_WSP = " \t"


class Mode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class Policy:
    """A valid policy: its mode, its max_age, and the body it was parsed (and validated) from.

    The mx patterns and lines are read again from the body when asked for: the cache holds a
    million of these, and only the first answer per map profile (then memoised) and the
    tools need them.
    """

    __slots__ = ("body", "max_age", "mode")
    mode: Mode
    max_age: int
    body: bytes

    @property
    def mx(self) -> Tuple[MxPattern, ...]:
        """The ``mx`` patterns in policy order (RFC 8461 §3.2)."""
        return tuple(MxPattern.parse(value) for _n, name, value in _fields(self.body) if name == "mx")

    def matches(self, mx_host: str) -> bool:
        return any(p.matches(mx_host) for p in self.mx)

    @property
    def lines(self) -> Tuple[str, ...]:
        """The fields as served (``name: value``), for TLSRPT ``policy_string``."""
        return tuple(f"{name}: {value}" if value else f"{name}:" for _n, name, value in _fields(self.body))


def _fields(body: bytes) -> Iterator[Tuple[int, str, str]]:
    """(line number, name, value) of each non-blank line; PolicyError on a malformed one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy is not UTF-8 (byte {exc.start})") from None
    for number, line in enumerate(text.split("\n"), 1):
        # sts-policy-term = LF / CRLF; a bare CR elsewhere is a control character.
        if line.endswith("\r"):
            line = line[:-1]
        line = line.rstrip(_WSP)
        if not line:
            continue
        if _CTL.search(line):
            raise PolicyError(f"line {number}: control character")
        name, colon, value = line.partition(":")
        if not colon or not _NAME.match(name):
            raise PolicyError(f"line {number}: {_preview(line)} is not 'name: value'")
        yield number, name, value.lstrip(_WSP)


def parse_policy(body: bytes) -> Policy:
    """Parse a policy body; raise PolicyError naming the first problem found."""
    if len(body) > MAX_POLICY_SIZE:
        raise PolicyError(f"policy is {len(body)} bytes, over the {MAX_POLICY_SIZE} byte limit")
    version: Optional[str] = None
    mode: Optional[Mode] = None
    max_age: Optional[int] = None
    mx: List[MxPattern] = []
    for number, name, value in _fields(body):
        if name == "version":
            if version is None:
                if value != "STSv1":
                    raise PolicyError(f"line {number}: version {_preview(value)} is not STSv1")
                version = value
        elif name == "mode":
            if mode is None:
                try:
                    mode = Mode(value)
                except ValueError:
                    raise PolicyError(f"line {number}: unknown mode {_preview(value)}") from None
        elif name == "max_age":
            if max_age is None:
                if not _MAX_AGE.match(value):
                    raise PolicyError(f"line {number}: max_age {_preview(value)} is not 1-10 digits")
                max_age = min(int(value), MAX_MAX_AGE)
        elif name == "mx":
            if not value.isascii():
                raise PolicyError(f"line {number}: mx {_preview(value)} is not an A-label name")
            try:
                mx.append(MxPattern.parse(value))
            except ValueError as exc:
                raise PolicyError(f"line {number}: {exc}") from None
        # Any other name is an extension: accepted and ignored (RFC 8461 §3.2).
    if version is None:
        raise PolicyError("policy has no version field")
    if mode is None:
        raise PolicyError("policy has no mode field")
    if max_age is None:
        raise PolicyError("policy has no max_age field")
    if not mx and mode is not Mode.NONE:
        raise PolicyError(f"mode {mode.value} policy has no mx field")
    return Policy(mode=mode, max_age=max_age, body=body)


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
