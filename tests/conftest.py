"""Fixtures: every test gets its own store folder; nothing touches the user's real data.

A module that sets `ON_BOTH_ENGINES = True` runs each of its tests that uses a store twice: on
SQLite (a file) and on PostgreSQL (a schema of its own in the run's server, tests/postgres.py);
`@pytest.mark.sqlite_only` keeps a test about the file itself to SQLite, and
`@pytest.mark.both_engines` runs one test of another module on both.

What the tests share besides fixtures (the clock, codes, the app factory...) is in tests/support.py.
"""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
from pathlib import Path

import pytest

from store import crypto
from store.demo import build_demo
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from tests import postgres
from tests.support import T0, FakeClock, Screenshots

ENGINES = ("sqlite", "postgresql")

# -- how the suite is spread over pytest-xdist's workers ------------------------------------------
# The project runs `-n 6 --dist loadfile`: a third of a dashboard test's time is waiting, so six
# workers on 2 cores finish first (129 s here, where 5 took 144 s and 4 took 153 s). Whole files
# are too coarse: the command line's tests alone are a minute of subprocesses, and one worker
# would still run them after the others are done. So a file is split test by test, unless it is
# listed here (its tests share a module-scoped fixture worth building once); and tests marked
# `heavy` are handed out first.
KEEP_TOGETHER = ("tests/store/test_scale.py",)


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: seconds of work; started first so that it does not run alone at the end")
    config.addinivalue_line("markers", "sqlite_only: about the SQLite file itself; not run on PostgreSQL")
    config.addinivalue_line("markers", "both_engines: run on SQLite and PostgreSQL, in a module that does not")
    # The processes the tests start (hundreds: the command line, the service) run as installed:
    # compiled once, their bytecode cached, not compiled again each time.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # One server for the run, started by the controller (xdist's workers inherit the variable).
    if not hasattr(config, "workerinput") and not os.environ.get(postgres.URL_VARIABLE):
        config.pg_server = postgres.Server()
        os.environ[postgres.URL_VARIABLE] = config.pg_server.url


def pytest_unconfigure(config):
    server = getattr(config, "pg_server", None)
    if server is not None:
        server.stop()
        del os.environ[postgres.URL_VARIABLE]


def pytest_generate_tests(metafunc):
    both = getattr(metafunc.module, "ON_BOTH_ENGINES", False) or metafunc.definition.get_closest_marker("both_engines")
    if "engine" in metafunc.fixturenames and both and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("engine", ENGINES, indirect=True)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: otherwise as collected


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for on the command line: xdist's own
    from xdist.scheduler import LoadFileScheduling

    class TestByTest(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if file in KEEP_TOGETHER else nodeid

    return TestByTest(config, log)


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
def engine(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def paths(tmp_path, engine) -> StorePaths:
    folder = tmp_path / "store"
    if engine == "sqlite":
        yield StorePaths(db=folder / "store.db", key=folder / "store.key")
        return
    with postgres.store_schema() as url:
        folder.mkdir(mode=0o700)  # the key stays a file of this host
        yield StorePaths(db=url, key=folder / "store.key")


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


@pytest.fixture(scope="session")
def demo_100k(tmp_path_factory) -> Path:
    """The folder of the demo contact center at 100,000 users (`build_demo` at T0, its three logins
    Pending), built once for the whole run: xdist's workers share it (seconds of work each time).
    Never used in place: `copy_store` it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder = root / "demo-100k"
    with open(root / "demo-100k.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the others wait for it
        if not (folder / "built").exists():
            folder.mkdir(mode=0o700, exist_ok=True)
            build_demo(StorePaths(folder / "store.db", folder / "store.key"), users=100_000, actor="tester",
                       now=T0).close()  # fmt: skip
            (folder / "built").touch()
    return folder


@pytest.fixture
def screenshots(snapshot, request) -> Screenshots:
    """Several SVG snapshots in one test (see Screenshots); `screenshots.check()` at its end."""
    return Screenshots(snapshot, request)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only), unmounted however the test ends."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], check=True)
    yield mount
    gc.collect()  # any connection a failed call left for the collector
    subprocess.run(["umount", "-l", str(mount)], check=True)
