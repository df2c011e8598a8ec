"""Typed records that cross the service boundary, and the results of its use-cases.

Secrets never appear here except in an `Enrollment`, which exists to show one to its owner once.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from . import totp


class Role(str, enum.Enum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


ROLES = {role.value: role for role in Role}  # Role(value) costs microseconds; 100k of them show


class Status(str, enum.Enum):
    PENDING = "pending"
    ACTIVATED = "activated"
    DISABLED = "disabled"


class PolicyMode(str, enum.Enum):
    MANDATORY = "mandatory"
    OPTIONAL = "optional"


MODES = {mode.value: mode for mode in PolicyMode}


@dataclass(frozen=True, slots=True)
class Policy:
    mode: PolicyMode
    enabled: bool
    issuer: str
    digits: int = 6
    period: int = 30
    window: int = 1
    max_failures: int = 5
    lock_minutes: int = 5
    lock_cap_minutes: int = 60

    @property
    def may_disable(self) -> bool:
        return self.mode is PolicyMode.OPTIONAL


@dataclass(frozen=True, slots=True)
class User:
    username: str
    name: str
    role: Role
    status: Status
    email: str | None = None
    team: str | None = None
    active: bool = True
    created_at: datetime | None = None
    activated_at: datetime | None = None
    last_login_at: datetime | None = None
    pending_since: datetime | None = None
    failures: int = 0
    locked_until: datetime | None = None
    recovery_codes_left: int = 0


class NewUser(NamedTuple):
    """A user to add (from the CLI, the dashboard or a CSV row). A tuple: an import makes 100k."""

    username: str
    name: str
    role: Role
    email: str | None = None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: str | None = None
    id: int | None = None  # its place in the log, once recorded: increasing, for log shippers


# -- sessions and the results of signing in ----------------------------------------------------
class Scope(str, enum.Enum):
    FULL = "full"
    CODE = "code"  # password accepted; a TOTP or recovery code is still due
    ENROLL = "enroll"  # password accepted; the user must enroll before going on


@dataclass(frozen=True, slots=True, eq=False)
class Session:
    username: str
    role: Role
    scope: Scope
    operator: bool = False
    expires_at: float | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def actor(self) -> str:
        return f"os:{self.username}" if self.operator else self.username


class Outcome(str, enum.Enum):
    OK = "ok"
    INVALID = "invalid"  # unknown user, wrong password, wrong or replayed code: one answer
    LOCKED = "locked"
    CODE_REQUIRED = "code-required"
    ENROLLMENT_REQUIRED = "enrollment-required"
    NOT_ENROLLED = "not-enrolled"  # verify: the user has no active 2FA (Pending or Disabled)


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: Outcome
    session: Session | None = None
    locked_until: datetime | None = None
    used_recovery_code: bool = False
    recovery_codes_left: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Shown once, during enrollment; never retrievable afterwards."""

    username: str
    issuer: str
    secret: str
    uri: str

    @property
    def label(self) -> str:
        return f"{self.issuer}:{self.username}"

    @property
    def grouped_secret(self) -> str:
        return totp.group_secret(self.secret)

    @property
    def key_lines(self) -> tuple[str, ...]:
        """The key for manual entry: groups of four, four groups a line."""
        groups = self.grouped_secret.split(" ")
        return tuple(" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4))


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    outcome: Outcome
    recovery_codes: tuple[str, ...] = ()
    session: Session | None = None  # a full session when enrollment was the login's last step
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Rollout:
    total: int
    activated: int
    pending: int
    disabled: int

    @property
    def percent(self) -> float:
        return 100.0 * self.activated / self.total if self.total else 0.0
