"""SVG snapshots of the dashboard at 80x24, from fixed data and a frozen clock."""

from __future__ import annotations

import pytest

from store.demo import SeedUser
from store.models import NewUser, PolicyMode, Role
from store.service import Service
from tests.conftest import T0
from tests.helpers import code
from tests.tuihelpers import enroll, sign_in
from tui.app import MfaConsoleApp

DAY = 86400
PEOPLE = [
    ("ana.silva", "Ana Silva", Role.AGENT, "Billing", 30, 12),
    ("ben.okafor", "Ben Okafor", Role.AGENT, "Billing", 30, None),
    ("chloe.tanaka", "Chloe Tanaka", Role.SUPERVISOR, "Sales", 40, 20),
    ("diego.costa", "Diego Costa", Role.AGENT, "Sales", 25, None),
    ("elena.rossi", "Elena Rossi", Role.AGENT, "Tech Support", 50, 3),
    ("farid.haddad", "Farid Haddad", Role.AGENT, "Tech Support", 20, 1),
    ("grace.kim", "[bold]Grace[/bold] Kim", Role.AGENT, "Retention", 15, None),
]


@pytest.fixture
def snapshot_store(service: Service, clock):
    """conftest's four users plus seven with a history; ada (admin) is enrolled."""
    op = service.operator("tester")
    service.seed_users(
        op,
        [
            SeedUser(NewUser(u, n, r, team=t), T0 - c * DAY, T0 - a * DAY if a else None, T0 - a * DAY / 2 if a else None)
            for u, n, r, t, c, a in PEOPLE
        ],
    )
    return enroll(service, "ada", clock)


def app_for(paths, clock, **kwargs) -> MfaConsoleApp:
    # A slow poll: the snapshot is taken from the first load, with nothing moving underneath.
    return MfaConsoleApp(paths, clock=clock, poll_seconds=60, **kwargs)


def test_login_screen(snap_compare, paths, service, clock):
    assert snap_compare(app_for(paths, clock, demo=True), terminal_size=(80, 24))


def test_users_tab(snap_compare, paths, snapshot_store, clock):
    async def run_before(pilot):
        await sign_in(pilot, "ada", "ada-password", code(snapshot_store, clock))

    assert snap_compare(app_for(paths, clock), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("mode", [PolicyMode.MANDATORY, PolicyMode.OPTIONAL])
def test_security_tab(snap_compare, paths, service, snapshot_store, clock, mode):
    service.set_mode(service.operator("tester"), mode)

    async def run_before(pilot):
        await sign_in(pilot, "ada", "ada-password", code(snapshot_store, clock))
        await pilot.press("3")
        await pilot.pause()

    assert snap_compare(app_for(paths, clock), terminal_size=(80, 24), run_before=run_before)
