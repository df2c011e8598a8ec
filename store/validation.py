"""Field rules shared by the service (add/edit user) and the CSV import.

Each ``clean_*`` takes the raw value and returns the cleaned one or raises
InvalidInput with a short message naming the field. Messages never echo the
value: it may hold terminal escapes.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInput
from .models import Role

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


def username_key(s: str) -> str:
    """The form usernames are compared in for uniqueness."""
    return s.casefold()


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
    try:
        return Role((s or "").strip().casefold())
    except ValueError:
        raise InvalidInput("role: must be admin, supervisor or agent") from None


def clean_issuer(s: str | None) -> str:
    s = _text("issuer", s, max_len=64, formula_safe=False)
    if ":" in s:
        # The otpauth label is "issuer:account"; a colon would split it wrongly.
        raise InvalidInput("issuer: must not contain ':'")
    return s


def _given(s: str | None) -> bool:
    return bool(s and s.strip())


def _text(field: str, s: str | None, *, max_len: int, formula_safe: bool) -> str:
    s = (s or "").strip()
    if not s:
        raise InvalidInput(f"{field}: required")
    if any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in s):
        raise InvalidInput(f"{field}: control characters are not allowed")
    if len(s) > max_len:
        raise InvalidInput(f"{field}: at most {max_len} characters")
    if formula_safe and s.startswith(_FORMULA_PREFIXES):
        raise InvalidInput(f"{field}: must not start with = + - or @")
    return s
