"""Errors the service raises. Each carries a one-line message fit to show a person."""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base class: anything the store refuses, with a message for people."""


class StoreMissing(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class JsonLayout(StoreError):
    """The file is a store in the JSON layout of earlier versions (store/legacy.py moves it)."""


class StoreBusy(StoreError):
    """Another process held the store longer than the bounded wait (store.sql.BUSY_SECONDS)."""


class StoreUnreachable(StoreError):
    """The database server did not answer (PostgreSQL): nothing was changed; the next call tries again."""


class KeyFileError(StoreError):
    pass


class PermissionDenied(StoreError):
    pass


class PolicyError(StoreError):
    pass


class UnknownUser(StoreError):
    pass


class InvalidInput(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ImportRejected(StoreError):
    """A CSV import with bad rows: nothing was written."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{problems(len(errors))} in the file; nothing imported")


def problems(count: int) -> str:
    return f"{count} problem{'' if count == 1 else 's'}"
