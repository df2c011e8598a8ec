"""What the store keeps, field by field: the written schema of a user's row and of the settings.

These are the records the service reads and writes through `store.sql`; only `store.sql` knows
how they are laid out in tables. Times are Unix seconds (UTC). Secrets are as stored: TOTP
secrets sealed by `crypto.SecretBox`, passwords as scrypt hashes, recovery codes as HMACs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .models import Policy, PolicyMode


@dataclass(frozen=True, slots=True)
class UserRecord:
    key: str  # the username case-folded: unique, the row's identity
    username: str  # as first typed, for display
    name: str
    role: str  # a Role value
    created_at: float
    email: str | None = None
    team: str | None = None
    active: bool = True
    password: str | None = None  # scrypt hash; None: the user cannot sign in with a password yet
    secret: str | None = None  # the confirmed TOTP secret, sealed; None: not enrolled (Pending)
    pending_secret: str | None = None  # sealed, while an enrollment awaits its first code
    activated_at: float | None = None
    last_login_at: float | None = None
    reset_at: float | None = None  # when an administrator last reset this user's 2FA
    last_step: int | None = None  # the newest TOTP time step accepted: older or equal is a replay
    failures: int = 0  # consecutive failures (password, code, recovery code) since the last success
    lock_count: int = 0  # locks since the last success: each one doubles the next lock's length
    locked_until: float | None = None
    recovery: str = ""  # the unused recovery codes' hashes, as store.sql.recovery_column makes them
    recovery_left: int = 0  # how many: counted when read, never written

    @property
    def enrolled(self) -> bool:
        return self.secret is not None


USER_FIELDS = tuple(f.name for f in fields(UserRecord))
# What an update may change: the key is the identity, and recovery codes have their own statements.
USER_COLUMNS = frozenset(USER_FIELDS) - {"key", "recovery_left"}


@dataclass(frozen=True, slots=True)
class Settings:
    """The store's one row of settings: the policy, and which key file it belongs to."""

    mode: PolicyMode
    enabled: bool
    issuer: str
    key_check: str  # an HMAC under the key file: a wrong key is told apart from a damaged secret
    created_at: float

    @property
    def policy(self) -> Policy:
        return Policy(mode=self.mode, enabled=self.enabled, issuer=self.issuer)
