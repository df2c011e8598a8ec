"""Making stored text safe to show in a terminal."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(text: str | None) -> str:
    """`text` with control characters, escape sequences and bidi overrides made visible as '?'.

    Store validation refuses them at the door; this guards what got in another way (a
    hand-edited store, an unknown username typed at a login prompt, an audit detail).
    """
    if not text:
        return ""
    cleaned = _UNSAFE.sub("?", text)
    if cleaned.isascii():
        return cleaned
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in cleaned)
