"""The Users grid's search, filters and sort at size, against a brute-force filter of the same users.

The grid filters from a per-snapshot index and refines the previous result when a query grows,
so every answer is checked here against the plain definition: the query, case-folded, is in
"username, name, team", the status and the team match, and rows are by username (or the chosen
column, equal values by username).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from textual.widgets import Input

from store.demo import build_demo
from store.models import Role, Status, User
from store.service import Service
from tests.support import activate, code, copy_store, make_app, screen_text, settle, sign_in
from tui.screens.main import MainScreen
from tui.widgets.rollout import RolloutView
from tui.widgets.user_grid import COLUMNS, Filter, UserGrid, UserIndex

SIZE = (80, 24)
USERS = 3000


class Brute:
    """What the grid must show of `users`, by the plain definition above.

    Each user's search text is case-folded once and each order made once: filtering a list keeps
    its order, so sorting all the users and then filtering gives the rows that filtering and then
    sorting would (both sorts are stable).
    """

    def __init__(self, users):
        self.users = list(users)
        self.texts = [f"{u.username}\n{u.name}\n{u.team or ''}".casefold() for u in self.users]
        self.orders: dict[tuple[int, bool], list[int]] = {}

    def order(self, column: int, reverse: bool) -> list[int]:
        if (column, reverse) not in self.orders:
            users = self.users
            positions = sorted(range(len(users)), key=lambda i: users[i].username.casefold())
            if column or reverse:
                positions.sort(key=lambda i: COLUMNS[column].sort_key(users[i]), reverse=reverse)  # equal: by username
            self.orders[column, reverse] = positions
        return self.orders[column, reverse]

    def __call__(self, query: str = "", status: Status | None = None, team: str | None = None, column: int = 0,
                 reverse: bool = False) -> list[str]:  # fmt: skip
        q = query.strip().casefold()
        users, texts = self.users, self.texts
        return [users[i].username for i in self.order(column, reverse)
                if q in texts[i] and (status is None or users[i].status is status)
                and (team is None or (users[i].team or "") == team)]  # fmt: skip


def shown(pilot) -> list[str]:
    return [u.username for u in pilot.app.screen.query_one(UserGrid).rows]


async def to_search(pilot) -> None:
    """`/`, a pause (the box takes the focus: letters after it are text, not key bindings), then
    `end`: the box selects its text on focus, and the next letter would replace it."""
    await pilot.press("slash")
    await pilot.pause()
    await pilot.press("end")


@pytest.fixture
def big_store(paths, clock) -> str:
    """The demo contact center at USERS users, its admin enrolled; returns the admin's secret."""
    build_demo(paths, users=USERS, actor="tester", now=clock()).close()
    service = Service(paths, clock=clock)
    secret = activate(service, "admin", clock)
    service.close()
    return secret


async def signed_in_admin(pilot, paths, clock, secret) -> tuple[User, ...]:
    """Signs in as the demo admin; the users as the store has them now (another reader)."""
    await sign_in(pilot, "admin", "demo-admin", code(secret, clock))
    assert isinstance(pilot.app.screen, MainScreen)
    other = Service(paths, clock=clock)
    users = other.list_users(other.operator("tester"))
    other.close()
    assert len(users) == USERS
    return users


@pytest.mark.heavy
async def test_typing_deleting_and_filters_always_show_the_brute_force_result(paths, clock, big_store):
    async with make_app(paths, clock, poll_seconds=60).run_test(size=SIZE) as pilot:
        brute = Brute(await signed_in_admin(pilot, paths, clock, big_store))
        assert shown(pilot) == brute()
        search = pilot.app.screen.query_one("#search", Input)

        async def typed(*keys: str, status: Status | None = None, team: str | None = None) -> None:
            await pilot.press(*keys)
            expected = brute(search.value, status, team)
            assert shown(pilot) == expected, (search.value, status, team)
            count = len(expected)
            assert f"Showing {count:,} of {USERS:,}" in screen_text(pilot.app)

        await to_search(pilot)
        for key in "kim":  # each key refines the result before it
            await typed(key)
        await typed("backspace")  # "ki": back to a wider result
        await typed("M")  # "kiM": case does not matter
        await typed("backspace", "backspace", "backspace")  # "": everyone
        for key in ("a", "n", "a", " ", "s"):  # "ana s": across the username's dot, into the name
            await typed(key)
        for _ in range(5):
            await typed("backspace")
        await typed(*"SALES")  # a team's name matches too

        # Status filters combined with the query: Enter leaves the box, `f` cycles, `/` goes back.
        for status in (Status.PENDING, Status.ACTIVATED, Status.DISABLED, None):
            await pilot.press("enter", "f")
            assert shown(pilot) == brute(search.value, status)
            await to_search(pilot)
            await typed("backspace", status=status)
            await typed("s", status=status)
        await pilot.press("escape")  # clears and hides the search
        assert search.value == "" and shown(pilot) == brute()

        # A team chosen on the Rollout tab, then a search and a status within it.
        await pilot.press("1")
        await settle(pilot)
        view = pilot.app.screen.query_one(RolloutView)
        view.teams.cursor = [row.team for row in view.teams.rows].index("Night Shift")
        await pilot.press("enter")
        await settle(pilot)
        assert shown(pilot) == brute(team="Night Shift")
        await to_search(pilot)
        for key in "li":
            await typed(key, team="Night Shift")
        await pilot.press("enter", "f", "f")
        assert shown(pilot) == brute("li", Status.ACTIVATED, "Night Shift")


async def test_sorting_keeps_the_filter_and_the_selected_user(paths, clock, big_store):
    async with make_app(paths, clock, poll_seconds=60).run_test(size=SIZE) as pilot:
        brute = Brute(await signed_in_admin(pilot, paths, clock, big_store))
        grid = pilot.app.screen.query_one(UserGrid)
        await to_search(pilot)
        await pilot.press(*"ma", "enter")
        expected = brute("ma")
        grid.cursor = len(expected) // 2
        chosen = grid.selected.username
        await pilot.press("s")  # by name: the order is made in a thread
        await settle(pilot)
        assert shown(pilot) == brute("ma", column=1)
        assert grid.selected.username == chosen
        await pilot.press("S")  # reversed
        await settle(pilot)
        assert shown(pilot) == brute("ma", column=1, reverse=True)
        await to_search(pilot)
        await pilot.press("r")  # text in the box, not "Reset 2FA"
        assert shown(pilot) == brute("mar", column=1, reverse=True)
        if chosen in shown(pilot):
            assert grid.selected.username == chosen


def _people(rng: random.Random, count: int) -> list[User]:
    first = ["Ana", "Anaïs", "Ben", "Björn", "Kim", "Kimberly", "Straße", "ÉLODIE", "Li", "Mar"]
    last = ["Kim", "Silva", "Okafor", "Marín", "Lee", "Ma", "Ng", "STRASSER"]
    teams = ["Sales", "Night Shift", "Tech Support", "", None]
    people = []
    for i in range(count):
        f, la = rng.choice(first), rng.choice(last)
        people.append(User(f"{f}.{la}.{i}".lower(), f"{f} {la}", Role.AGENT, rng.choice(list(Status)),
                           team=rng.choice(teams)))  # fmt: skip
    rng.shuffle(people)
    return people


@pytest.mark.parametrize("column, reverse", [(0, False), (0, True), (1, False), (3, True), (4, False)])
def test_every_result_of_a_long_session_of_typing_matches_the_brute_force(column, reverse):
    """Thousands of keystrokes on the index itself: extensions, deletions, pastes, case, filters."""
    rng = random.Random(column * 2 + reverse)
    users = _people(rng, 1500)
    brute = Brute(users)
    order = UserIndex(users).order(column, reverse)
    haystacks = [f"{u.username}\n{u.name}\n{u.team or ''}" for u in users]
    query, status, team = "", None, None
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.45 and len(query) < 8:
            query += rng.choice("aAbeiIklmnrsSß. ")
        elif roll < 0.7:
            query = query[: -rng.randint(1, 3)]
        elif roll < 0.8:  # a paste: part of someone's search text
            text = rng.choice(haystacks)
            start = rng.randrange(len(text))
            query = text[start : start + rng.randint(1, 6)]
        elif roll < 0.9:
            status = rng.choice([None, *Status])
        else:
            team = rng.choice([None, "", "Sales", "Night Shift", "Nobody's"])
        wanted = Filter(query.strip().casefold(), status, team)
        got = [order.users[p].username for p in order.select(wanted)]
        assert got == brute(query, status, team, column, reverse), (query, status, team)
    assert order.position(users[7].username) == [u.username for u in order.users].index(users[7].username)
    assert order.position("nobody") is None


CHANGES_IN_PLACE = {  # what a change touches, and the kept orders it leaves in place
    "a sign-in": (lambda u, i: replace(u, last_login_at=datetime(2026, 1, 1 + i % 28, tzinfo=UTC)), {(1, True), (3, False)}),
    "a reset": (lambda u, i: replace(u, status=Status.PENDING if u.status is Status.ACTIVATED else Status.ACTIVATED), {(1, True)}),
    "a new name": (lambda u, i: replace(u, name=f"Zoë Renamed {i}", team="Night Shift"), {(3, False)}),
}


@pytest.mark.parametrize("change", CHANGES_IN_PLACE)
def test_the_index_after_a_change_in_place_is_the_one_made_anew(change):
    """The snapshot after a few users changed in place patches the orders where those users keep
    their places (a sort at 100k users takes ~80 ms), and shows exactly what a new index shows."""
    remake, kept = CHANGES_IN_PLACE[change]
    rng = random.Random(len(change))
    users = _people(rng, 1500)
    previous = UserIndex(users)
    for sort in ((1, True), (3, False)):  # the orders an index keeps (ORDERS_KEPT)
        previous.order(*sort).prepare()
    changed = rng.sample(range(len(users)), 5)
    after = list(users)
    for i in changed:
        after[i] = remake(users[i], i)
    index = UserIndex.following(previous, tuple(after))
    assert {sort for sort in ((1, True), (3, False)) if index.cached(*sort)} == kept
    brute = Brute(after)
    for sort in ((0, False), (1, True), (3, False), (6, True)):
        order = index.order(*sort)
        assert [u.username for u in order.users] == brute(column=sort[0], reverse=sort[1])
        assert order.users == UserIndex(after).order(*sort).users  # the new records, not the old
        for query, status in (("", Status.PENDING), ("zoë", None), ("night", Status.ACTIVATED), ("an", None)):
            got = [order.users[p].username for p in order.select(Filter(query, status))]
            assert got == brute(query, status, None, *sort), (sort, query, status)


@pytest.mark.heavy
async def test_at_100k_users_the_grid_opens_filters_and_follows_another_process(paths, clock, demo_100k):
    copy_store(demo_100k, paths)  # build_demo(paths, users=100_000, actor="tester", now=clock()), made once a run
    service = Service(paths, clock=clock)
    secret = activate(service, "admin", clock)
    async with make_app(paths, clock, poll_seconds=0.2).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "admin", "demo-admin", code(secret, clock))
        brute = Brute(service.list_users(service.operator("tester")))
        assert shown(pilot) == brute()
        await to_search(pilot)
        for key in "kim":
            await pilot.press(key)
            assert shown(pilot) == brute(pilot.app.screen.users_view.search)
        await pilot.press("backspace", "enter", "f")  # "ki", Pending only
        assert shown(pilot) == brute("ki", Status.PENDING)
        target = next(u.username for u in brute.users if u.status is Status.PENDING and "ki" in u.username)
        clock.advance(1)
        other = Service(paths, clock=clock)  # another session enrolls one of those shown
        activate(other, target, clock)
        other.close()
        for _ in range(100):
            await pilot.pause(0.05)
            if target not in shown(pilot):
                break
        assert shown(pilot) == Brute(service.list_users(service.operator("tester")))("ki", Status.PENDING)
    service.close()
