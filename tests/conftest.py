"""Fixtures: every test gets its own store folder; nothing touches the user's real data."""

from __future__ import annotations

import pytest

from store import crypto
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service

T0 = 1_796_000_000.0  # a fixed instant, 2026-11-30 00:53:20 UTC: 20 s into a 30 s TOTP step


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch):
    """scrypt at N=2^10 for passwords hashed inside a test process (~50 ms less each).

    Hashes record their own cost, so checking is unchanged; a test checks that the real
    command line writes the full cost. Subprocesses use the real one.
    """
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**10)
    monkeypatch.setattr(crypto, "MIN_SCRYPT_N", 2**10)
    crypto._dummy_hash.cache_clear()
    yield
    crypto._dummy_hash.cache_clear()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """The default data folder and the store variables point into tmp_path."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MFA_CONSOLE_DB", raising=False)
    monkeypatch.delenv("MFA_CONSOLE_KEY", raising=False)


@pytest.fixture
def paths(tmp_path) -> StorePaths:
    return StorePaths(db=tmp_path / "store" / "store.db", key=tmp_path / "store" / "store.key")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(paths, clock) -> Service:
    """A store with an admin, a supervisor and two agents, all with passwords, all Pending."""
    svc = Service.create(paths, issuer="Acme Contact Center", actor="tester", clock=clock)
    op = svc.operator("tester")
    for username, role in (("ada", Role.ADMIN), ("sam", Role.SUPERVISOR), ("alice", Role.AGENT), ("bob", Role.AGENT)):
        svc.add_user(op, NewUser(username, username.title(), role, team="Billing"), password=f"{username}-password")
    yield svc
    svc.close()
