"""Field rules shared by the service (add/edit user) and the CSV import.

Each ``clean_*`` takes the raw value and returns the cleaned one or raises
InvalidInput with a short message naming the field. Messages never echo the
value: it may hold terminal escapes.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInput
from .models import ROLES, Role

_USERNAME_CHARS = re.compile(r"[A-Za-z0-9._@-]+")
# Plausible, not RFC 5322: one @, non-empty local part, dotted domain, no spaces.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")

# Cc (C0, DEL, C1, so ESC sequences) and Cf (zero-width, bidi overrides) can
# hide or reorder text on a terminal. Cs (lone surrogates) cannot be encoded,
# and Zl/Zp (U+2028/U+2029) break lines like a newline does.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# A spreadsheet opening an exported CSV runs cells starting with these as
# formulas. Tab and CR are on the usual list too, but surrounding whitespace is
# stripped and inner ones are control characters, so they never get this far.
_FORMULA_PREFIXES = ("=", "+", "-", "@")


# The form usernames are compared in for uniqueness. The method itself rather
# than a function calling it, so an import can map() it over 100k usernames at C speed.
username_key = str.casefold


def clean_username(s: str | None) -> str:
    s = (s or "").strip()
    if not s:
        raise InvalidInput("username: required")
    if len(s) > 64:
        raise InvalidInput("username: at most 64 characters")
    if not _USERNAME_CHARS.fullmatch(s):
        raise InvalidInput("username: only letters, digits and . _ - @ allowed")
    if not s[0].isalnum():
        raise InvalidInput("username: must start with a letter or digit")
    return s


def clean_name(s: str | None) -> str:
    return _text("name", s, max_len=100, formula_safe=True)


def clean_team(s: str | None) -> str | None:
    return _text("team", s, max_len=64, formula_safe=True) if _given(s) else None


def clean_email(s: str | None) -> str | None:
    if not _given(s):
        return None
    # Formula-safe as well: the email column is exported next to name and team.
    s = _text("email", s, max_len=254, formula_safe=True)
    if not _EMAIL.fullmatch(s):
        raise InvalidInput("email: not a valid address (expected name@example.com)")
    return s


def clean_role(s: str | Role | None) -> Role:
    role = ROLES.get((s or "").strip().casefold())
    if role is None:
        raise InvalidInput("role: must be admin, supervisor or agent")
    return role


def clean_issuer(s: str | None) -> str:
    s = _text("issuer", s, max_len=64, formula_safe=False)
    if ":" in s:
        # The otpauth label is "issuer:account"; a colon would split it wrongly.
        raise InvalidInput("issuer: must not contain ':'")
    return s


# -- whole columns, for a bulk import -----------------------------------------
# Each *_as_is tells whether its cleaner would return every value unchanged,
# "" aside (None where the field is optional, refused where it is required).
# False only means "not sure": clean the values one by one. One pass over the
# column joined on "\n" costs a fraction of a cleaner call per value.

# Possessive quantifiers: what each one takes could never match what follows it,
# so backtracking would never help; skipping its bookkeeping halves the time.
_USERNAME_LINES = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._@-]{0,63}+\n)*+")
# _EMAIL on printable text, where " " is the only whitespace, with the formula
# prefixes refused up front (a leading @ already is).
_EMAIL_LINES = re.compile(r"(?:(?:[^@ \n=+\-][^@ \n]*+@[^@ \n.]++(?:\.[^@ \n.]++)++)?\n)*+")
# clean_name on printable text: no edge space (so nothing to strip), no formula
# prefix, 1 to 100 characters.
_NAME_LINES = re.compile(r"(?:[^ \n=+\-@](?:[^\n]{0,99}+(?<! ))?\n)*+")


def usernames_as_is(values: list[str]) -> bool:
    lines = "\n".join(values) + "\n"
    # The count: a value holding a newline would pass for two.
    return lines.count("\n") == len(values) and _USERNAME_LINES.fullmatch(lines) is not None


def names_as_is(values: list[str]) -> bool:
    # Printable: no control characters, so _text's category walk would pass,
    # and no whitespace but " " (nor the newlines joining the values).
    return "".join(values).isprintable() and _NAME_LINES.fullmatch("\n".join(values) + "\n") is not None


def emails_as_is(values: list[str]) -> bool:
    return (
        "".join(values).isprintable()  # as in names_as_is
        and max(map(len, values), default=0) <= 254
        and _EMAIL_LINES.fullmatch("\n".join(values) + "\n") is not None
    )


def _given(s: str | None) -> bool:
    return bool(s and s.strip())


def _text(field: str, s: str | None, *, max_len: int, formula_safe: bool) -> str:
    s = (s or "").strip()
    if not s:
        raise InvalidInput(f"{field}: required")
    # isprintable() is false for every control category (and Zs, Co, Cn, which
    # are allowed), so it spares the per-character walk for nearly all text.
    if not s.isprintable() and any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in s):
        raise InvalidInput(f"{field}: control characters are not allowed")
    if len(s) > max_len:
        raise InvalidInput(f"{field}: at most {max_len} characters")
    if formula_safe and s.startswith(_FORMULA_PREFIXES):
        raise InvalidInput(f"{field}: must not start with = + - or @")
    return s


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def counted(count: int, noun: str) -> str:
    """"1 user", "1,204 users": a count and its noun, in the plural where English wants it."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def printable(text: str | None) -> str:
    """`text` with control characters, escape sequences and bidi overrides made visible as '?'.

    Validation refuses them at the door; this guards what got in another way (a store edited by
    hand, an unknown username typed at a login prompt, an audit detail) on its way to a terminal
    or a file people open.
    """
    if not text:
        return ""
    cleaned = _UNSAFE.sub("?", text)
    if cleaned.isascii():
        return cleaned
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in cleaned)
