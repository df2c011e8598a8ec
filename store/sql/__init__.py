"""Every SQL statement of mfa-console, and the engines that run them.

The service sees records (`Settings`, `UserRecord`, `UserSummary`, `AuditEvent`) through a
`Database` and the `Writer` of a transaction; only this package knows tables, columns and
statements. A store is a file (SQLite, store/sql/sqlite.py) or a PostgreSQL database named by a
URL (store/sql/postgres.py); psycopg loads only for the latter.

On both engines:
- Security state changes in single conditional statements whose row count or RETURNING tells
  whether this caller won: accepting a time step, counting a failure, spending a recovery code.
  Correct across processes and hosts, with no lock of our own and no read-modify-write in Python.
- A change and the audit events that record it commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..records import Settings
from .common import SCHEMA_VERSION, TABLES, Database, UserSummary, Writer, recovery_column
from .urls import is_url, redact

__all__ = ["SCHEMA_VERSION", "TABLES", "Database", "UserSummary", "Writer", "create_store", "is_url", "open_store",
           "recovery_column", "redact"]  # fmt: skip


def open_store(location: str | Path) -> Database:
    if is_url(location):
        from .postgres import PostgresDatabase

        return PostgresDatabase.open(location)
    from .sqlite import SQLiteDatabase

    return SQLiteDatabase.open(Path(location))


def create_store(location: str | Path, settings: Settings, populate: Callable[[Writer], None]) -> Database:
    """A new store holding `settings` and what `populate` writes, whole or not at all."""
    if is_url(location):
        from .postgres import PostgresDatabase

        return PostgresDatabase.create(location, settings, populate)
    from .sqlite import SQLiteDatabase

    return SQLiteDatabase.create(Path(location), settings, populate)
