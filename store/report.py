"""Rollout numbers for the Rollout tab and `mfa-console report`: pure functions, no I/O.

Definitions (one place, so the dashboard and the command line cannot differ):

- Only *active* accounts count: a deactivated user is out of the rollout (as `Service.rollout`).
- Statuses are the users' current ones; Disabled means 2FA is turned off for the contact center.
- percent = 100 * activated / users, 0 when there are none; `floor_percent` rounds it down for
  display, so 100% means everyone and 99.96% shows as 99.9%.
- Days are UTC calendar days; "today" is the UTC day of `now`, which must be timezone-aware.
- An activation is an Activated user's `activated_at`. History is rebuilt from the current
  records, not from a log: a user whose 2FA was reset (activated_at cleared) or who was
  deactivated no longer counts on any day. An Activated user without `activated_at` counts as
  activated before every day shown; one dated after today (a clock ahead) counts on today. So
  the series always ends at the overall count.
- Activated today / in the last 7 days: activations on today / on today and the 6 days before
  (the daily series' last bar / last 7 bars).
- A day's cumulative percent: those activated by its end, over the *current* active total.
- Days pending: whole 24-hour periods since `pending_since` (account creation or the last 2FA
  reset), rounded down; 0 on the first day, and for a time in the future.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter

from .models import Status, User

NO_TEAM = "(no team)"  # how a user without a team is shown; their team key is ""


@dataclass(frozen=True, slots=True)
class Overall:
    total: int
    activated: int
    pending: int
    disabled: int
    activated_today: int
    activated_7d: int  # today and the 6 days before: the last 7 bars of the daily series

    @property
    def percent(self) -> float:
        return _percent(self.activated, self.total)


@dataclass(frozen=True, slots=True)
class TeamRow:
    team: str  # "" for users without a team
    users: int
    activated: int
    pending: int
    disabled: int

    @property
    def label(self) -> str:
        return self.team or NO_TEAM

    @property
    def percent(self) -> float:
        return _percent(self.activated, self.users)


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    activations: int  # Activated users whose activation falls on this day
    activated: int  # Activated users activated by this day's end
    percent: float  # activated, as a percent of today's total of active accounts


@dataclass(frozen=True, slots=True)
class ChaseRow:
    user: User
    days: int | None  # days pending; None when pending_since is unknown

    @property
    def team(self) -> str:
        return self.user.team or ""


def overall(users: Iterable[User], now: datetime) -> Overall:
    today = _day_start(now)
    week = today - timedelta(days=6)
    total = activated = pending = disabled = today_count = week_count = 0
    for u in users:
        if not u.active:
            continue
        total += 1
        status = u.status
        if status is Status.ACTIVATED:
            activated += 1
            at = u.activated_at
            if at is not None and at >= week:  # after today counts as today (see above)
                week_count += 1
                today_count += at >= today
        elif status is Status.PENDING:
            pending += 1
        else:
            disabled += 1
    return Overall(total, activated, pending, disabled, today_count, week_count)


def teams(users: Iterable[User]) -> tuple[TeamRow, ...]:
    """One row per team, furthest behind first: lowest percent, then most Pending, then by name."""
    counts = Counter((u.team, u.status) for u in users if u.active)
    by_team: dict[str, dict[Status, int]] = {}
    for (team, status), n in counts.items():
        by_team.setdefault(team or "", dict.fromkeys(Status, 0))[status] += n
    rows = [
        TeamRow(team, sum(c.values()), c[Status.ACTIVATED], c[Status.PENDING], c[Status.DISABLED])
        for team, c in by_team.items()
    ]
    rows.sort(key=lambda r: (r.percent, -r.pending, r.label.casefold(), r.team))
    return tuple(rows)


def daily(users: Iterable[User], now: datetime, days: int = 30) -> tuple[Day, ...]:
    """The last `days` UTC days, oldest first, today last."""
    if days < 1:
        raise ValueError("days: at least 1")
    first = _day_start(now) - timedelta(days=days - 1)
    per_day = [0] * days
    before = total = 0  # activated before the first day (or undated); active accounts
    for u in users:
        if not u.active:
            continue
        total += 1
        if u.status is not Status.ACTIVATED:
            continue
        at = u.activated_at
        if at is None or at < first:
            before += 1
        else:
            per_day[min((at - first).days, days - 1)] += 1
    series = []
    running = before
    for i, count in enumerate(per_day):
        running += count
        series.append(Day((first + timedelta(days=i)).date(), count, running, _percent(running, total)))
    return tuple(series)


def chase(users: Iterable[User], now: datetime, team: str | None = None) -> tuple[ChaseRow, ...]:
    """Pending users, longest pending first (then by username; unknown pending_since last).

    `team`: only that team ("" for users without one); None for all teams.
    """
    _aware(now)
    dated: list[User] = []
    undated: list[User] = []
    for u in users:
        if u.active and u.status is Status.PENDING and (team is None or (u.team or "") == team):
            (undated if u.pending_since is None else dated).append(u)
    by_name = lambda u: u.username.casefold()  # noqa: E731
    dated.sort(key=by_name)
    dated.sort(key=attrgetter("pending_since"))  # stable: equal times stay by username
    undated.sort(key=by_name)
    rows = [ChaseRow(u, max((now - u.pending_since).days, 0)) for u in dated]
    rows += (ChaseRow(u, None) for u in undated)
    return tuple(rows)


def percent_label(part: int, whole: int) -> str:
    """The percent as every view shows it: "57%", rounded down."""
    return f"{floor_percent(part, whole):.0f}%"


def floor_percent(part: int, whole: int, decimals: int = 0) -> float:
    """The percent for people, rounded *down* (in integers): 100 only when everyone is done."""
    if not whole:
        return 0.0
    scale = 10**decimals
    return 100 * scale * part // whole / scale


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (a naive time would be read as local time)")
    return now


def _day_start(now: datetime) -> datetime:
    """00:00 UTC on `now`'s UTC day."""
    return _aware(now).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
