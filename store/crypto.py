"""Password hashing, the key file, TOTP secret encryption and recovery-code hashing.

Nothing here is home-made cryptography: scrypt comes from hashlib, AES-GCM and HKDF from
`cryptography`, HMAC and constant-time comparison from the standard library.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import KeyFileError

# `cryptography` is imported where a key is first used: the dashboard's sign-in screen is
# drawn before (its import is a tenth of the start-up over a bare Textual app).

# scrypt at N=2^14, r=8: 16 MiB and tens of milliseconds a guess (OWASP's minimum).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check; with no hash, still spends the same work so timing hides it."""
    dummy = not encoded
    if dummy:
        encoded = _dummy_hash()
    try:
        _, n, r, p, salt, digest = encoded.split("$")
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected) and not dummy


@functools.cache
def _dummy_hash() -> str:
    """Checked when a user has no password (or does not exist), so the answer takes as long."""
    return hash_password(secrets.token_hex(16))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class SecretBox:
    """Encrypts TOTP secrets and hashes recovery codes with keys derived from the key file.

    A store copied without its key file reveals no secret, and its recovery-code hashes cannot
    be tested offline either.
    """

    def __init__(self, master: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(_derive(master, b"mfa-console totp-secret v1"))
        self._recovery_key = _derive(master, b"mfa-console recovery-code v1")
        self.check = hmac.new(_derive(master, b"mfa-console key-check v1"), b"check", "sha256").hexdigest()[:16]

    def encrypt(self, secret: str, owner: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode("ascii"), _aad(owner))
        return "v1." + _b64(nonce + sealed)

    def decrypt(self, token: str, owner: str) -> str:
        """`owner` binds the ciphertext to one user: a secret pasted onto another user fails."""
        from cryptography.exceptions import InvalidTag

        try:
            raw = _unb64(token.removeprefix("v1."))
            return self._aead.decrypt(raw[:12], raw[12:], _aad(owner)).decode("ascii")
        except (InvalidTag, ValueError) as exc:
            raise KeyFileError(f"a TOTP secret of {owner!r} does not decrypt with this key file") from exc

    def recovery_hash(self, code: str) -> str:
        """128 bits of HMAC-SHA256: ample against guessing, and half the size in a large store."""
        return hmac.new(self._recovery_key, code.encode(), "sha256").hexdigest()[:32]


def _derive(master: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _aad(owner: str) -> bytes:
    return b"user:" + owner.encode()


def create_key_file(path: Path) -> bytes:
    """A new random key, written 0600 with O_EXCL so an existing key is never replaced."""
    master = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"key file {path} already exists; refusing to replace it") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(master) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return master


def load_key_file(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"key file {path} is missing: the TOTP secrets cannot be read without it "
            "(restore it from backup, or point --key / MFA_CONSOLE_KEY at it)"
        ) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        master = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        master = b""
    if len(master) != 32:
        raise KeyFileError(f"key file {path} is not an mfa-console key")
    return master
