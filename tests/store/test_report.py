"""The rollout numbers (store/report.py) against values worked out by hand, and `mfa-console report`.

NOW is 2026-11-30 00:53:20 UTC, so "today" is 30 Nov and has run for 53 minutes; the 30-day
series starts on 1 Nov, the 7 days are 24-30 Nov.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from store import report
from store.demo import SeedUser
from store.models import NewUser, Role, Status
from store.paths import StorePaths
from store.service import Service
from tests.support import NOW, A, Cli, P, at, connect, people, person  # the hand-checked users


def test_overall_counts():
    o = report.overall(people(), NOW)
    # Active: Billing 4 + Sales 3 + no team 2 + Tech 4 = 13.
    # Activated: ben, ana, sam, sia, sol, ned, tia = 7; Pending: bea, bo, nia, tom, tao = 5; Disabled: ted = 1.
    assert (o.total, o.activated, o.pending, o.disabled) == (13, 7, 5, 1)
    assert o.percent == pytest.approx(100 * 7 / 13)  # 53.846...
    assert report.floor_percent(o.activated, o.total, 1) == 53.8  # 7000 // 13 = 538
    # Today: ben (00:43) and tia (dated tomorrow); xia (00:30) is deactivated.
    assert o.activated_today == 2
    # 24-30 Nov: ben, tia, ana (29th), sam (24th 00:00); not sia (23rd 23:00), sol (no date), ned.
    assert o.activated_7d == 4


def test_teams_furthest_behind_first():
    rows = report.teams(people())
    got = [(r.label, r.users, r.activated, r.pending, r.disabled) for r in rows]
    assert got == [
        ("Tech", 4, 1, 2, 1),  # 1/4 = 25%
        ("Billing", 4, 2, 2, 0),  # 2/4 = 50%, 2 Pending: ahead of "(no team)" at 50% with 1
        ("(no team)", 2, 1, 1, 0),  # 1/2 = 50%
        ("Sales", 3, 3, 0, 0),  # 100%
    ]
    assert [r.percent for r in rows] == [25.0, 50.0, 50.0, 100.0]
    assert rows[2].team == ""  # no "Ghost": its only user is deactivated


def test_teams_tied_on_percent_and_pending_go_by_name():
    users = [person(n, n, team, s) for n, team, s in
             (("a", "beta", A), ("b", "beta", P), ("c", "Alpha", A), ("d", "Alpha", P))]  # fmt: skip
    assert [r.team for r in report.teams(users)] == ["Alpha", "beta"]  # both 50%, 1 Pending: casefolded name


def test_daily_series_30_days():
    days = report.daily(people(), NOW, 30)
    assert len(days) == 30 and days[0].day == date(2026, 11, 1) and days[-1].day == date(2026, 11, 30)
    per_day = {d.day: d.activations for d in days if d.activations}
    # sia 23 Nov, sam 24 Nov, ana 29 Nov, ben and tia (ahead) 30 Nov.
    assert per_day == {date(2026, 11, 23): 1, date(2026, 11, 24): 1, date(2026, 11, 29): 1, date(2026, 11, 30): 2}
    # Before 1 Nov: sol (no date) and ned (15 Oct) = 2; then 2 -> 3 (23rd) -> 4 (24th) -> 5 (29th) -> 7 (30th).
    cumulative = {d.day: d.activated for d in days}
    assert cumulative[date(2026, 11, 1)] == 2 and cumulative[date(2026, 11, 22)] == 2
    assert cumulative[date(2026, 11, 23)] == 3
    assert cumulative[date(2026, 11, 24)] == cumulative[date(2026, 11, 28)] == 4
    assert cumulative[date(2026, 11, 29)] == 5
    assert cumulative[date(2026, 11, 30)] == 7  # the overall count: the series ends where the total is
    # Percent of today's 13 active accounts.
    assert days[0].percent == pytest.approx(100 * 2 / 13)
    assert days[-1].percent == pytest.approx(100 * 7 / 13)


def test_daily_series_7_days_matches_the_overall_7_days():
    days = report.daily(people(), NOW, 7)
    assert [d.day for d in days] == [date(2026, 11, 24) + timedelta(days=i) for i in range(7)]
    # Before 24 Nov: sol, ned, sia = 3; sam on the 24th, ana on the 29th, ben and tia on the 30th.
    assert [d.activations for d in days] == [1, 0, 0, 0, 0, 1, 2]
    assert [d.activated for d in days] == [4, 4, 4, 4, 4, 5, 7]
    assert sum(d.activations for d in days) == report.overall(people(), NOW).activated_7d


def test_day_boundaries_are_utc_midnight():
    late = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    other_zone = NOW.astimezone(datetime.now().astimezone().tzinfo)  # the same instant, any local zone
    users = [person("a", "a", None, A, activated=at("2026-11-30T00:00"))]
    assert report.overall(users, late).activated_today == 1
    assert report.overall(users, other_zone).activated_today == 1
    assert report.overall(users, late + timedelta(seconds=1)).activated_today == 0  # 1 Dec
    with pytest.raises(ValueError):
        report.overall(users, datetime(2026, 11, 30))  # naive: would be read as local time


def test_chase_longest_pending_first():
    rows = report.chase(people(), NOW)
    # nia 60 days; bea and tom both 9 (same time: by username); bo 0; tao unknown, last.
    assert [(r.user.username, r.days) for r in rows] == [
        ("nia.haddad", 60), ("bea.costa", 9), ("tom.walsh", 9), ("bo.chen", 0), ("tao.lopez", None),
    ]  # fmt: skip
    assert [r.user.username for r in report.chase(people(), NOW, team="Billing")] == ["bea.costa", "bo.chen"]
    assert [r.user.username for r in report.chase(people(), NOW, team="")] == ["nia.haddad"]
    assert report.chase(people(), NOW, team="Ghost") == ()  # deactivated users are not chased


def test_no_users():
    assert report.overall((), NOW) == report.Overall(0, 0, 0, 0, 0, 0)
    assert report.overall((), NOW).percent == 0.0 and report.teams(()) == () and report.chase((), NOW) == ()
    assert [d.percent for d in report.daily((), NOW, 3)] == [0.0, 0.0, 0.0]


def test_floor_percent_says_100_only_when_everyone_is_done():
    assert report.floor_percent(9999, 10000, 1) == 99.9  # 99.99 rounded would say 100.0
    assert report.floor_percent(2, 3) == 66.0 and report.floor_percent(2, 3, 1) == 66.6
    assert report.floor_percent(5, 5, 1) == 100.0 and report.floor_percent(0, 0) == 0.0


def test_report_of_100k_users_counts_each_one():
    """What the Rollout tab computes per snapshot, at 100k users (its speed is benchmarks/run.py's
    to measure, not a test's)."""
    base = people()
    users = tuple(person(f"u{i}", "U", base[i % 13].team, base[i % 13].status, activated=base[i % 13].activated_at,
                         pending=base[i % 13].pending_since) for i in range(100_000))  # fmt: skip
    statuses = Counter(u.status for u in users)
    big = report.overall(users, NOW)
    assert (big.total, big.activated, big.pending) == (100_000, statuses[Status.ACTIVATED], statuses[Status.PENDING])
    assert sum(row.users for row in report.teams(users)) == 100_000
    assert len(report.chase(users, NOW)) == statuses[Status.PENDING]


# -- the command line ---------------------------------------------------------------------------
DAY = 86400.0


@pytest.fixture
def cli_store(tmp_path) -> Cli:
    """6 active accounts (A: 2, B: 3, no team: 1) and a deactivated one, dated from the real clock.

    The CLI reads the real clock: every date is whole days before now, so "today" is never crossed.
    """
    cli = Cli(tmp_path)
    now = time.time()
    service = Service.create(StorePaths(cli.db, cli.key), issuer="Acme Contact Center", actor="tester")
    op = service.operator("tester")
    seeds = [
        ("a1", "A", now - 3 * DAY),  # in the last 7 days
        ("a2", "A", None),
        ("b1", "B", now - 10 * DAY),
        ("b2", "B", now - 40 * DAY),  # before the 30 days
        ("b3", "B", None),
        ("n1", None, None),
        ("x1", "A", now - 1 * DAY),  # deactivated below
    ]
    created = now - 60 * DAY
    service.seed_users(op, [SeedUser(NewUser(u, u.upper(), Role.AGENT, team=t), created, a, a) for u, t, a in seeds])
    service.set_active(op, "x1", False)
    service.close()
    return cli


def test_report_json(cli_store):
    doc = json.loads(cli_store.run("report", "--json", code=0).stdout)
    # 6 active: a1, b1, b2 Activated = 3 (50%); a2, b3, n1 Pending; x1 deactivated, not counted.
    assert doc["overall"] == {"total": 6, "activated": 3, "pending": 3, "disabled": 0, "percent": 50.0,
                              "activated_today": 0, "activated_last_7_days": 1}  # fmt: skip
    daily = doc["daily"]
    today = datetime.strptime(doc["generated_at"], "%Y-%m-%dT%H:%M:%SZ").date()
    assert len(daily) == 30 and daily[-1]["date"] == today.isoformat()
    # b2 is before the 30 days (1 = 16.6%), b1 lands 10 days back, a1 3 days back.
    assert daily[0]["activated"] == 1 and daily[0]["percent"] == 16.6  # 1000 // 6 = 166
    assert [i for i, d in enumerate(daily) if d["activations"]] == [29 - 10, 29 - 3]
    assert daily[-1]["activated"] == 3 and daily[-1]["percent"] == 50.0


def test_report_by_team_json(cli_store):
    doc = json.loads(cli_store.run("report", "--by", "team", "--json", code=0).stdout)
    assert doc["overall"]["total"] == 6 and "daily" not in doc
    assert doc["teams"] == [
        {"team": None, "users": 1, "activated": 0, "pending": 1, "disabled": 0, "percent": 0.0},
        {"team": "A", "users": 2, "activated": 1, "pending": 1, "disabled": 0, "percent": 50.0},
        {"team": "B", "users": 3, "activated": 2, "pending": 1, "disabled": 0, "percent": 66.6},  # 2/3, down
    ]


def test_report_csv(cli_store):
    rows = list(csv.DictReader(io.StringIO(cli_store.run("report", "--csv", code=0).stdout)))
    assert len(rows) == 1
    row = rows[0]
    assert row.pop("generated_at").endswith("Z")
    assert row == {"total": "6", "activated": "3", "pending": "3", "disabled": "0", "percent": "50.0",
                   "activated_today": "0", "activated_last_7_days": "1"}  # fmt: skip


def test_report_by_team_csv_and_disabled(cli_store):
    cli_store.run("policy", "set-mode", "optional", code=0)
    cli_store.run("policy", "disable", code=0)
    text = cli_store.run("report", "--by", "team", "--csv", code=0).stdout
    assert text.splitlines()[0] == "team,users,activated,pending,disabled,percent"
    rows = list(csv.DictReader(io.StringIO(text)))
    # 2FA off: everyone is Disabled, nobody Activated; ties at 0% go by Pending (0), then by name.
    assert [(r["team"], r["users"], r["activated"], r["disabled"], r["percent"]) for r in rows] == [
        ("", "1", "0", "1", "0.0"), ("A", "2", "0", "2", "0.0"), ("B", "3", "0", "3", "0.0"),
    ]  # fmt: skip


def test_report_csv_cells_are_text_whatever_the_store_holds(cli_store):
    """A team written around the service (another program with rights on the table, a damaged
    file) reaches a spreadsheet as text and a terminal without its escape sequences."""
    conn = connect(cli_store.db)
    conn.execute("UPDATE users SET team = '=HYPERLINK(\"http://x\")' || char(27) || ']0;PWNED' || char(7) WHERE team = 'B'")
    conn.close()
    text = cli_store.run("report", "--by", "team", "--csv", code=0).stdout
    assert "\x1b" not in text and "\x07" not in text
    teams = [row["team"] for row in csv.DictReader(io.StringIO(text))]
    assert "'=HYPERLINK(\"http://x\")?]0;PWNED?" in teams


def test_report_text(cli_store):
    lines = cli_store.run("report", "--by", "team", code=0).stdout.splitlines()
    assert lines[1] == "Activated 3 of 6 (50%) · Pending 3 · Disabled 0"
    assert lines[2] == "Activated today 0, in the last 7 days 1"
    assert lines[4].split() == ["TEAM", "USERS", "ACTIVATED", "PENDING", "DISABLED", "PERCENT"]
    assert lines[5].split() == ["(no", "team)", "1", "0", "1", "0", "0%"]


def test_report_exit_codes(cli_store, tmp_path):
    assert "not allowed with" in cli_store.fails("report", "--json", "--csv", code=2)
    cli_store.fails("report", "--by", "dept", code=2)
    cli_store.fails("report", "--db", str(tmp_path / "none.json"), code=2)
