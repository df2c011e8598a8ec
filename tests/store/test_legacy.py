"""The move from the JSON stores of earlier versions (schema 1 and 2) to SQLite (store/legacy.py).

An upgrade must lose nothing a person relies on: a phone enrolled last year keeps working, a
recovery code in someone's drawer still signs in once, a lock an attacker earned still holds,
the audit log keeps its history. So every store here is built the way the old code wrote it
(the layouts below were checked against a store the old code made), with a real key file,
secrets sealed by SecretBox and recovery codes hashed as the old code did; and every field of
every user is compared with the JSON after the move. The old files must stay as they were: they
are the way back.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest

from store import crypto, legacy
from store.errors import StoreError
from store.models import Outcome, Status
from store.paths import StorePaths, data_dir
from store.service import RECOVERY_ALPHABET, Service
from tests.support import PERIOD, T0, code, connect, password, read_store, run_forked, start_together, wrong_code

ISSUER = "Acme Contact Center"
STEP = int(T0) // PERIOD  # the TOTP step the fake clock starts in
DAY = 86400.0


def _write_private(path: Path, data: bytes) -> None:
    """As the old code left its files: 0600 (the store refuses files others can read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _dumps(value) -> bytes:
    """JSON as orjson wrote it: compact, UTF-8 unescaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _recovery_codes() -> list[str]:
    return ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10)) for _ in range(10)]


@dataclass
class JsonStore:
    """A store as an earlier version left it, and the plain values behind its sealed ones."""

    folder: Path
    schema: int
    box: crypto.SecretBox
    meta: dict
    docs: dict[str, dict]  # key -> the user's document, as written
    secrets: dict[str, str] = field(default_factory=dict)  # key -> TOTP secret in the clear (active or pending)
    recovery: dict[str, list[str]] = field(default_factory=dict)  # key -> recovery codes in the clear
    events: list[dict] = field(default_factory=list)  # the readable lines of the audit log, in order
    unreadable: int = 0  # lines of the audit log that cannot be read

    @property
    def json(self) -> Path:
        return self.folder / "store.json"

    @property
    def audit(self) -> Path:
        return self.folder / "store.json.audit.jsonl"

    @property
    def key(self) -> Path:
        return self.folder / "store.key"

    @property
    def db(self) -> Path:
        return self.folder / "store.db"

    def paths(self, db: Path | None = None) -> StorePaths:
        return StorePaths(db=db or self.db, key=self.key)

    def files(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file of the old store: its bytes, mode and modification time."""
        return {
            p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in (self.json, self.audit, self.key, self.json.with_name("store.json.lock"))
        }

    def rewrite(self, data: bytes) -> None:
        """Replaces the store file's bytes (a damaged copy), keeping it private."""
        self.json.unlink()
        _write_private(self.json, data)


def build_json_store(folder: Path, schema: int) -> JsonStore:
    """A JSON store of `schema` with a user in every state the old code could leave one in."""
    master = crypto.create_key_file(folder / "store.key")
    box = crypto.SecretBox(master)
    meta = {"schema": schema, "key_check": box.check, "created_at": T0 - 400 * DAY,
            "policy": {"mode": "mandatory", "enabled": True, "issuer": ISSUER}}  # fmt: skip
    store = JsonStore(folder, schema, box, meta, {})

    def user(key, username, name, role, created, **fields):
        doc = {"username": username, "name": name, "role": role, "active": fields.pop("active", True),
               "created_at": created, **fields}  # fmt: skip
        if "secret" in doc or "pending_secret" in doc:
            store.secrets[key] = pyotp.random_base32()
            sealed = box.encrypt(store.secrets[key], key)  # bound to the user, as the old code sealed it
            doc["secret" if "secret" in doc else "pending_secret"] = sealed
        if "recovery" in doc:
            store.recovery[key] = _recovery_codes()
            doc["recovery"] = [box.legacy_recovery_hash(c) for c in store.recovery[key]]
        store.docs[key] = doc

    # Activated; its code of this very step was accepted already (last_step), so it is spent.
    user("ada", "ada", "Ada Admin", "admin", T0 - 300 * DAY, email="ada@acme.example", team="Billing",
         password=crypto.hash_password(password("ada")), secret=..., activated_at=T0 - 200 * DAY,
         last_login_at=T0 - 10.5, last_step=STEP, recovery=..., failures=0, lock_count=0)  # fmt: skip
    # Pending, an enrollment under way (a pending secret), no email.
    user("sam", "sam", "Sam Supervisor", "supervisor", T0 - 250 * DAY, team="Support",
         password=crypto.hash_password(password("sam")), pending_secret=...)  # fmt: skip
    # Activated and locked out: a lock running, the second one (it doubles the next).
    user("alice", "alice", "Alice Agent", "agent", T0 - 100 * DAY + 0.123456, team="Billing",
         password=crypto.hash_password(password("alice")), secret=..., activated_at=T0 - 90 * DAY,
         last_step=STEP - 1000, recovery=..., failures=2, lock_count=2, locked_until=T0 + 600.25)  # fmt: skip
    # Pending after an administrator's reset; no password, no email, no team.
    user("bob", "bob", "Bob Agent", "agent", T0 - 50 * DAY, reset_at=T0 - 2 * DAY)
    # Deactivated, enrolled before; a key that is the username case-folded.
    user("carol.ng", "Carol.Ng", "Carol Ng", "agent", T0 - 40 * DAY, email="carol@acme.example",
         secret=..., activated_at=T0 - 39 * DAY, recovery=..., active=False)  # fmt: skip
    # Activated, failures counting, an old lock long over; a name beyond ASCII.
    user("eve", "eve", "Zoë Ångström-Ñúñez", "agent", T0 - 30 * DAY, team="Nachtschicht — Süd",
         password=crypto.hash_password(password("eve")), secret=..., activated_at=T0 - 29 * DAY,
         last_login_at=T0 - DAY, last_step=STEP - 2880, recovery=..., failures=3, lock_count=1,
         locked_until=T0 - 3600)  # fmt: skip
    # Pending, never signed in: the fields a new user has and nothing else.
    user("frank", "frank", "Frank", "agent", T0 - 1.0)

    if schema == 1:
        # The first version kept every field, None as null, and recovery hashes of the whole
        # HMAC (64 hex digits): later versions compared only the first 32.
        first = ("email", "team", "password", "secret", "pending_secret", "recovery", "failures", "lock_count",
                 "locked_until", "last_step", "activated_at", "last_login_at", "reset_at")  # fmt: skip
        for key, doc in store.docs.items():
            for name in first:
                doc.setdefault(name, [] if name == "recovery" else 0 if name in ("failures", "lock_count") else None)
        first_key = crypto._derive(master, b"mfa-console recovery-code v1")  # the first version's hash
        store.docs["ada"]["recovery"] = [hmac.new(first_key, c.encode(), "sha256").hexdigest()
                                         for c in store.recovery["ada"]]  # fmt: skip
        data = _dumps({"meta": {"1": meta}, "users": store.docs})  # one object, no line break
    else:
        data = b"".join([_dumps({"meta": {"1": meta}}) + b"\n",
                         *(_dumps([key, doc]) + b"\n" for key, doc in store.docs.items()),
                         _dumps({"end": len(store.docs)}) + b"\n"])  # fmt: skip
    _write_private(store.json, data)
    _write_private(store.json.with_name("store.json.lock"), b"")
    _write_audit(store)
    return store


def _write_audit(store: JsonStore) -> None:
    """The audit log, with lines torn by crashes mid-append: one the next append went on after
    (the old code started it on a fresh line), and the last one."""
    e = lambda at, actor, action, target, outcome, detail=None: dict(  # noqa: E731
        at=at, actor=actor, action=action, target=target, outcome=outcome, detail=detail)  # fmt: skip
    store.events = [
        e(T0 - 400 * DAY, "os:tester", "store.created", None, "ok", f"issuer {ISSUER}"),
        e(T0 - 300 * DAY + 0.000001, "os:tester", "user.add", "ada", "ok", "role admin"),
        e(T0 - 200 * DAY + 0.654321, "os:tester", "enroll.confirm", "ada", "ok"),
        e(T0 - 30 * DAY, "os:tester", "user.edit", "eve", "ok", "name: Zoë Ångström-Ñúñez"),
        e(T0 - 90.5, "alice", "login.password", "alice", "failed"),
        e(T0 - 90.25, "alice", "lock", "alice", "locked", "10 min after 5 failures"),
        e(T0 - 10.5, "verify:root", "verify", "ada", "ok", "totp"),
    ]
    lines = [_dumps(event) + b"\n" for event in store.events]
    torn = _dumps(e(T0 - 60, "verify:root", "verify", "eve", "failed", "wrong code"))
    not_text = b'{"at":1795999000.0,"actor":"\\ud800","action":"verify","target":"eve","outcome":"ok"}\n'
    lines.insert(5, torn[:41] + b"\n")  # a crash mid-append; the next append began on a new line
    lines.insert(3, not_text)  # a lone surrogate, which no version wrote (orjson refuses them)
    lines.append(torn[:37])  # the last append, torn: no line break
    store.unreadable = 3
    _write_private(store.audit, b"".join(lines))


def expected_row(store: JsonStore, key: str) -> dict:
    """The users row the document must become: every column of the table."""
    doc = store.docs[key]
    optional = lambda name: doc.get(name)  # noqa: E731 -- absent and null are the same
    as_time = lambda name: None if doc.get(name) is None else float(doc[name])  # noqa: E731
    return {
        "key": key, "username": doc["username"], "name": doc["name"], "role": doc["role"],
        "created_at": float(doc["created_at"]), "email": optional("email"), "team": optional("team"),
        "active": int(doc["active"]), "password": optional("password"), "secret": optional("secret"),
        "pending_secret": optional("pending_secret"), "activated_at": as_time("activated_at"),
        "last_login_at": as_time("last_login_at"), "reset_at": as_time("reset_at"),
        "last_step": optional("last_step"), "failures": doc.get("failures") or 0,
        "lock_count": doc.get("lock_count") or 0, "locked_until": as_time("locked_until"),
        # The hashes of the codes the user holds, as every version since the first computes them.
        "recovery": sorted(legacy.LEGACY_RECOVERY_PREFIX + store.box.legacy_recovery_hash(c)
                           for c in store.recovery.get(key, [])),
    }  # fmt: skip


def row_as_compared(row: dict) -> dict:
    row = dict(row)
    del row["rev"]  # the store's own bookkeeping
    row["recovery"] = sorted(row["recovery"].split())
    return row


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@pytest.fixture(params=[1, 2], ids=["schema 1", "schema 2"])
def old(request, paths) -> JsonStore:
    return build_json_store(paths.db.parent, request.param)


# -- the move, field by field ----------------------------------------------------------------


@pytest.mark.parametrize("given", ["store.db", "store.json"], ids=["default path", "pointed at the .json"])
def test_every_user_setting_and_event_is_carried_over(old, clock, given):
    """Whether the store is found by its old name or by the new one's default, every column of
    every user is what the JSON said, and the audit log goes on where it was, in order."""
    before = old.files()
    service = Service(old.paths(old.folder / given), clock=clock)
    service.operator("tester")  # opens the store, and moves it
    assert service.migrated_from == old.json and service.db.path == old.db
    service.close()

    stored = read_store(old.db)
    assert stored["settings"] == {"id": 1, "mode": "mandatory", "enabled": 1, "issuer": ISSUER,
                                  "key_check": old.box.check, "created_at": old.meta["created_at"]}  # fmt: skip
    assert set(stored["users"]) == set(old.docs)
    for key in old.docs:
        assert row_as_compared(stored["users"][key]) == expected_row(old, key), key

    service = Service(old.paths(), clock=clock)
    op = service.operator("tester")
    events = list(reversed(service.audit(op)))
    moved = [dict(at=e.at, actor=e.actor, action=e.action, target=e.target, outcome=e.outcome, detail=e.detail)
             for e in events[:-1]]  # fmt: skip
    assert moved == [{**event, "at": at(event["at"])} for event in old.events]  # in order, to the microsecond
    assert [e.id for e in events] == sorted(e.id for e in events)
    last = events[-1]
    assert (last.action, last.target, last.outcome, last.at) == ("store.migrated", None, "ok", at(clock.now))
    assert last.actor.startswith("os:")
    assert last.detail == (f"from store.json: {len(old.docs)} users, {len(old.events)} audit events "
                           f"({old.unreadable} unreadable audit lines left behind)")  # fmt: skip

    users = {u.username: u for u in service.list_users(op)}
    assert {name: u.status for name, u in users.items()} == {
        "ada": Status.ACTIVATED, "sam": Status.PENDING, "alice": Status.ACTIVATED, "bob": Status.PENDING,
        "Carol.Ng": Status.ACTIVATED, "eve": Status.ACTIVATED, "frank": Status.PENDING}  # fmt: skip
    assert users["alice"].locked_until == at(T0 + 600.25) and users["eve"].locked_until is None
    assert {name: u.recovery_codes_left for name, u in users.items()} == {
        "ada": 10, "sam": 0, "alice": 10, "bob": 0, "Carol.Ng": 10, "eve": 10, "frank": 0}  # fmt: skip
    assert users["bob"].pending_since == at(old.docs["bob"]["reset_at"])
    service.close()
    assert old.files() == before  # byte for byte, same mode, not even touched


def test_the_moved_users_sign_in_as_before(old, clock):
    """Secrets decrypt, the replay check, recovery codes, the lock and passwords carry over."""
    service = Service(old.paths(), clock=clock)
    op = service.operator("tester")

    # ada's code of this step was accepted before the move: a replay now.
    assert service.verify("ada", code(old.secrets["ada"], clock)).outcome is Outcome.INVALID
    assert service.audit(op, limit=1)[0].detail == "replayed code"
    clock.advance(PERIOD)
    assert service.verify("ada", code(old.secrets["ada"], clock)).outcome is Outcome.OK

    typed = old.recovery["ada"][3]
    typed = f"{typed[:5]}-{typed[5:]}"  # as it was printed
    used = service.verify("ada", typed)
    assert used.outcome is Outcome.OK and used.used_recovery_code and used.recovery_codes_left == 9
    assert service.verify("ada", typed).outcome is Outcome.INVALID  # once only
    assert service.get_user(op, "ada").recovery_codes_left == 9

    # alice's lock still runs: her right code is refused until it ends, then accepted.
    locked = service.verify("alice", code(old.secrets["alice"], clock))
    assert locked.outcome is Outcome.LOCKED and locked.locked_until == at(T0 + 600.25)
    clock.advance(T0 + 601 - clock.now)
    assert service.verify("alice", code(old.secrets["alice"], clock)).outcome is Outcome.OK

    # eve's failures count on from 3: two more lock her, and the lock is her second (10 min).
    assert service.verify("eve", wrong_code(old.secrets["eve"], clock)).outcome is Outcome.INVALID
    locked = service.verify("eve", wrong_code(old.secrets["eve"], clock))
    assert locked.outcome is Outcome.LOCKED and locked.locked_until == at(clock.now + 600)

    # sam's enrollment under way finishes with a code of the pending secret.
    assert service.login("sam", password("sam")).outcome is Outcome.ENROLLMENT_REQUIRED
    assert service.confirm_enrollment(op, "sam", code(old.secrets["sam"], clock)).ok
    assert service.get_user(op, "sam").status is Status.ACTIVATED

    # The deactivated stay out; no password is no sign-in.
    assert service.verify("Carol.Ng", code(old.secrets["carol.ng"], clock)).outcome is Outcome.INVALID
    assert service.login("bob", "any password at all").outcome is Outcome.INVALID
    service.close()


def test_a_second_open_uses_the_sqlite_store_and_moves_nothing_again(old, clock):
    """After the move the JSON store is history: changes since are in store.db, and opening
    by either name must find them there, not move the old file over them again."""
    first = Service(old.paths(), clock=clock)
    clock.advance(PERIOD)
    assert first.verify("ada", code(old.secrets["ada"], clock)).ok
    first.close()
    after_first = read_store(old.db)
    before = old.files()
    for given in ("store.db", "store.json"):
        again = Service(old.paths(old.folder / given), clock=clock)
        op = again.operator("tester")
        assert again.migrated_from is None and again.db.path == old.db
        assert [e.action for e in again.audit(op, action="store.migrated")] == ["store.migrated"]
        assert again.verify("ada", code(old.secrets["ada"], clock)).outcome is Outcome.INVALID  # spent above
        again.close()
    assert read_store(old.db)["users"]["ada"]["last_step"] == after_first["users"]["ada"]["last_step"] == STEP + 1
    assert old.files() == before


# -- through the command line ----------------------------------------------------------------


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = run_forked(list(args), env=env, cwd=Path.cwd(), timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def _listed_as_json(old: JsonStore, proc) -> None:
    assert proc.returncode == 0, proc.stderr
    listed = {u["username"]: u for u in json.loads(proc.stdout)}
    assert set(listed) == {doc["username"] for doc in old.docs.values()}
    for key, doc in old.docs.items():
        user = listed[doc["username"]]
        assert (user["name"], user["role"], user["email"], user["team"], user["active"]) == (
            doc["name"], doc["role"], doc.get("email"), doc.get("team"), doc["active"]), key  # fmt: skip
        assert user["status"] == ("activated" if doc.get("secret") else "pending"), key


def test_the_command_line_moves_a_store_it_is_pointed_at(paths):
    old = build_json_store(paths.db.parent, 2)
    before = old.files()
    env = {**os.environ, "MFA_CONSOLE_DB": str(old.json)}
    env.pop("MFA_CONSOLE_KEY", None)
    proc = _cli(env, "users", "list", "--json")
    _listed_as_json(old, proc)
    assert proc.stderr.count("\n") == 1 and f"moved the store {old.json} to SQLite at {old.db}" in proc.stderr
    again = _cli(env, "users", "list", "--json")
    _listed_as_json(old, again)
    assert again.stderr == ""  # said once: the second run uses store.db
    assert old.files() == before


def test_the_command_line_moves_a_store_at_the_default_place(tmp_path):
    """An upgrade with no option set: only store.json is in the data folder."""
    folder = data_dir()
    assert folder.is_relative_to(tmp_path)  # conftest pointed XDG_DATA_HOME into the test's folder
    old = build_json_store(folder, 1)
    before = old.files()
    env = {k: v for k, v in os.environ.items() if k not in ("MFA_CONSOLE_DB", "MFA_CONSOLE_KEY")}
    proc = _cli(env, "users", "list", "--json")
    _listed_as_json(old, proc)
    assert f"moved the store {old.json} to SQLite at {old.db}" in proc.stderr
    assert old.db.exists() and old.files() == before


# -- stores that cannot be moved -------------------------------------------------------------


def _lines(store: JsonStore) -> list[bytes]:
    return store.json.read_bytes().split(b"\n")


def _replace_user(store: JsonStore, key: str, **changes) -> bytes:
    doc = {**store.docs[key], **changes}
    return b"\n".join(_dumps([k, doc]) if k == key else line
                      for k, line in zip([None, *store.docs, None, None], _lines(store)))  # fmt: skip


def _duplicated(store: JsonStore) -> bytes:
    lines = _lines(store)
    lines.insert(3, lines[2])
    lines[-2] = _dumps({"end": len(store.docs) + 1})
    return b"\n".join(lines)


DAMAGE = {  # schema, what is done to the file
    "truncated mid-line": (2, lambda s: s.json.read_bytes()[: len(s.json.read_bytes()) // 2]),
    "cut after a whole line": (2, lambda s: b"\n".join(_lines(s)[:4]) + b"\n"),
    "a bad line": (2, lambda s: b"\n".join(line if i != 3 else b'["bob",{"username":"bob",' for i, line in
                                           enumerate(_lines(s)))),  # fmt: skip
    "a user twice": (2, _duplicated),
    "no end line": (2, lambda s: b"\n".join(_lines(s)[:-2]) + b"\n"),
    "an end line with another count": (2, lambda s: s.json.read_bytes().replace(b'{"end":7}', b'{"end":6}')),
    "a newer schema": (2, lambda s: s.json.read_bytes().replace(b'"schema":2', b'"schema":3', 1)),
    "schema 1 truncated": (1, lambda s: s.json.read_bytes()[:-40]),
    "schema 1 with a user twice": (1, lambda s: s.json.read_bytes().replace(
        b',"sam":', b',"bob":' + _dumps(s.docs["bob"]) + b',"sam":')),  # fmt: skip
    "schema 1 with a user that is not an object": (1, lambda s: s.json.read_bytes().replace(
        b'"frank":{', b'"frank":"x","x":{')),  # fmt: skip
    "a role that is a list": (2, lambda s: _replace_user(s, "bob", role=["agent"])),
    "a lone surrogate in a name": (2, lambda s: _replace_user(s, "bob", name="x").replace(b'"x"', b'"\\ud800"')),
    "a count no version wrote": (2, lambda s: _replace_user(s, "alice", failures=10**30)),
    "a step beyond SQLite's integers": (2, lambda s: _replace_user(s, "ada", last_step=2**64)),
    "a date that is not a number": (2, lambda s: s.json.read_bytes().replace(
        str(T0 - 400 * DAY).encode(), b"NaN", 1)),  # fmt: skip
    "nested deeper than Python recurses": (2, lambda s: b"\n".join([*_lines(s)[:2], b"[" * 100_000, b""])),
}


@pytest.mark.parametrize("schema, damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_json_store_is_refused_and_nothing_is_created(paths, schema, damage):
    """A store that does not read whole is not moved at all: half a store in SQLite would look
    like the whole one from then on. One line names the file; nothing is written anywhere."""
    old = build_json_store(paths.db.parent, schema)
    damaged = damage(old)
    assert damaged != old.json.read_bytes()  # the damage is there
    old.rewrite(damaged)
    before, listing = old.files(), sorted(p.name for p in old.folder.iterdir())
    for given in ("store.db", "store.json"):
        with pytest.raises(StoreError) as refused:
            Service(old.paths(old.folder / given)).policy()
        message = str(refused.value)
        assert str(old.json) in message and "\n" not in message, message
    env = {k: v for k, v in os.environ.items() if k != "MFA_CONSOLE_KEY"}
    proc = _cli({**env, "MFA_CONSOLE_DB": str(old.json)}, "users", "list")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and str(old.json) in proc.stderr, proc.stderr
    assert sorted(p.name for p in old.folder.iterdir()) == listing  # no store.db, no temp file
    assert old.files() == before


def test_a_newer_schema_says_to_upgrade(paths):
    old = build_json_store(paths.db.parent, 2)
    old.rewrite(old.json.read_bytes().replace(b'"schema":2', b'"schema":3', 1))
    with pytest.raises(StoreError, match="upgrade mfa-console"):
        Service(old.paths()).policy()


# -- several processes at once ---------------------------------------------------------------

OPENER = """
import json, sys
from store.paths import resolve
from store.service import Service
service = Service(resolve(sys.argv[1], sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()  # all start together
users = service.list_users(service.operator("worker"))
service.close()
print(json.dumps(sorted(u.username for u in users)))
"""


def test_processes_opening_a_json_store_at_once_make_one_store(paths):
    """At a shift start many `verify` processes may find the old store at once: one store.db
    must come of it, with every user once and one record of the move."""
    old = build_json_store(paths.db.parent, 2)
    before = old.files()
    results = start_together(OPENER, [[old.db if i % 2 else old.json, old.key] for i in range(6)])
    everyone = sorted(doc["username"] for doc in old.docs.values())
    assert results == [everyone] * 6
    # No temp file left. (-wal and -shm are SQLite's: gone unless two last closes crossed.)
    left = {p.name for p in old.folder.iterdir()} - {"store.db-wal", "store.db-shm"}
    assert left == {*before, "store.db"}
    conn = connect(old.db)
    try:
        assert sorted(k for (k,) in conn.execute("SELECT key FROM users")) == sorted(old.docs)
        assert conn.execute("SELECT count(*) FROM audit WHERE action = 'store.migrated'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == len(old.events) + 1
    finally:
        conn.close()
    assert old.files() == before
