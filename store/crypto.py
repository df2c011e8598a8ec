"""Password hashing, the key file, TOTP secret encryption and recovery-code hashing.

Nothing here is home-made cryptography: scrypt comes from hashlib, AES-GCM and HKDF from
`cryptography`, HMAC and constant-time comparison from the standard library.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from . import fs
from .errors import KeyFileError

# `cryptography` is imported where a key is first used: the dashboard's sign-in screen is
# drawn before (its import is a tenth of the start-up over a bare Textual app).

# scrypt at N=2^14, r=8: 16 MiB and tens of milliseconds a guess (OWASP's minimum).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# A stored hash is checked only within these bounds, else the password is refused: a cheaper one
# (a store edited or carried over from elsewhere) would make guessing cheap, a dearer one would let
# a store exhaust memory or stall every sign-in.
MIN_SCRYPT_N, MIN_SCRYPT_R = SCRYPT_N, SCRYPT_R
MAX_SCRYPT_MEMORY, MAX_SCRYPT_P = 2**26, 4  # 128 * r * N bytes: 64 MiB, 4x the default


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check; with no usable hash, still spends the same work so timing hides it."""
    params = _scrypt_params(encoded)
    usable = params is not None
    if not usable:
        params = _scrypt_params(_dummy_hash())
    n, r, p, salt, expected = params
    actual = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2 * MAX_SCRYPT_MEMORY
    )
    return hmac.compare_digest(actual, expected) and usable


def _scrypt_params(encoded: str | None):
    """(n, r, p, salt, digest) of a hash within the accepted bounds, else None."""
    try:
        name, n, r, p, salt, digest = (encoded or "").split("$")
        n, r, p = int(n), int(r), int(p)
        salt, digest = _unb64(salt), _unb64(digest)
    except ValueError:
        return None
    if name != "scrypt" or n < MIN_SCRYPT_N or r < MIN_SCRYPT_R or 128 * r * n > MAX_SCRYPT_MEMORY:
        return None
    if n & (n - 1) or not 1 <= p <= MAX_SCRYPT_P or len(salt) < 16 or not 32 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


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
        self._recovery_key_v2 = _derive(master, b"mfa-console recovery-code v2")
        self._name_key = _derive(master, b"mfa-console unknown-name v1")
        self.check = hmac.new(_derive(master, b"mfa-console key-check v1"), b"check", "sha256").hexdigest()[:16]
        # Decrypted when a user has no secret, so a wrong name costs what a wrong code does.
        self._dummy = self.encrypt("A" * 32, "")

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
            raise KeyFileError(
                f"the TOTP secret of {owner!r} does not decrypt with this store's key file: it is damaged "
                "or was copied from another store (reset that user's 2FA)"
            ) from exc

    def decrypt_or_dummy(self, token: str | None, owner: str) -> str:
        """`decrypt`, or the same work on a dummy secret when there is none."""
        return self.decrypt(token, owner) if token else self.decrypt(self._dummy, "")

    def recovery_hash(self, code: str, owner: str) -> str:
        """128 bits of HMAC-SHA256 over the owner and the code: a hash copied onto another user
        matches nothing there. Ample against guessing, and small in a large store."""
        return hmac.new(self._recovery_key_v2, _aad(owner) + b"\0" + code.encode(), "sha256").hexdigest()[:32]

    def legacy_recovery_hash(self, code: str) -> str:
        """The hash of stores made before recovery codes were bound to their user (JSON stores)."""
        return hmac.new(self._recovery_key, code.encode(), "sha256").hexdigest()[:32]

    def name_tag(self, name: str) -> str:
        """What an unknown name is recorded as: 32 bits of a keyed hash. Failures of one name add
        up, and nobody without the key file can test guesses of what was typed (a password, say);
        with it, so many other names share each tag that it still says little."""
        return hmac.new(self._name_key, name.encode(), "sha256").hexdigest()[:8]


def _derive(master: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _aad(owner: str) -> bytes:
    return b"user:" + owner.encode()


def create_key_file(path: Path, master: bytes | None = None) -> bytes:
    """A new random key (or a copy of `master`, another store's), written 0600 in a 0700 folder;
    an existing key is never replaced."""
    master = secrets.token_bytes(32) if master is None else master
    fs.make_private_folder(path.parent)
    folder = fs.check_folder(path.parent)
    try:
        fd = fs.create_private_file(path, folder)
    except FileExistsError as exc:
        raise KeyFileError(f"key file {path} already exists; refusing to replace it") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        try:
            data = base64.b64encode(master) + b"\n"
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
        fs.fsync_folder(path.parent)
    except OSError as exc:  # a full disk, say: no half-written key is left to be taken for one
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}; nothing was created") from exc
    return master


def load_key_file(path: Path) -> bytes:
    try:
        raw = fs.read_private_file(path, secret=True)
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"key file {path} is missing: the TOTP secrets cannot be read without it "
            "(restore it from backup, or point --key / MFA_CONSOLE_KEY at it)"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(
                f"key file {path} is a symbolic link: refusing to follow it; remove it, and put the key file "
                "itself there (or point --key / MFA_CONSOLE_KEY at it)"
            ) from exc
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        master = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        master = b""
    if len(master) != 32:
        raise KeyFileError(f"key file {path} is not an mfa-console key")
    return master
