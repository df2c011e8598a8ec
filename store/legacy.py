"""The move from the JSON stores of earlier versions to SQLite: automatic, whole, lossless.

Earlier versions kept the store in `store.json` (schema 1: one JSON object; schema 2: JSON Lines,
the small tables on the first line, one `[key, user]` line per user, then `{"end": count}`) and
the audit log in `store.json.audit.jsonl`. The first command that finds such a store and no
SQLite store beside it copies everything — users, secrets, recovery codes, failures and locks,
the policy, every readable audit event — into a new SQLite store at the same place with `.db`
for `.json`, under the same key file. The old files are kept as they were, never changed.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

from . import fs
from .errors import StoreCorrupt, StoreError
from .models import MODES, ROLES, AuditEvent
from .records import Settings, UserRecord
from .sql import Writer, recovery_column
from .sql.sqlite import SQLiteDatabase
from .validation import username_key

LEGACY_RECOVERY_PREFIX = "v1:"  # hashes of codes not bound to their user (crypto.legacy_recovery_hash)
_HINT = "it was left untouched; restore it from a backup, then try again"
# What SQLite's INTEGER holds is 64 bits: a count or a step beyond these is damage, not history.
_MAX_COUNT = 2**31 - 1
_MAX_STEP = 2**63 - 1
# A recovery code's hash: 32 hex digits, or 64 in stores of the very first version, which kept the
# whole HMAC-SHA256 (its first 32 digits are the same code's hash in every later version).
_RECOVERY_HASH = re.compile(r"[0-9a-f]{32}(?:[0-9a-f]{32})?")


def sqlite_path(json_path: Path) -> Path:
    return json_path.with_suffix(".db")


def json_path(db_path: Path) -> Path:
    return db_path.with_suffix(".json")


def audit_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name + ".audit.jsonl")


def files(json_path: Path) -> tuple[Path, ...]:
    """Every file of a JSON store: the store, its audit log, its lock file."""
    return json_path, audit_path(json_path), json_path.with_name(json_path.name + ".lock")


def migrate(source: Path, target: Path, *, actor: str, now: float) -> tuple[SQLiteDatabase, bool]:
    """Copies the JSON store `source` into a new SQLite store `target`; opens it. Nothing is
    written anywhere unless the whole JSON store reads, and `source` is never changed. The flag
    says whether this call moved it (False: another process did, meanwhile)."""
    settings, users = read_json_store(source)
    events, skipped = read_audit(audit_path(source))
    detail = f"from {source.name}: {len(users)} users, {len(events)} audit events"
    if skipped:
        detail += f" ({skipped} unreadable audit lines left behind)"

    def populate(w: Writer) -> None:
        w.add_users(users)
        w.record(events)
        w.record([AuditEvent(datetime.fromtimestamp(now, UTC), actor, "store.migrated", None, "ok", detail)])

    try:
        return SQLiteDatabase.create(target, settings, populate), True
    except StoreError:
        if target.exists():  # another process moved it meanwhile
            return SQLiteDatabase.open(target), False
        raise


def read_json_store(path: Path) -> tuple[Settings, list[UserRecord]]:
    """The settings and the users of a JSON store, all checked."""
    try:
        raw = fs.read_private_file(path, secret=True)
    except OSError as exc:
        raise StoreError(f"cannot read store {path}: {exc.strerror}") from exc
    lines = raw.split(b"\n")
    head = _json(lines[0], path, 1, unique=True)  # schema 1's users are keys of one object there
    meta = head.get("meta", {}).get("1") if isinstance(head, dict) and isinstance(head.get("meta"), dict) else None
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if type(schema) is int and schema > 2:
        raise StoreError(
            f"store {path} has JSON schema version {schema}, newer than this mfa-console reads "
            "(upgrade mfa-console to open it); it was left untouched"
        )
    if type(schema) is not int or schema not in (1, 2):  # True and 2.0 equal 1 and 2, yet no version wrote them
        raise StoreError(f"{path} is not a JSON store this version can move (schema {schema!r}); {_HINT}")
    if schema == 1:
        if any(line.strip() for line in lines[1:]):
            raise StoreCorrupt(f"store {path} has data after its end; {_HINT}")
        docs = head.get("users")
        if not isinstance(docs, dict):
            raise StoreCorrupt(f"store {path} has no users table; {_HINT}")
        items = [(key, doc, 1) for key, doc in docs.items()]
    elif "users" in head:  # schema 2 keeps its users on lines of their own
        raise StoreCorrupt(f"store {path} is not in lines; {_HINT}")
    else:
        items = _user_lines(lines, path)
    settings = _settings(meta, path)
    users = [_user(key, doc, path, line) for key, doc, line in items]
    if len({u.key for u in users}) != len(users):
        raise StoreCorrupt(f"store {path} lists a user twice; {_HINT}")
    return settings, users


def read_audit(path: Path) -> tuple[list[AuditEvent], int]:
    """Every readable event, oldest first, and how many lines could not be read (a line torn by
    a crash mid-append, as earlier versions could leave)."""
    try:
        raw = fs.read_private_file(path, secret=False)
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise StoreError(f"cannot read audit log {path}: {exc.strerror}") from exc
    events, skipped = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            at = doc["at"]
            if isinstance(at, bool) or not isinstance(at, int | float) or not (math.isfinite(at) and 0 <= at < 2.5e11):
                raise ValueError(at)
            fields = [doc["actor"], doc["action"], doc.get("target"), doc["outcome"], doc.get("detail")]
            if not all(_is_text(f) or (f is None and i in (2, 4)) for i, f in enumerate(fields)):
                raise ValueError(fields)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            skipped += 1
            continue
        events.append(AuditEvent(datetime.fromtimestamp(at, UTC), *fields))
    return events, skipped


def _user_lines(lines: list[bytes], path: Path) -> list[tuple[str, dict, int]]:
    items = []
    for number, line in enumerate(lines[1:], start=2):
        record = _json(line, path, number)
        if isinstance(record, dict):
            rest = b"".join(lines[number:]).strip()
            if record != {"end": len(items)} or rest:
                raise StoreCorrupt(f"store {path} does not end as written (line {number}); {_HINT}")
            return items
        if not (isinstance(record, list) and len(record) == 2 and isinstance(record[0], str)
                and isinstance(record[1], dict)):  # fmt: skip
            raise StoreCorrupt(f"store {path} has a damaged user on line {number}; {_HINT}")
        items.append((record[0], record[1], number))
    raise StoreCorrupt(f"store {path} is truncated (no end line); {_HINT}")


class _Twice(ValueError):
    """A JSON object naming one key twice: no version wrote one, and json.loads would keep the last
    (a user of schema 1 listed twice would be one user, silently)."""


def _unique(pairs: list[tuple[str, object]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen = set()
        raise _Twice(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return doc


def _json(line: bytes, path: Path, number: int, *, unique: bool = False):
    try:
        return json.loads(line, object_pairs_hook=_unique if unique else None)
    except _Twice as exc:
        raise StoreCorrupt(f"store {path} names {str(exc)!r} twice on line {number}; {_HINT}") from exc
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than any store is
        raise StoreCorrupt(f"store {path} is damaged on line {number}; {_HINT}") from exc


def _is_text(value) -> bool:
    """A str SQLite can store: JSON's \\u escapes can make lone surrogates, which UTF-8 cannot."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _time(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < 2.5e11


def _settings(meta: dict, path: Path) -> Settings:
    policy = meta.get("policy")
    try:
        mode, enabled, issuer = MODES[policy["mode"]], policy["enabled"], policy["issuer"]
        key_check, created_at = meta["key_check"], meta["created_at"]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreCorrupt(f"store {path} has damaged settings; {_HINT}") from exc
    if not (isinstance(enabled, bool) and _is_text(issuer) and _is_text(key_check) and _time(created_at)):
        raise StoreCorrupt(f"store {path} has damaged settings; {_HINT}")
    return Settings(mode, enabled, issuer, key_check, float(created_at))


_TEXT = ("email", "team", "password", "secret", "pending_secret")
_TIMES = ("activated_at", "last_login_at", "reset_at", "locked_until")
_COUNTS = ("failures", "lock_count")


def _user(key: str, doc: dict, path: Path, line: int) -> UserRecord:
    def bad(what: str) -> StoreCorrupt:
        return StoreCorrupt(f"store {path} has a damaged user on line {line} ({what}); {_HINT}")

    if not isinstance(doc, dict):  # schema 2's lines are checked for that as they are read
        raise bad("not an object")
    username, name, role = doc.get("username"), doc.get("name"), doc.get("role")
    if not _is_text(username) or username_key(username) != key:
        raise bad("username")
    if not _is_text(name) or not isinstance(role, str) or role not in ROLES or not isinstance(doc.get("active"), bool):
        raise bad("name, role or active")
    fields = {}
    for field in _TEXT:
        if not (doc.get(field) is None or _is_text(doc[field])):
            raise bad(field)
        fields[field] = doc.get(field)
    for field in ("created_at", *_TIMES):
        value = doc.get(field)
        if value is None and field != "created_at":
            fields[field] = None
            continue
        if not _time(value):
            raise bad(field)
        fields[field] = float(value)
    for field in _COUNTS:
        value = doc.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
            raise bad(field)
        fields[field] = value
    last_step = doc.get("last_step")
    if last_step is not None and (isinstance(last_step, bool) or not isinstance(last_step, int)
                                  or not 0 <= last_step <= _MAX_STEP):  # fmt: skip
        raise bad("last_step")
    hashes = doc.get("recovery") or []
    if not isinstance(hashes, list) or not all(isinstance(h, str) and _RECOVERY_HASH.fullmatch(h) for h in hashes):
        raise bad("recovery")
    hashes = sorted({h[:32] for h in hashes})
    recovery = recovery_column(LEGACY_RECOVERY_PREFIX + h for h in hashes)
    return UserRecord(key=key, username=username, name=name, role=role, active=doc["active"],
                      last_step=last_step, recovery=recovery, recovery_left=len(hashes), **fields)  # fmt: skip
