"""The dashboard's import (`i`) reads its file as the command line does (store.csvio.read_import):
a FIFO or a device is refused at once in a notification, never a worker blocked for good or a
MemoryError."""

from __future__ import annotations

import asyncio
import os

import pytest
from textual.widgets import Input

from tests.support import activate, code, make_app, screen_text, settle, sign_in, store_state
from tui.screens.main import MainScreen

SIZE = (80, 24)


@pytest.mark.parametrize("kind", ["fifo", "device"])
async def test_an_import_of_a_fifo_or_a_device_is_refused_in_a_notification(paths, service, clock, tmp_path, kind):
    fifo = tmp_path / "users.csv"
    os.mkfifo(fifo, 0o600)
    path = fifo if kind == "fifo" else "/dev/zero"
    secret = activate(service, "ada", clock)
    try:
        async with make_app(paths, clock).run_test(size=SIZE, notifications=True) as pilot:
            await sign_in(pilot, "ada", "ada-password", code(secret, clock))
            assert isinstance(pilot.app.screen, MainScreen)
            before = store_state(paths.db)
            await pilot.press("i")
            await settle(pilot)
            pilot.app.screen.query_one("#prompt-input", Input).value = str(path)
            await pilot.press("enter")
            await asyncio.wait_for(settle(pilot), 10)
            assert "is not a regular file" in screen_text(pilot.app)
            assert store_state(paths.db) == before
    finally:  # a reader left blocked on the FIFO (the test failing) gets its end of file
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader: nobody to release
            pass
