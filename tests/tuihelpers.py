"""Helpers for driving the real dashboard with Pilot."""

from __future__ import annotations

from store.models import PolicyMode
from store.service import Service
from tests.helpers import enroll as enroll_as


def enroll(service: Service, username: str, clock) -> str:
    """Enrolls `username` as the operator; the clock moves to the next step (no replay later)."""
    secret = enroll_as(service, service.operator("tester"), username, clock)
    clock.advance(30 - clock() % 30)
    return secret


def make_optional(service: Service, enabled: bool = True) -> None:
    op = service.operator("tester")
    service.set_mode(op, PolicyMode.OPTIONAL)
    service.set_enabled(op, enabled)


async def settle(pilot, rounds: int = 3) -> None:
    """Lets workers finish and their results reach the screen."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def sign_in(pilot, username: str, password: str, otp: str | None = None) -> None:
    await settle(pilot)
    await pilot.press(*username)
    await pilot.press("enter")
    await pilot.press(*password)
    await pilot.press("enter")
    await settle(pilot)
    if otp is not None:
        await pilot.press(*otp)
        await pilot.press("enter")
        await settle(pilot)


def screen_text(app) -> str:
    """The screen as plain text, line by line (what a person reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


