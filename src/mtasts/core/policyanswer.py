"""How Postfix reads an ``smtp_tls_policy_maps`` answer: level, then attributes.

A model of smtp_tls_policy.c (Postfix 3.10): tokens are separated by whitespace or
commas; a token that starts with ``{`` runs to its matching ``}``, the braces are
removed and the whitespace just inside them is stripped (TLSRPT_README: "{ name = value }
... ignores whitespace after the opening {, around the =, and before the closing }");
every token after the level is ``name=value``. We check our own answers with it before
Postfix sees them: an answer Postfix cannot parse defers the mail (4.7.5).
"""

from __future__ import annotations

from typing import List, Tuple

from mtasts.core.netstring import MAX_REPLY_SIZE
from mtasts.errors import AnswerError

LEVELS = ("none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure")
_SEPARATORS = " \t\r\n,"
_WSP = " \t\r\n"


def split_answer(data: str) -> List[str]:
    """Split *data* into tokens the way Postfix's brace-aware tokenizer does."""
    tokens = []
    i, end = 0, len(data)
    while i < end:
        if data[i] in _SEPARATORS:
            i += 1
            continue
        start, depth = i, 0
        while i < end and (depth or data[i] not in _SEPARATORS):
            if data[i] == "{":
                depth += 1
            elif data[i] == "}":
                depth -= 1
                if depth < 0:
                    raise AnswerError(f"unbalanced '}}' at offset {i}")
            i += 1
        if depth:
            raise AnswerError(f"unclosed '{{' at offset {start}")
        token = data[start:i]
        if token.startswith("{"):
            if not token.endswith("}"):
                raise AnswerError(f"text after '}}' in {token!r}")
            token = token[1:-1].strip(_WSP)
        tokens.append(token)
    return tokens


def read_answer(data: str) -> Tuple[str, List[Tuple[str, str]]]:
    """The level and ``(name, value)`` attributes of an OK answer's data."""
    if len(data.encode("utf-8")) + len("OK ") > MAX_REPLY_SIZE:
        raise AnswerError(f"answer over the {MAX_REPLY_SIZE} byte reply limit")
    tokens = split_answer(data)
    if not tokens:
        raise AnswerError("empty policy")
    level, attributes = tokens[0], []
    if level not in LEVELS:
        raise AnswerError(f"unknown security level {level!r}")
    for token in tokens[1:]:
        name, equals, value = token.partition("=")
        name, value = name.strip(_WSP), value.strip(_WSP)
        if not equals or not name:
            raise AnswerError(f"attribute {token!r} is not name=value")
        attributes.append((name, value))
    return level, attributes
