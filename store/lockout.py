"""Lockout arithmetic: pure functions of the policy and the clock, no I/O.

Five consecutive failures lock an account for 5 minutes; each further lock before a success
lasts twice as long, up to 60 minutes. The store applies this schedule in one conditional
statement per failure (store.sql), so processes and hosts counting at once never lose a count.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .models import Policy


def lock_schedule(policy: Policy) -> tuple[int, ...]:
    """Seconds of the first, second, ... lock; the last entry (the cap) repeats from there on."""
    seconds, minutes = [], policy.lock_minutes
    while minutes < policy.lock_cap_minutes:
        seconds.append(minutes * 60)
        minutes *= 2
    seconds.append(policy.lock_cap_minutes * 60)
    return tuple(seconds)


def lock_seconds(previous_locks: int, policy: Policy) -> int:
    """How long the next lock lasts after `previous_locks` locks without a success in between."""
    schedule = lock_schedule(policy)
    return schedule[min(previous_locks, len(schedule) - 1)]


def locked_until(until: float | None, now: float) -> datetime | None:
    """The end of a lock still running at `now`, or None."""
    return datetime.fromtimestamp(until, UTC) if until is not None and until > now else None
