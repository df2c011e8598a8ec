"""TOTP (RFC 6238) through pyotp, with the time step exposed for replay protection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode

import pyotp

DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length


def new_secret() -> str:
    """A fresh base32 secret without padding (32 characters for 160 bits)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def seed_to_base32(seed: bytes) -> str:
    return base64.b32encode(seed).decode("ascii").rstrip("=")


def time_step(unix_time: float, period: int = 30) -> int:
    return int(unix_time // period)


def _totp(secret: str, digits: int, algorithm: str, period: int) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=digits, digest=DIGESTS[algorithm], interval=period)


def code_at_step(secret: str, step: int, *, digits: int = 6, algorithm: str = "SHA1", period: int = 30) -> str:
    # The step is the HOTP counter (RFC 6238 §4): no clock or time zone conversion on the way.
    return _totp(secret, digits, algorithm, period).generate_otp(step)


def matching_step(secret: str, code: str, now: float, *, window: int = 1, digits: int = 6, period: int = 30) -> int | None:
    """The time step in now±window whose code equals `code`, compared in constant time.

    Every candidate is compared (no early exit) so the timing does not tell which step matched.
    """
    current = time_step(now, period)
    found = None
    totp = _totp(secret, digits, "SHA1", period)  # one per check: a service checks hundreds a second
    for step in range(current - window, current + window + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), code.encode()) and found is None:
            found = step
    return found


def normalize_code(code: str) -> str:
    """Authenticator apps show '123 456'; people type it either way."""
    return "".join(code.split())


def provisioning_uri(secret: str, account: str, issuer: str, *, digits: int = 6, period: int = 30) -> str:
    """otpauth URI in the Key URI Format, with the parameters Google Authenticator honours.

    Label and issuer parameter are the same URL-encoded issuer; spaces become %20 (not '+'),
    which every authenticator decodes alike.
    """
    label = f"{quote(issuer, safe='')}:{quote(account, safe='@')}"
    params = {"secret": secret, "issuer": issuer}
    if digits != 6:
        params["digits"] = str(digits)
    if period != 30:
        params["period"] = str(period)
    return f"otpauth://totp/{label}?{urlencode(params, quote_via=quote)}"


def group_secret(secret: str, size: int = 4) -> str:
    """The key in groups of four, as apps accept it for manual entry."""
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))
