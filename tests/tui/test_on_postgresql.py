"""The dashboard on a PostgreSQL store that other hosts share: their changes appear (LISTEN/NOTIFY,
no polling of the directory); a database that goes away is said once, the last data stays on
screen, and the dashboard catches up by itself when the database is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from tests.postgres import Proxy
from tests.support import activate, code, make_app, screen_text, settle, sign_in


@pytest.fixture
def engine() -> str:
    return "postgresql"


def add_elsewhere(paths: StorePaths, clock, username: str) -> None:
    """Another host's admin adds a user (a process of its own, its own connection)."""
    other = Service(paths, clock=clock)
    other.add_user(other.operator("elsewhere"), NewUser(username, username.title(), Role.AGENT))
    other.close()


async def until(pilot, shown: Callable[[str], bool], seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while not shown(text := screen_text(pilot.app)):
        assert time.monotonic() < deadline, text
        await settle(pilot, 1)
        await asyncio.sleep(0.05)
    return text


@pytest.mark.heavy
async def test_other_hosts_changes_appear_and_an_outage_is_said_once_then_healed(paths, service, clock):
    secret = activate(service, "ada", clock)
    proxy = Proxy(paths.db)
    through = StorePaths(db=proxy.url, key=paths.key)
    try:
        async with make_app(through, clock).run_test(size=(100, 30), notifications=True) as pilot:
            await sign_in(pilot, "ada", "ada-password", code(secret, clock))
            await pilot.press("2")
            add_elsewhere(paths, clock, "zed.elsewhere")
            await until(pilot, lambda text: "zed.elsewhere" in text)

            proxy.down()  # the database host is gone: connections cut, new ones refused
            text = await until(pilot, lambda text: "unreachable" in text)
            assert "zed.elsewhere" in text  # the last data read stays on screen
            add_elsewhere(paths, clock, "yan.meanwhile")  # missed while the listener was cut

            proxy.up()
            await until(pilot, lambda text: "answers again" in text)  # said for 5 s: looked for first
            await until(pilot, lambda text: "yan.meanwhile" in text)
    finally:
        proxy.down()
