"""`mfa-console migrate --to`: a store copied to another engine (SQLite <-> PostgreSQL), then
compared with its copy user by user.

Rows move as they are stored: secrets stay sealed (to their user, under the same key file),
recovery codes stay hashes, authentication state (last accepted step, failures, locks) and the
audit log come along. The copy is made from one consistent read of the source, written in one
transaction (a target is whole or not there), and only into an empty target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import crypto, fs
from .errors import KeyFileError, StoreError
from .service import Service
from .sql import TABLES, Writer, create_store, is_url


@dataclass(frozen=True, slots=True)
class Migrated:
    target: str  # as messages show it
    counts: dict[str, int]  # rows copied, by table
    key: Path  # the key file the target is read with
    key_copied: bool  # written beside a new SQLite store (else: the source's, which hosts need a copy of)
    missed: int  # events recorded in the source after it was read: changes the copy does not have


def migrate(source: Service, to: str | Path, *, actor: str) -> Migrated:
    """Copies `source` to `to` (a new SQLite file or an empty PostgreSQL schema), then compares
    them user by user; the copy's audit log ends with the move (by `actor`, the OS user). A
    StoreError if the target is not empty or the two differ."""
    settings = source.db.settings()  # as a record; its row is compared with the copy's below
    master = crypto.load_key_file(source.paths.key)
    if crypto.SecretBox(master).check != settings.key_check:
        raise KeyFileError(f"key file {source.paths.key} does not belong to the store {source.db.name}")
    rows = source.db.tables()

    def populate(w: Writer) -> None:
        for table in TABLES:
            if table != "settings":  # written by create_store from `settings`
                w.copy_rows(table, rows[table])

    key, key_copied = source.paths.key, False
    if not is_url(to):
        to = Path(to).absolute()
        key = to.with_suffix(".key")
    with fs.new_folders(*(() if is_url(to) else (to.parent,))):  # those it makes go if the copy cannot be made
        if not is_url(to) and source.paths.key.absolute() != key:
            crypto.create_key_file(key, master)  # refuses to replace a key that is there
            key_copied = True
        try:
            target = create_store(to, settings, populate)
        except BaseException:
            if key_copied:
                key.unlink(missing_ok=True)
            raise
    try:
        _compare(rows, target.tables(), target.name)
        with target.write() as w:
            w.record([source._event(f"os:{actor}", "store.migrated", None, "ok", f"copied from {source.db.name}")])
        name = target.name
    finally:
        target.close()
    copied_head = max((row[0] for row in rows["audit"]), default=0)
    missed = source.db.audit_head() - copied_head  # every change records an event
    return Migrated(name, {table: len(rows[table]) for table in TABLES}, key, key_copied, missed)


def _compare(source: dict[str, list[tuple]], target: dict[str, list[tuple]], name: str) -> None:
    """Every user's row identical (each column), then the other tables'."""
    mine, theirs = ({row[0]: row for row in rows["users"]} for rows in (source, target))
    differ = sorted(key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key))
    if differ:
        raise StoreError(f"the copy in {name} differs from the store for {len(differ)} users (first: "
                         f"{differ[0]!r}); do not use it")  # fmt: skip
    for table in TABLES:
        if table != "users" and sorted(source[table]) != sorted(target[table]):
            raise StoreError(f"the copy in {name} differs from the store in its {table}; do not use it")

