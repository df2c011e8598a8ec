"""Typed records that cross the service boundary. Secrets never appear here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


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


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user to add (from the CLI, the dashboard or a CSV row)."""

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
