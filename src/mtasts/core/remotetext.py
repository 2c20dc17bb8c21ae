"""Text a remote party wrote (a report's organisation name, a mail header), made safe to keep,
log and show.

A newline in ``organization-name`` would start a forged log line (``WARNING ... DOWNGRADE``),
NUL and U+202E (right-to-left override) change what a terminal shows, and a lone surrogate
(valid in JSON's ``\\ud800``, not in UTF-8) makes SQLite and every encoder fail. So every
character that is no printable text is written as its escape: ``\\n`` becomes ``\\x0a``,
U+202E ``\\u202e``. Printable text, non-ASCII included, is kept as it is.
"""

from __future__ import annotations

import unicodedata

# Control, format, surrogate, private-use and unassigned characters, and the line and
# paragraph separators: none is text a reader should see as itself.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str, limit: int = 500) -> str:
    """*text* with every non-printable character escaped, cut to *limit* characters (the
    escapes count; they are never cut in half)."""
    if text.isprintable():  # the common case: nothing to escape
        return text[:limit]
    out = []
    size = 0
    for char in text:
        if char == " " or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
            piece = char
        else:
            code = ord(char)
            piece = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
        size += len(piece)
        if size > limit:
            break
        out.append(piece)
    return "".join(out)
