"""Import and export of users: CSV both ways, JSON out."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from . import validation as v
from .errors import ImportRejected, InvalidInput, RowError
from .models import NewUser, User

_CLEANERS = {
    "username": v.clean_username,
    "name": v.clean_name,
    "email": v.clean_email,
    "role": v.clean_role,
    "team": v.clean_team,
}
IMPORT_COLUMNS = tuple(_CLEANERS)
# An export may be edited and imported back, so these are accepted and ignored.
EXPORT_COLUMNS = IMPORT_COLUMNS + ("status", "active", "created_at", "activated_at", "last_login_at")

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # the breaks csv and io split lines on
_Record = tuple[int, list[str] | csv.Error]


def parse_users_csv(data: bytes, existing_keys: set[str]) -> list[NewUser]:
    """Validate a whole file and return its users, or raise ImportRejected.

    All bad rows are reported at once, so one fix-and-retry round suffices.
    Line numbers are physical lines (header is line 1), so rows after a
    multi-line quoted field still point at the right place. existing_keys are
    the username_key()s already in the store.
    """
    records = _records(_decode(data))
    columns = _read_header(records)
    errors: list[RowError] = []
    users: list[NewUser] = []
    seen: dict[str, list[int]] = {}  # username_key -> lines it is on
    for line, fields in records:
        if isinstance(fields, csv.Error):
            errors.append(_malformed(line, fields))
            continue
        if _blank(fields):
            continue
        if len(fields) != len(columns):
            errors.append(RowError(line, f"expected {len(columns)} fields, found {len(fields)}"))
            continue
        row = dict(zip(columns, fields))
        cleaned: dict[str, Any] = {}
        reasons: list[str] = []
        for column, clean in _CLEANERS.items():
            try:
                cleaned[column] = clean(row[column])
            except InvalidInput as e:
                reasons.append(str(e))
        if "username" in cleaned:
            clash = _clash(cleaned["username"], line, seen, existing_keys)
            if clash:
                reasons.append(clash)
        if reasons:
            errors.append(RowError(line, "; ".join(reasons)))
        else:
            users.append(NewUser(**cleaned))
    if not errors and not users:
        errors.append(RowError(1, "no users in file"))
    if errors:
        raise ImportRejected(errors)
    return users


def write_users_csv(users: Iterable[User], out: TextIO) -> None:
    """Write users as CSV (EXPORT_COLUMNS) to a text stream.

    Lines end in "\\n" so a stream opened without newline="" does not get
    doubled CRs on Windows. Cells are written as stored, not formula-escaped:
    validation refuses formula prefixes on the way in, and escaping would
    break the round trip through parse_users_csv.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for user in users:
        record = _record(user)
        writer.writerow(_cell(record[c]) for c in EXPORT_COLUMNS)


def users_to_json(users: Iterable[User]) -> list[dict[str, Any]]:
    """The EXPORT_COLUMNS of each user, ready for json.dumps (None is null)."""
    return [_record(u) for u in users]


def _decode(data: bytes) -> str:
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    try:
        return data[len(bom):].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = len(bom) + e.start
        line = len(_LINE_BREAK.findall(data, 0, offset)) + 1
        reason = (
            f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset}; "
            "save the file as CSV UTF-8"
        )
        raise ImportRejected([RowError(line, reason)]) from None


def _records(text: str) -> Iterator[_Record]:
    """(first physical line, fields or the csv.Error) for each CSV record."""
    # strict: an unterminated quote is an error instead of swallowing the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        line = reader.line_num + 1  # a record starts on the line after the last one ended
        try:
            fields: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the reader resumes at the next line
            fields = e
        yield line, fields


def _read_header(records: Iterator[_Record]) -> list[str]:
    for line, fields in records:
        if isinstance(fields, csv.Error):
            raise ImportRejected([_malformed(line, fields)])
        if not _blank(fields):
            break
    else:
        raise ImportRejected([RowError(1, "no users in file")])
    columns = [f.strip().casefold() for f in fields]
    problems = []
    for i, (raw, column) in enumerate(zip(fields, columns)):
        if not column:
            problems.append(f"column {i + 1} has no name")
        elif column not in EXPORT_COLUMNS:
            problems.append(f"unknown column {_show(raw.strip())}")
        elif column in columns[:i]:
            problems.append(f"duplicate column '{column}'")
    missing = [c for c in IMPORT_COLUMNS if c not in columns]
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if problems:
        expected = ",".join(IMPORT_COLUMNS)
        raise ImportRejected([RowError(line, "; ".join(problems) + f" (header must be {expected})")])
    return columns


def _clash(username: str, line: int, seen: dict[str, list[int]], existing_keys: set[str]) -> str | None:
    key = v.username_key(username)
    earlier = list(seen.get(key, ()))
    seen.setdefault(key, []).append(line)
    if key in existing_keys:
        return f"username '{username}' already exists"
    if not earlier:
        return None
    times = "twice" if len(earlier) == 1 else f"{len(earlier) + 1} times"
    lines = "line" if len(earlier) == 1 else "lines"
    return f"username '{username}' appears {times} (also {lines} {', '.join(map(str, earlier))})"


def _blank(fields: list[str]) -> bool:
    # Also covers ",,,,", which spreadsheets write for empty rows.
    return all(not f.strip() for f in fields)


def _malformed(line: int, error: csv.Error) -> RowError:
    return RowError(line, f"malformed CSV (check the quotes): {error}")


def _show(text: str) -> str:
    # repr() escapes control and format characters, so a hostile header cannot
    # drive the terminal the error is shown on.
    return repr(text[:40]) + ("…" if len(text) > 40 else "")


def _record(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "name": user.name,
        "email": user.email,
        "role": user.role.value,
        "team": user.team,
        "status": user.status.value,
        "active": user.active,
        "created_at": _iso(user.created_at),
        "activated_at": _iso(user.activated_at),
        "last_login_at": _iso(user.last_login_at),
    }


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is None:  # the store keeps UTC; a naive value is taken as UTC, not local time
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
