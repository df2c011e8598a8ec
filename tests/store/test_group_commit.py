"""Group commit (store.sql.common.Database.write): writes queued behind one another share one
transaction and one commit; each keeps its own changes or none, and none returns before the
commit. On both engines.

A batch is made on purpose: the first write holds its block open until the others are queued
behind it (`in_one_batch`), as the service's threads are when checks arrive at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from store.errors import StoreError
from store.models import AuditEvent
from store.validation import username_key
from tests.support import PERIOD, enroll, query

ON_BOTH_ENGINES = True


def event(name: str) -> AuditEvent:
    return AuditEvent(datetime.now(UTC), "tester", "batch.test", None, "ok", name)


def recorded(paths) -> list[str]:
    """The test events in the store, as another program reads it (committed only)."""
    return sorted(d for (d,) in query(paths.db, "SELECT detail FROM audit WHERE action = 'batch.test'")[1])


def in_one_batch(db, first: Callable, *others: Callable) -> list:
    """Each callable's result (or what it raised), each run in a write of its own thread: the
    first holds its block open until all the others are queued behind it."""
    results: list = [None] * (1 + len(others))
    held = threading.Event()

    def write(i: int, body: Callable) -> None:
        try:
            with db.write() as w:
                results[i] = body(w)
                if i == 0:
                    held.set()
                    deadline = time.monotonic() + 10
                    while db._queued < len(others) and time.monotonic() < deadline:
                        time.sleep(0.001)
        except Exception as exc:  # noqa: BLE001 -- what a write raised is its result here
            results[i] = exc

    threads = [threading.Thread(target=write, args=(0, first))]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=write, args=(i, body)) for i, body in enumerate(others, 1)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def commits(service, monkeypatch) -> list[int]:
    """The store's commits, counted: each entry the number of writes that had returned by then."""
    db, counted = service.db, []
    real = db._commit
    monkeypatch.setattr(db, "_commit", lambda writer: (real(writer), counted.append(1)))
    return counted


def test_queued_writes_share_one_commit_and_a_failed_one_keeps_nothing(service, paths, commits):
    def fails(w):
        w.record([event("b")])
        raise ValueError("refused")

    results = in_one_batch(service.db, lambda w: w.record([event("a")]), fails, lambda w: w.record([event("c")]))
    assert isinstance(results[1], ValueError) and results[0] is None and results[2] is None
    assert recorded(paths) == ["a", "c"]  # b's event undone alone, in its savepoint
    assert len(commits) == 1
    with service.db.write() as w:  # a write with none queued behind it commits at once
        w.record([event("d")])
    assert recorded(paths) == ["a", "c", "d"] and len(commits) == 2


def test_a_failed_commit_fails_every_write_of_the_batch(service, paths, monkeypatch, engine):
    db = service.db
    error = sqlite3.OperationalError("disk I/O error") if engine == "sqlite" else psycopg.errors.DiskFull("disk full")
    real = db._commit

    def failing(writer):
        monkeypatch.setattr(db, "_commit", real)  # once
        raise error

    monkeypatch.setattr(db, "_commit", failing)
    results = in_one_batch(db, *(lambda w, n=n: w.record([event(n)]) for n in "abc"))
    assert all(isinstance(r, StoreError) for r in results), results
    assert recorded(paths) == []
    with db.write() as w:  # rolled back: the connection goes on
        w.record([event("d")])
    assert recorded(paths) == ["d"]


def test_one_code_accepted_once_within_a_batch(service, paths, clock):
    op = service.operator("tester")
    secret = enroll(service, op, "alice", clock)
    clock.advance(PERIOD)
    key, step = username_key("alice"), int(clock() // PERIOD)
    sealed = service.db.user(key).secret

    def accept(w):
        return w.accept_step(key, step, clock(), sealed_secret=sealed, login=False)

    assert secret and in_one_batch(service.db, accept, accept, accept) == [True, False, False]
    assert query(paths.db, "SELECT last_step FROM users WHERE key = ?", (key,))[1] == [(step,)]


def test_a_write_inside_a_write_is_refused(service):
    with service.db.write(), pytest.raises(RuntimeError, match="inside a write"), service.db.write():
        pass
