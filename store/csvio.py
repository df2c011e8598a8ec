"""Import and export of users: CSV both ways, JSON out."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from . import fs
from . import validation as v
from .errors import ImportRejected, InvalidInput, RowError, StoreError
from .models import NewUser, User

if TYPE_CHECKING:
    from _csv import Reader

_CLEANERS = {
    "username": v.clean_username,
    "name": v.clean_name,
    "email": v.clean_email,
    "role": v.clean_role,
    "team": v.clean_team,
}
# Whole-column checks for _plain_users. Role and team have so few distinct values
# that cleaning each of those once is cheaper.
_AS_IS = {"username": v.usernames_as_is, "name": v.names_as_is, "email": v.emails_as_is}
IMPORT_COLUMNS = tuple(_CLEANERS)
# An export may be edited and imported back, so these are accepted and ignored.
EXPORT_COLUMNS = IMPORT_COLUMNS + ("status", "active", "created_at", "activated_at", "last_login_at")

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # the breaks csv and io split lines on
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")  # one line, break included
_Record = tuple[int, list[str] | csv.Error]


# Ten times a 100,000-user file (about 6 MB); /dev/zero, or a log picked by mistake, stops here.
MAX_IMPORT_MIB = 64


def read_import(source: Path | BinaryIO) -> bytes:
    """The bytes of an import file (a regular file: a FIFO or a device is refused at once) or of
    a stream (standard input), read no further than MAX_IMPORT_MIB; one-line StoreErrors."""
    name = str(source) if isinstance(source, Path) else "standard input"
    most = MAX_IMPORT_MIB << 20
    try:
        data = fs.read_given_file(source, limit=most + 1) if isinstance(source, Path) else source.read(most + 1)
    except OSError as exc:
        raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if len(data) > most:
        raise StoreError(f"{name} is over {MAX_IMPORT_MIB} MiB, the most one import takes: split it, or check it "
                         "is the right file")  # fmt: skip
    return data


def parse_users_csv(data: bytes, existing_keys: set[str]) -> list[NewUser]:
    """Validate a whole file and return its users, or raise ImportRejected.

    All bad rows are reported at once, so one fix-and-retry round suffices.
    Line numbers are physical lines (header is line 1), so rows after a
    multi-line quoted field still point at the right place. existing_keys are
    the username_key()s already in the store.
    """
    text = _decode(data)
    # strict: an unterminated quote is an error instead of swallowing the rest of the file.
    reader = csv.reader(_lines(text), strict=True)
    records = _records(reader)
    columns = _read_header(records)
    users = _plain_users(_after_lines(text, reader.line_num), columns, existing_keys)
    return users if users is not None else _checked_users(records, columns, existing_keys)


def _plain_users(body: str, columns: list[str], existing_keys: set[str]) -> list[NewUser] | None:
    """The users of body (the file after its header) if it is plain and valid, else None.

    The fast path for large imports: column by column instead of row by row.
    Plain means no quotes, no lone CR and blank rows only as "" or ",,,,", so
    each line is one record and its fields are the line split on ",", as csv
    would split it. Each column either
    passes its _AS_IS check or has each distinct value cleaned once, by the
    cleaners _checked_users uses: the users are the ones it would return. On
    any doubt (a bad value, a duplicate, a wrong field count) this returns
    None, and _checked_users finds and reports the problems with their lines.
    """
    if '"' in body:
        return None
    if "\r" in body:
        if body.count("\r") != body.count("\r\n"):
            return None
        body = body.replace("\r\n", "\n")
    lines = body.split("\n")
    if lines[-1] == "":
        lines.pop()  # after the break ending the last line
    width = len(columns)
    empty = "," * (width - 1)  # how spreadsheets write an empty row
    if "" in lines or empty in lines:
        lines = [line for line in lines if line and line != empty]  # blank rows are skipped
    if (
        not lines
        or set(map(str.count, lines, repeat(","))) != {width - 1}
        or max(map(len, lines)) > csv.field_size_limit()  # so no field is too long for csv
    ):
        return None
    fields = ",".join(lines).split(",")
    try:
        usernames, names, emails, roles, teams = (
            _clean_column(column, fields[columns.index(column)::width]) for column in IMPORT_COLUMNS
        )
    except InvalidInput:
        return None
    keys = set(map(v.username_key, usernames))
    if len(keys) != len(usernames) or not existing_keys.isdisjoint(keys):
        return None
    return list(map(NewUser, usernames, names, roles, emails, teams))


def _clean_column(column: str, values: list[str]) -> list[Any]:
    """values as the column's cleaner returns them; InvalidInput if it refuses one."""
    as_is = _AS_IS.get(column)
    if as_is and as_is(values):
        return [value or None for value in values] if "" in values else values  # "" is an optional field left out
    clean = _CLEANERS[column]
    cleaned = {value: clean(value) for value in set(values)}
    return list(map(cleaned.__getitem__, values))


def _checked_users(records: Iterator[_Record], columns: list[str], existing_keys: set[str]) -> list[NewUser]:
    """The row-by-row path: every record checked, every problem reported with its line."""
    positions = [(columns.index(column), clean) for column, clean in _CLEANERS.items()]
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
        cleaned: list[Any] = []
        reasons: list[str] = []
        for position, clean in positions:
            try:
                cleaned.append(clean(fields[position]))
            except InvalidInput as e:
                cleaned.append(None)  # a username is never None otherwise
                reasons.append(str(e))
        username, name, email, role, team = cleaned
        if username is not None:
            clash = _clash(username, line, seen, existing_keys)
            if clash:
                reasons.append(clash)
        if reasons:
            errors.append(RowError(line, "; ".join(reasons)))
        else:
            users.append(NewUser(username, name, role, email, team))
    if not errors and not users:
        errors.append(RowError(1, "no users in file"))
    if errors:
        raise ImportRejected(errors)
    return users


def write_users_csv(users: Iterable[User], out: TextIO) -> None:
    """Write users as CSV (EXPORT_COLUMNS) to a text stream.

    Lines end in "\\n" so a stream opened without newline="" does not get
    doubled CRs on Windows. Validation refuses formula prefixes on the way in;
    cells are neutralised anyway (csv_cell), for what got in another way.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for user in users:
        record = _record(user)
        writer.writerow(csv_cell(record[c]) for c in EXPORT_COLUMNS)


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


def _records(reader: Reader) -> Iterator[_Record]:
    """(first physical line, fields or the csv.Error) for each record of a csv.reader."""
    while True:
        line = reader.line_num + 1  # a record starts on the line after the last one ended
        try:
            fields: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the reader resumes at the next line
            fields = e
        yield line, fields


def _lines(text: str) -> Iterator[str]:
    # What io.StringIO(text, newline="") yields, without first copying all of
    # text into a buffer of 4 bytes a character (28 MB for 100k users).
    return (line[0] for line in _LINE.finditer(text))


def _after_lines(text: str, count: int) -> str:
    """text after its first count lines."""
    end = 0
    for _ in range(count):
        line = _LINE.match(text, end)
        if not line:
            return ""
        end = line.end()
    return text[end:]


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
    return not "".join(fields).strip()


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


def csv_cell(value: Any) -> str:
    """A value as a CSV cell that a spreadsheet shows as text and a terminal as plain text: a
    leading = + - @ tab or CR gets a ' (OWASP's rule against formula injection), and control
    characters become '?'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    if value.startswith(_FORMULA_STARTS):
        value = "'" + value
    return v.printable(value)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
