"""The audit log: one JSON line an event, appended to a file beside the store.

Appending costs the same however long the log is, so it never slows user writes down. Callers
append while holding the store's lock, so lines from several processes never interleave. A line
torn by a crash is skipped on reading, and the next append starts on a fresh line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from .models import AuditEvent

_CHUNK = 1 << 20


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, events: Iterable[AuditEvent]) -> None:
        lines = b"".join(orjson.dumps(_to_doc(e)) + b"\n" for e in events)
        if not lines:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                lines = b"\n" + lines
            os.write(fd, lines)
            os.fsync(fd)
        finally:
            os.close(fd)

    def version(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def newest(self) -> Iterator[AuditEvent]:
        """Every readable event, newest first, read from the end of the file a chunk at a time:
        the last screenful of a log of millions of lines costs what a short log does."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            for line in _lines_from_the_end(f):
                try:
                    yield _from_doc(orjson.loads(line))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line torn by a crash mid-append


def _lines_from_the_end(f: BinaryIO) -> Iterator[bytes]:
    end = f.seek(0, os.SEEK_END)
    partial = b""  # the start of the line the last chunk read ended in
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        lines = (f.read(end - start) + partial).split(b"\n")
        end = start
        partial = lines.pop(0) if start else b""
        yield from reversed(lines)


def _to_doc(event: AuditEvent) -> dict:
    return {
        "at": event.at.timestamp(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "detail": event.detail,
    }


def _from_doc(doc: dict) -> AuditEvent:
    return AuditEvent(
        at=datetime.fromtimestamp(doc["at"], UTC),
        actor=doc["actor"],
        action=doc["action"],
        target=doc["target"],
        outcome=doc["outcome"],
        detail=doc.get("detail"),
    )
