"""The use-cases of mfa-console: one object, typed records in and out.

Every rule lives here — roles, policy, lockout, replay — so the CLI and the dashboard cannot
differ. A front end gets a `Session` from `login` (people) or `operator` (the host's operator,
for the command line) and passes it to every call; the service re-reads that user's role and
account state from the store on each call, so a demoted or deactivated user loses rights at once.
The store itself is `store.sql`: this module sees records, never SQL.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from . import crypto, fs, legacy, totp
from .errors import (
    InvalidInput,
    JsonLayout,
    KeyFileError,
    PermissionDenied,
    PolicyError,
    StoreCorrupt,
    StoreError,
    StoreMissing,
    UnknownUser,
)
from .clients import RADIUS_PASSWORD, RADIUS_UNSIGNED, Client, clean_client_name, client_from_row, key_hash, new_key, new_radius_secret, parse_sources
from .gcpause import gc_paused
from .lockout import locked_until
from .models import (
    ROLES,
    AuditEvent,
    AuthResult,
    ConfirmResult,
    Enrollment,
    NewUser,
    Outcome,
    Policy,
    PolicyMode,
    Role,
    Rollout,
    Scope,
    Session,
    Status,
    User,
)
from .paths import StorePaths
from .records import Settings, UserRecord
from .sql import Database, UserSummary, Writer, create_store, is_url, open_store, recovery_column
from .sql.sqlite import SQLiteDatabase
from .validation import clean_email, clean_issuer, clean_name, clean_role, clean_team, clean_username, username_key

RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
CHALLENGE_SECONDS = 300
ENROLL_SECONDS = 1800  # time to find the phone and install an app
REFUSALS_SECONDS = 60  # a key refused again and again from one address: one audit event a minute, with a count
UNKNOWN = "(unknown)"  # the actor of an attempt with a name that is no user's: the name is never written
_RECOVERY_RE = re.compile(r"^[a-z0-9]{5}-?[a-z0-9]{5}$")


class Service:
    def __init__(self, paths: StorePaths, *, clock: Callable[[], float] | None = None):
        self.paths = paths
        self._clock = clock or time.time
        self._db: Database | None = None
        self._opening = threading.Lock()
        self._box: crypto.SecretBox | None = None
        self._sessions: dict[str, Session] = {}
        self._listing: _Listing | None = None
        self._listing_lock = threading.Lock()
        self._refusals: dict[tuple[str, str], list] = {}  # (actor, detail): [first refused at, refused since]
        self._refusals_lock = threading.Lock()
        self.migrated_from: Path | None = None  # a JSON store this process moved to SQLite

    # -- the store -----------------------------------------------------------------------------
    @property
    def db(self) -> Database:
        """The store, opened at first use; a JSON store of earlier versions is moved to SQLite."""
        if self._db is None:
            with self._opening:
                if self._db is None:
                    self._db = self._open()
        return self._db

    def _open(self) -> Database:
        path = self.paths.db
        if is_url(path):
            return open_store(path)
        try:
            return SQLiteDatabase.open(path)
        except JsonLayout as exc:
            source, target = path, legacy.sqlite_path(path)
            if target == path:
                raise StoreCorrupt(
                    f"store {path} is not an SQLite database: it holds JSON, and only a file named .json is "
                    "taken for an earlier version's store; it was left untouched"
                ) from exc
            if os.path.lexists(target):  # moved before: the SQLite store is the one in use
                return SQLiteDatabase.open(target)
        except StoreMissing:
            source, target = legacy.json_path(path), path
            if path.suffix == ".json" or not os.path.lexists(source):
                raise
        db, moved = legacy.migrate(source, target, actor=f"os:{os_actor()}", now=self._clock())
        if moved:
            self.migrated_from = source
        return db

    @classmethod
    def create(
        cls,
        paths: StorePaths,
        *,
        issuer: str,
        mode: PolicyMode = PolicyMode.MANDATORY,
        actor: str,
        admin: NewUser | None = None,
        password: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Service:
        """A new store, its key file and optionally its first administrator; `actor`: the OS user.

        Everything is checked before any file is made, and existing files are never replaced.
        """
        issuer = clean_issuer(issuer)
        if admin is not None:
            admin = _clean_new_user(admin)._replace(role=Role.ADMIN)
            password_hash = crypto.hash_password(_check_password(password or ""))
        for existing in () if is_url(paths.db) else (paths.db, legacy.json_path(paths.db)):
            if os.path.islink(existing):
                raise StoreError(f"{existing} is a symbolic link: refusing to make a store through it")
            if os.path.lexists(existing):
                raise StoreError(f"a store already exists at {existing}; refusing to overwrite it")
        service = cls(paths, clock=clock)
        now = service._clock()
        folders = (paths.key.parent,) if is_url(paths.db) else (paths.key.parent, paths.db.parent)
        with fs.new_folders(*folders):  # those it makes are gone again if the store cannot be made
            master = crypto.create_key_file(paths.key)
            try:
                box = crypto.SecretBox(master)
                events = [service._event(f"os:{actor}", "store.created", None, "ok", f"issuer {issuer}")]
                users = []
                if admin is not None:
                    users.append(_new_record(admin, now, password_hash))
                    events.append(service._event(f"os:{actor}", "user.add", users[0].key, "ok", "role admin"))

                def populate(w: Writer) -> None:
                    w.add_users(users)
                    w.record(events)

                service._db = create_store(paths.db, Settings(mode, True, issuer, box.check, now), populate)
            except BaseException:
                paths.key.unlink(missing_ok=True)  # made above for a store that could not be made
                raise
        service._box = box
        return service

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- sessions ------------------------------------------------------------------------------
    def operator(self, os_user: str) -> Session:
        """The host's operator (the CLI): whoever can read the store and its key controls it anyway."""
        self.db.settings()  # a missing, unsafe or damaged store fails here, before any command runs
        return self._register(Session(username=os_user, role=Role.ADMIN, scope=Scope.FULL, operator=True))

    def logout(self, session: Session) -> None:
        self._sessions.pop(session.token, None)

    def login(self, username: str, password: str) -> AuthResult:
        """First factor. Unknown user, wrong password and deactivated account get one answer, and
        a series of them the same answers (an unknown name is locked out like an account)."""
        key = username_key(username.strip())
        checked = self.db.user(key)
        box = self._secrets()
        # scrypt runs outside the transaction: other sessions and processes are not held up by it.
        checked_hash = checked.password if checked else None
        password_ok = crypto.verify_password(password, checked_hash)
        now = self._clock()
        with self._tx() as tx:
            record = tx.w.user(key)
            if record is None:
                return self._unknown_failure(tx, box.name_tag(key), now, "login.password", UNKNOWN, None)
            locked = locked_until(record.locked_until, now)
            if locked:
                tx.w.touch_user(key)  # the disk work of a failure: timing tells no state
                tx.log(record.username, "login", key, "locked")
                return AuthResult(Outcome.LOCKED, locked_until=locked)
            if not password_ok or record.password != checked_hash or not record.active:
                return self._failure(tx, record, now, record.username, "login.password", None)
            status = _status(record.enrolled, tx.policy)
            role = ROLES[record.role]
            if status is Status.ACTIVATED:
                tx.log(record.username, "login.password", key, "ok", "code required")
                session = Session(record.username, role, Scope.CODE, expires_at=now + CHALLENGE_SECONDS)
                return AuthResult(Outcome.CODE_REQUIRED, session=self._register(session))
            if status is Status.PENDING:
                tx.log(record.username, "login.password", key, "ok", "enrollment required")
                session = Session(record.username, role, Scope.ENROLL, expires_at=now + ENROLL_SECONDS)
                return AuthResult(Outcome.ENROLLMENT_REQUIRED, session=self._register(session))
            tx.w.clear_failures(key, now, login=True)
            tx.log(record.username, "login", key, "ok", "2FA disabled: password only")
            return AuthResult(Outcome.OK, session=self._register(Session(record.username, role, Scope.FULL)))

    def login_code(self, challenge: Session, code: str) -> AuthResult:
        """Second factor: a TOTP code or a recovery code, against the session from `login`."""
        self._require(challenge, scopes=(Scope.CODE,))
        result = self._check_second_factor(challenge.username, code, action="login", login=True)
        if result.outcome is Outcome.OK:
            self.logout(challenge)
            session = self._register(Session(challenge.username, challenge.role, Scope.FULL))
            return replace(result, session=session)
        if result.outcome is Outcome.LOCKED:
            self.logout(challenge)
        return result

    def verify(self, username: str, code: str, *, actor: str = "verify") -> AuthResult:
        """One code for another system (PAM, a web app); no password, no session."""
        return self._check_second_factor(username, code, action="verify", login=False, actor=actor)

    # -- reading -------------------------------------------------------------------------------
    def policy(self) -> Policy:
        return self.db.settings().policy

    def peek_policy(self) -> Policy:
        """The policy alone, for the sign-in screen's title: one small read."""
        return self.policy()

    def preload(self) -> tuple[User, ...]:
        """Checks the store whole and builds the user list ahead of need (from a worker, at
        start-up, before anyone signed in): what list_users will return until the store changes."""
        problem = self.db.integrity_problem()
        if problem is not None:
            raise StoreCorrupt(f"store {self.db.name} is damaged ({problem}); restore it from a backup")
        return self._all_users()

    @property
    def generation(self) -> object:
        """Changes whenever the store's data changed (here or in another process) since the last read."""
        return self.db.generation

    def list_users(self, actor: Session) -> tuple[User, ...]:
        """Every user (staff only), as immutable records; remade only where the store changed."""
        self._require(actor, staff=True)
        return self._all_users()

    def _all_users(self) -> tuple[User, ...]:
        with self._listing_lock:
            now, generation = self._clock(), self.db.generation
            listing = self._listing
            if listing is not None and listing.generation == generation and now < listing.lock_ends:
                return listing.users
            policy = self.policy()
            changed, cursor = self.db.changes(listing.cursor if listing is not None else None)
            with gc_paused:
                self._listing = _Listing.after(listing, changed, cursor, generation, policy, now, self.db.name)
            return self._listing.users

    def get_user(self, actor: Session, username: str) -> User:
        """Staff may read anyone; an agent only themselves."""
        self._require(actor, self_or_staff=username)
        record = self.db.user(username_key(username))
        if record is None:
            raise UnknownUser(f"no user {username!r}")
        return _user(record, self.policy(), self._clock())

    def rollout(self, actor: Session) -> Rollout:
        """Counts over active accounts: deactivated users are out of the rollout."""
        users = [u for u in self.list_users(actor) if u.active]
        count = {s: 0 for s in Status}
        for user in users:
            count[user.status] += 1
        return Rollout(len(users), count[Status.ACTIVATED], count[Status.PENDING], count[Status.DISABLED])

    def audit_version(self) -> int:
        """Changes whenever an event was recorded."""
        return self.db.audit_head()

    def audit(
        self,
        actor: Session,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events, newest first, at most `limit`; `user` matches actor or target
        (`os:NAME` for the CLI's operator)."""
        self._require(actor, staff=True)
        return self.db.audit(user=username_key(user) if user else None, action=action, since=since, limit=limit)

    # -- enrollment ----------------------------------------------------------------------------
    def begin_enrollment(self, actor: Session, username: str) -> Enrollment:
        """A fresh secret, held as pending until confirmed; a new begin replaces an old one."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        box = self._secrets()
        with self._tx() as tx:
            record = self._record(tx, username)
            if not tx.policy.enabled:
                raise PolicyError("2FA is turned off for this contact center; turn it on to enroll users")
            if not record.active:
                raise PolicyError(f"{record.username} is deactivated")
            secret = totp.new_secret()
            tx.w.update_user(record.key, pending_secret=box.encrypt(secret, record.key))
            tx.log(actor.actor, "enroll.begin", record.key, "ok")
            uri = totp.provisioning_uri(secret, record.username, tx.policy.issuer)
            return Enrollment(record.username, tx.policy.issuer, secret, uri)

    def confirm_enrollment(self, actor: Session, username: str, code: str) -> ConfirmResult:
        """Checks a code of the pending secret; on success it becomes the user's active secret."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        box = self._secrets()
        now = self._clock()
        with self._tx() as tx:
            record = self._record(tx, username)
            key = record.key
            locked = locked_until(record.locked_until, now)
            if locked:
                tx.log(actor.actor, "enroll.confirm", key, "locked")
                return ConfirmResult(Outcome.LOCKED, locked_until=locked)
            if not record.active:
                raise PolicyError(f"{record.username} is deactivated")
            if not record.pending_secret:
                raise PolicyError(f"no enrollment is under way for {record.username}; begin one first")
            secret = box.decrypt(record.pending_secret, key)
            code = totp.normalize_code(code)
            step = totp.matching_step(secret, code, now, window=tx.policy.window) if code.isdigit() else None
            if step is None:
                _, until = tx.w.count_failure(key, now, tx.policy)
                if until:
                    tx.log(record.username, "lock", key, "locked", _lock_detail(until, now))
                tx.log(actor.actor, "enroll.confirm", key, "failed", "wrong code")
                if until:
                    return ConfirmResult(Outcome.LOCKED, locked_until=_dt(until))
                return ConfirmResult(Outcome.INVALID)
            codes = tuple(_recovery_code() for _ in range(RECOVERY_CODES))
            login = actor.scope is Scope.ENROLL
            tx.w.update_user(
                key,
                recovery=recovery_column(box.recovery_hash(c.replace("-", ""), key) for c in codes),
                secret=record.pending_secret,
                pending_secret=None,
                activated_at=now,
                last_step=step,  # the confirming code cannot be replayed to log in
                failures=0,
                lock_count=0,
                locked_until=None,
                **({"last_login_at": now} if login else {}),
            )
            tx.log(actor.actor, "enroll.confirm", key, "ok")
            session = None
            if login:
                self.logout(actor)
                tx.log(record.username, "login", key, "ok", "after enrollment")
                session = self._register(Session(record.username, ROLES[record.role], Scope.FULL))
            return ConfirmResult(Outcome.OK, recovery_codes=codes, session=session)

    def cancel_enrollment(self, actor: Session, username: str) -> None:
        """Drops a pending secret (the wizard was cancelled): nothing is left half-done."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        with self._tx() as tx:
            record = self._record(tx, username)
            if record.pending_secret:
                tx.w.update_user(record.key, pending_secret=None)
                tx.log(actor.actor, "enroll.cancel", record.key, "ok")

    # -- administration ------------------------------------------------------------------------
    def add_user(self, actor: Session, new: NewUser, *, password: str | None = None) -> User:
        self._require(actor, admin=True)
        new = _clean_new_user(new)
        password_hash = crypto.hash_password(_check_password(password)) if password else None
        with self._tx() as tx:
            record = _new_record(new, self._clock(), password_hash)
            if tx.w.user(record.key) is not None:
                raise InvalidInput(f"username {new.username!r} already exists")
            tx.w.add_users([record])
            tx.log(actor.actor, "user.add", record.key, "ok", f"role {new.role.value}")
            return _user(record, tx.policy, self._clock())

    def import_users(self, actor: Session, data: bytes) -> int:
        """All rows or none: every bad row is reported (ImportRejected) and nothing is written."""
        from .csvio import parse_users_csv  # the CSV machinery, for imports only

        self._require(actor, admin=True)
        # Checked outside the transaction, so codes are checked meanwhile. Users are never deleted:
        # the same count inside it means the same usernames, else the check runs again there.
        keys = self.db.user_keys()
        with gc_paused:
            rows = parse_users_csv(data, keys)
            with self._tx() as tx:
                if tx.w.user_count() != len(keys):
                    rows = parse_users_csv(data, tx.w.user_keys())
                tx.w.add_new_users(rows, self._clock())
                tx.log(actor.actor, "user.import", None, "ok", f"{len(rows)} users")
        return len(rows)

    def seed_users(self, actor: Session, seeds: list) -> int:
        """Bulk accounts with a history (the demo): `seeds` are demo.SeedUser records.

        Activated ones get a random secret nobody holds: they show the rollout, not a login.
        """
        self._require(actor, admin=True)
        box = self._secrets()
        records = []
        with gc_paused:
            for seed in seeds:
                record = _new_record(_clean_new_user(seed.user), seed.created_at, None)
                if seed.activated_at is not None:
                    # Codes nobody is shown: random hashes are enough, and far cheaper to draw.
                    hashes = secrets.token_hex(16 * RECOVERY_CODES)
                    record = replace(record, secret=box.encrypt(totp.new_secret(), record.key),
                                     activated_at=seed.activated_at, last_login_at=seed.last_login_at,
                                     recovery=recovery_column(hashes[i : i + 32] for i in range(0, len(hashes), 32)))  # fmt: skip
                records.append(record)
            with self._tx() as tx:
                tx.w.add_users(records)
                tx.log(actor.actor, "user.import", None, "ok", f"{len(records)} demo users")
        return len(records)

    def edit_user(
        self,
        actor: Session,
        username: str,
        *,
        name: str | None = None,
        email: str | None = None,
        role: Role | str | None = None,
        team: str | None = None,
    ) -> User:
        """Changes the given fields; an empty string clears email or team."""
        self._require(actor, admin=True)
        changes: dict = {}
        if name is not None:
            changes["name"] = clean_name(name)
        if email is not None:
            changes["email"] = clean_email(email)
        if team is not None:
            changes["team"] = clean_team(team)
        if role is not None:
            changes["role"] = clean_role(role.value if isinstance(role, Role) else role).value
        if not changes:
            raise InvalidInput("nothing to change")
        with self._tx() as tx:
            record = self._record(tx, username)
            if changes.get("role", Role.ADMIN.value) != Role.ADMIN.value:
                self._keep_an_admin(tx, record)
            tx.w.update_user(record.key, **changes)
            tx.log(actor.actor, "user.edit", record.key, "ok", ", ".join(sorted(changes)))
            return _user(replace(record, **changes), tx.policy, self._clock())

    def set_password(self, actor: Session, username: str, password: str) -> None:
        self._require(actor, admin=True)
        password_hash = crypto.hash_password(_check_password(password))
        with self._tx() as tx:
            record = self._record(tx, username)
            tx.w.update_user(record.key, password=password_hash)
            tx.log(actor.actor, "user.password", record.key, "ok")

    def set_active(self, actor: Session, username: str, active: bool) -> User:
        self._require(actor, admin=True)
        with self._tx() as tx:
            record = self._record(tx, username)
            if not active:
                self._keep_an_admin(tx, record)
            tx.w.update_user(record.key, active=active)
            tx.log(actor.actor, "user.deactivate" if not active else "user.reactivate", record.key, "ok")
            return _user(replace(record, active=active), tx.policy, self._clock())

    def reset_2fa(self, actor: Session, username: str) -> User:
        """Secret and recovery codes wiped: the user is Pending and must enroll again. A Pending
        user has nothing to reset (refused: their days Pending would start again, hiding them in
        the chase list), except an enrollment begun, which is cancelled (its key may have leaked)."""
        self._require(actor, admin=True)
        with self._tx() as tx:
            record = self._record(tx, username)
            if record.secret is None:
                if record.pending_secret is None:
                    raise PolicyError(f"{record.username} has no 2FA to reset: not set up yet (Pending)")
                changes = dict(pending_secret=None)
                tx.w.update_user(record.key, **changes)
                tx.log(actor.actor, "2fa.reset", record.key, "ok", "an enrollment begun, cancelled")
                return _user(replace(record, **changes), tx.policy, self._clock())
            changes = dict(secret=None, pending_secret=None, activated_at=None, last_step=None, reset_at=self._clock())
            changes["recovery"] = recovery_column([])
            tx.w.update_user(record.key, **changes)
            tx.log(actor.actor, "2fa.reset", record.key, "ok")
            return _user(replace(record, recovery_left=0, **changes), tx.policy, self._clock())

    def unlock(self, actor: Session, username: str) -> User:
        """Lifts a lock, and forgets the failures counted towards the next one."""
        self._require(actor, admin=True)
        with self._tx() as tx:
            record = self._record(tx, username)
            if locked_until(record.locked_until, self._clock()) is None and not record.failures:
                raise PolicyError(f"{record.username} is not locked")  # nothing to do, nothing recorded
            changes = dict(failures=0, lock_count=0, locked_until=None)
            tx.w.update_user(record.key, **changes)
            tx.log(actor.actor, "user.unlock", record.key, "ok")
            return _user(replace(record, **changes), tx.policy, self._clock())

    # -- the verification service's clients ------------------------------------------------------
    def add_client(self, actor: Session, name: str, sources: tuple[str, ...] = (), *, radius: bool = False,
                   radius_password: bool = False, radius_unsigned: bool = False) -> tuple[Client, str]:  # fmt: skip
        """A new client and its API key, which is shown this once and kept only as a digest. With
        `radius`, also a RADIUS shared secret (sealed under the key file: the service needs it to
        check packets; `radius_secret` shows it again), for requests from `sources` only;
        `radius_password`: its User-Password is password and code; `radius_unsigned`: it may
        send requests without a Message-Authenticator (NASes from before BlastRADIUS)."""
        self._require(actor, admin=True)
        name, networks = clean_client_name(name), parse_sources(sources)
        radius = radius or radius_password or radius_unsigned
        if radius and not networks:
            raise InvalidInput("a RADIUS client needs --source: its shared secret is looked up by the sender's address")
        key, now = new_key(), self._clock()
        sealed = self._secrets().encrypt(new_radius_secret(), f"client:{name}") if radius else None
        options = " ".join(word for word, on in ((RADIUS_PASSWORD, radius_password), (RADIUS_UNSIGNED, radius_unsigned))
                           if on)  # fmt: skip
        shown = " ".join(map(str, networks))
        with self._tx() as tx:
            if not tx.w.add_client(name, key_hash(key), shown, now, sealed, options):
                raise InvalidInput(f"a client named {name!r} exists (or did: names of revoked clients are not reused)")
            detail = f"{name}" + (f" from {shown}" if shown else "") + (f" with RADIUS {options}".rstrip() if radius else "")
            tx.log(actor.actor, "client.add", None, "ok", detail)
        client = Client(name, networks, datetime.fromtimestamp(now, UTC), None, radius, radius_password, radius_unsigned)
        return client, key

    def radius_secret(self, actor: Session, name: str) -> str:
        """A RADIUS client's shared secret, for the NAS's configuration (operators only)."""
        self._require(actor, operator=True)
        row = next((r for r in self.db.clients() if r[0] == name), None)
        if row is None or row[5] is None:
            raise InvalidInput(f"no RADIUS client {name!r} (see `mfa-console clients list`)")
        return self._secrets().decrypt(row[5], f"client:{name}")

    def radius_clients(self) -> list[tuple[Client, str]]:
        """The active clients that speak RADIUS, each with its shared secret (for the service)."""
        found = []
        for row in self.db.clients():
            client = self._client(row)
            if client.active and client.radius:
                found.append((client, self._secrets().decrypt(row[5], f"client:{client.name}")))
        return found

    def check_password_and_code(self, username: str, typed: str, *, actor: str) -> AuthResult:
        """A RADIUS client's "password+code" (one field, as VPN clients send it): the user's
        password followed by the code (6 digits) or a recovery code (xxxxx-xxxxx)."""
        split = -11 if re.fullmatch(r".*[a-z2-9]{5}-[a-z2-9]{5}", typed) else -6
        result = self.login(username, typed[:split])
        if result.outcome is Outcome.CODE_REQUIRED:
            result = self.login_code(result.session, typed[split:])
        if result.session is not None:
            self.logout(result.session)
        return result

    def second_factor(self, username: str) -> str:
        """What a sign-in of `username` needs after the password: "code", "enroll" (Pending) or
        "off" (2FA turned off). A name that is no active user's gets "code", as a user's would:
        the answer tells no one who exists."""
        if not self.policy().enabled:
            return "off"
        try:
            record = self.db.user(username_key(clean_username(username)))
        except InvalidInput:
            return "code"
        return "enroll" if record is not None and record.active and record.secret is None else "code"

    def list_clients(self, actor: Session) -> list[Client]:
        self._require(actor, staff=True)
        return [self._client(row) for row in self.db.clients()]

    def revoke_client(self, actor: Session, name: str) -> None:
        self._require(actor, admin=True)
        with self._tx() as tx:
            if not tx.w.revoke_client(name, self._clock()):
                raise InvalidInput(f"no client {name!r} to revoke (see `mfa-console clients list`)")
            tx.log(actor.actor, "client.revoke", None, "ok", name)

    def client_for_key(self, key: str, address: str | None) -> Client | None:
        """The active client whose key this is, if `address` may use it; else None (which of the
        three failed is for the audit log, not the caller)."""
        row = self.db.client_by_key_hash(key_hash(key)) if key else None
        client = self._client(row) if row is not None else None
        if client is not None and client.active and client.allows(address):
            return client
        actor = f"client:{client.name}" if client else "client:(unknown)"
        reason = "no such key" if client is None else "revoked" if not client.active else "not allowed"
        detail = self._refusal_detail(actor, f"{reason}, from {address or 'a local socket'}")
        if detail is not None:
            with self._tx() as tx:
                tx.log(actor, "client.refused", None, "refused", detail)
        return None

    def _refusal_detail(self, actor: str, detail: str) -> str | None:
        """The audit detail of a refused key, or None to count it only: the first refusal of its
        kind from an address is recorded, the same again within REFUSALS_SECONDS counted, the
        count recorded with the next one after (a scan's guesses cannot flood the log)."""
        now, mark = self._clock(), (actor, detail)
        with self._refusals_lock:
            seen = self._refusals.get(mark)
            if seen is not None and now - seen[0] < REFUSALS_SECONDS:
                seen[1] += 1
                return None
            if len(self._refusals) >= 10_000:  # addresses gone quiet are forgotten first
                self._refusals = {k: v for k, v in self._refusals.items() if now - v[0] < REFUSALS_SECONDS}
            self._refusals[mark] = [now, 0]
        if seen is not None and seen[1]:
            return f"{detail}; {seen[1]} more the same way since {_dt(seen[0]):%Y-%m-%d %H:%M:%S} UTC"
        return detail

    def _client(self, row: tuple) -> Client:
        try:
            return client_from_row(row)
        except (TypeError, ValueError, AttributeError, OverflowError, OSError, InvalidInput) as exc:
            raise StoreCorrupt(f"store {self.db.name} has a damaged client row; it was left untouched: restore it from a backup") from exc

    def set_enabled(self, actor: Session, enabled: bool) -> Policy:
        """Turns 2FA on or off for the contact center; refused while the plan makes it mandatory.

        Turning it off keeps every secret: turned on again, Activated users are Activated as
        before (same authenticator entry) and Pending users are Pending.
        """
        self._require(actor, admin=True)
        with self._tx() as tx:
            if not enabled and tx.policy.mode is PolicyMode.MANDATORY:
                tx.log(actor.actor, "policy.disable", None, "refused", "mode is mandatory")
                raise PolicyError("2FA is mandatory on this contact center's plan: it cannot be turned off")
            self._set_policy(tx, enabled=enabled)
            tx.log(actor.actor, "policy.enable" if enabled else "policy.disable", None, "ok")
            return tx.policy

    def set_mode(self, actor: Session, mode: PolicyMode) -> Policy:
        """The provider's choice, from the command line only. Mandatory turns 2FA back on."""
        self._require(actor, operator=True)
        with self._tx() as tx:
            self._set_policy(tx, mode=mode, **({"enabled": True} if mode is PolicyMode.MANDATORY else {}))
            tx.log(actor.actor, "policy.mode", None, "ok", mode.value)
            return tx.policy

    def set_issuer(self, actor: Session, issuer: str) -> Policy:
        """The name shown in authenticator apps, for enrollments from now on."""
        self._require(actor, operator=True)
        issuer = clean_issuer(issuer)
        with self._tx() as tx:
            self._set_policy(tx, issuer=issuer)
            tx.log(actor.actor, "policy.issuer", None, "ok", issuer)
            return tx.policy

    # -- internals -----------------------------------------------------------------------------
    def _register(self, session: Session) -> Session:
        now = self._clock()
        expired = [t for t, s in self._sessions.items() if s.expires_at is not None and s.expires_at < now]
        for token in expired:  # abandoned sign-ins do not pile up in a long-running dashboard
            del self._sessions[token]
        self._sessions[session.token] = session
        return session

    def _require(
        self,
        actor: Session,
        *,
        admin: bool = False,
        staff: bool = False,
        operator: bool = False,
        self_or_admin: str | None = None,
        self_or_staff: str | None = None,
        scopes: tuple[Scope, ...] = (Scope.FULL,),
    ) -> None:
        """Checks the session is ours and still allowed, against the user's current record."""
        if self._sessions.get(getattr(actor, "token", None)) is not actor:
            raise PermissionDenied("not signed in")
        if actor.scope not in scopes:
            raise PermissionDenied("finish signing in first")
        if actor.expires_at is not None and self._clock() > actor.expires_at:
            self.logout(actor)
            raise PermissionDenied("the sign-in took too long; start again with the password")
        if actor.operator:
            return
        if operator:
            self._deny(actor, "only the provider can change this, from the command line")
        record = self.db.user(username_key(actor.username))
        if record is None or not record.active:
            self.logout(actor)
            raise PermissionDenied("this account no longer exists or was deactivated")
        role = ROLES[record.role]
        is_self = lambda name: username_key(name) == record.key  # noqa: E731
        if admin and role is not Role.ADMIN:
            self._deny(actor, "administrators only")
        if staff and role is Role.AGENT:
            self._deny(actor, "supervisors and administrators only")
        if self_or_admin is not None and actor.scope is not Scope.FULL:
            # A password-only (enroll) session, even an admin's, may enroll its own user only,
            # and only while Pending: otherwise a password alone could replace someone's phone.
            if not is_self(self_or_admin) or record.enrolled:
                self._deny(actor, "finish signing in first")
        if self_or_admin is not None and role is not Role.ADMIN and not is_self(self_or_admin):
            self._deny(actor, "you can only enroll yourself")
        if self_or_staff is not None and role is Role.AGENT and not is_self(self_or_staff):
            self._deny(actor, "you can only see your own account")

    def _deny(self, actor: Session, reason: str):
        with self.db.write() as w:
            w.record([self._event(actor.actor, "permission", None, "denied", reason)])
        raise PermissionDenied(f"permission denied: {reason}")

    def _event(self, actor: str, action: str, target: str | None, outcome: str, detail: str | None) -> AuditEvent:
        return AuditEvent(datetime.fromtimestamp(self._clock(), UTC), actor, action, target, outcome, detail)

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        """A write transaction whose events commit with it. When the use-case refuses (raises),
        nothing it changed is kept, and the refusals it logged are recorded on their own."""
        tx = _Tx(self)
        try:
            with self.db.write() as w:
                tx.w, tx.policy = w, w.settings().policy
                yield tx
                w.record(tx.events)
        except BaseException:
            refusals = [e for e in tx.events if e.outcome != "ok"]
            if refusals:
                try:
                    with self.db.write() as w:
                        w.record(refusals)
                except StoreError:
                    pass  # the store itself failed: the error on its way out says so
            raise

    def _secrets(self) -> crypto.SecretBox:
        if self._box is None:
            box = crypto.SecretBox(crypto.load_key_file(self.paths.key))
            if self.db.settings().key_check != box.check:
                raise KeyFileError(f"key file {self.paths.key} does not belong to the store {self.db.name}")
            self._box = box
        return self._box

    @staticmethod
    def _record(tx: _Tx, username: str) -> UserRecord:
        record = tx.w.user(username_key(username))
        if record is None:
            raise UnknownUser(f"no user {username!r}")
        return record

    def _keep_an_admin(self, tx: _Tx, record: UserRecord) -> None:
        if record.role == Role.ADMIN.value and record.active and not tx.w.active_admins() - {record.key}:
            raise PolicyError(f"{record.username} is the last active administrator")

    def _set_policy(self, tx: _Tx, **changes) -> None:
        tx.w.update_settings(**changes)
        tx.policy = tx.w.settings().policy

    def _check_second_factor(
        self, username: str, code: str, *, action: str, login: bool, actor: str | None = None
    ) -> AuthResult:
        """A TOTP or recovery code. A wrong code, an unknown name, a locked account: each costs
        one read, one decryption, the code checked, and one write of its answer and event."""
        key = username_key(username.strip())
        now = self._clock()
        code = totp.normalize_code(code)
        record = self.db.user(key)  # read before the write lock: the crypto is not done holding it
        box = self._secrets()
        usable = record is not None and record.active
        secret = box.decrypt_or_dummy(record.secret if usable else None, key)
        is_totp = code.isdigit() and len(code) == 6
        step = totp.matching_step(secret, code if is_totp else "", now, window=1)
        recovery = _RECOVERY_RE.match(code.lower()) is not None
        plain = code.lower().replace("-", "")
        hashes = (box.recovery_hash(plain, key), legacy.LEGACY_RECOVERY_PREFIX + box.legacy_recovery_hash(plain))
        with self._tx() as tx:
            if not usable:
                if record is None:
                    return self._unknown_failure(tx, box.name_tag(key), now, action, actor or UNKNOWN, None)
                return self._unknown_failure(tx, box.name_tag(key), now, action, actor or record.username, key,
                                             "deactivated user")  # fmt: skip
            who = actor or record.username
            locked = locked_until(record.locked_until, now)
            if locked:
                tx.w.touch_user(key)  # the disk work of a wrong code's failure: timing tells no state
                tx.log(who, action, key, "locked")
                return AuthResult(Outcome.LOCKED, locked_until=locked)
            if _status(record.enrolled, tx.policy) is not Status.ACTIVATED:
                tx.log(who, action, key, "failed", "no active 2FA")
                return AuthResult(Outcome.NOT_ENROLLED)
            if step is not None:
                if tx.w.accept_step(key, step, now, sealed_secret=record.secret, login=login):
                    tx.log(who, action, key, "ok", "totp")
                    return AuthResult(Outcome.OK)
                reason = "replayed code"
            elif recovery:
                left = tx.w.use_recovery_code(key, hashes, now, login=login)
                if left is not None:
                    tx.log(who, action, key, "ok", f"recovery code ({left} left)")
                    return AuthResult(Outcome.OK, used_recovery_code=True, recovery_codes_left=left)
                reason = "wrong recovery code"
            else:
                reason = "wrong code" if is_totp else "malformed code"
            return self._failure(tx, record, now, who, action, reason)

    def _failure(self, tx: _Tx, record: UserRecord, now: float, who: str, action: str,
                 reason: str | None) -> AuthResult:  # fmt: skip
        counted, until = tx.w.count_failure(record.key, now, tx.policy)
        if not counted:  # locked by another attempt since it was read
            tx.log(who, action, record.key, "locked")
            return AuthResult(Outcome.LOCKED, locked_until=_dt(until))
        if until:
            tx.log(record.username, "lock", record.key, "locked", _lock_detail(until, now))
        tx.log(who, action, record.key, "failed", reason)
        return AuthResult(Outcome.LOCKED, locked_until=_dt(until)) if until else AuthResult(Outcome.INVALID)

    def _unknown_failure(self, tx: _Tx, tag: str, now: float, action: str, who: str, target: str | None,
                         what: str = "unknown name") -> AuthResult:  # fmt: skip
        """A name that is no active user's: counted under its tag, answered as an account is."""
        counted, until = tx.w.count_unknown_failure(tag, now, tx.policy)
        tx.log(who, action, target, "failed" if counted else "locked", f"{what} #{tag}")
        if until:
            return AuthResult(Outcome.LOCKED, locked_until=_dt(until))
        return AuthResult(Outcome.INVALID)


@dataclass(frozen=True, slots=True)
class _Listing:
    """The users list_users made, and what from: a change remakes only the users it touched."""

    generation: object  # the store's (Database.generation), when they were made
    cursor: object  # where the store's changes were read up to (Database.changes)
    enabled: bool  # 2FA on or off (every status depends on it)
    summaries: dict[str, UserSummary]
    made: dict[str, User]
    lock_ends: float  # when the first lock shown ends: records change then
    users: tuple[User, ...]  # what list_users returns

    @classmethod
    def after(cls, old: _Listing | None, changed: list[UserSummary], cursor: object, generation: object,
              policy: Policy, now: float, store: str) -> _Listing:  # fmt: skip
        """The listing `old` brought up to date with the `changed` summaries (all of them if None)."""
        again = old is None or old.enabled != policy.enabled or now >= old.lock_ends
        summaries = {} if old is None else old.summaries  # only the listing lock's holder touches them
        summaries.update((s.key, s) for s in changed)
        try:
            if again:
                made = {key: _user(s, policy, now) for key, s in summaries.items()}
                ends = (s.locked_until for s in summaries.values() if s.locked_until and s.locked_until > now)
            else:
                made = old.made
                made.update((s.key, _user(s, policy, now)) for s in changed)
                ends = [old.lock_ends, *(s.locked_until for s in changed if s.locked_until and s.locked_until > now)]
            lock_ends = min(ends, default=math.inf)
        except (TypeError, ValueError, KeyError, OverflowError, OSError) as exc:  # a value damaged on disk
            raise StoreCorrupt(f"store {store} has a damaged user row; it was left untouched: restore it from a backup") from exc
        users = tuple(made.values()) if again or changed else old.users
        return cls(generation, cursor, policy.enabled, summaries, made, lock_ends, users)


class _Tx:
    """One transaction: its statements, its policy and the audit events recorded with it."""

    def __init__(self, service: Service):
        self.service = service
        self.w: Writer
        self.policy: Policy
        self.events: list[AuditEvent] = []

    def log(self, actor: str, action: str, target: str | None, outcome: str, detail: str | None = None) -> None:
        self.events.append(self.service._event(actor, action, target, outcome, detail))


def _status(enrolled: bool, policy: Policy) -> Status:
    if not policy.enabled:
        return Status.DISABLED
    return Status.ACTIVATED if enrolled else Status.PENDING


def _user(row: UserRecord | UserSummary, policy: Policy, now: float) -> User:
    """The public record of a user: status derived from the policy, a lock shown while it runs."""
    locked = row.locked_until
    enrolled = row.enrolled == 1  # a summary's are 1 or 0
    created = _dt(row.created_at)
    return User(
        username=row.username,
        name=row.name,
        role=ROLES[row.role],
        status=_status(enrolled, policy),
        email=row.email,
        team=row.team,
        active=row.active == 1,
        created_at=created,
        activated_at=_dt(row.activated_at),
        last_login_at=_dt(row.last_login_at),
        pending_since=None if enrolled else _dt(row.reset_at) if row.reset_at is not None else created,
        failures=row.failures,
        locked_until=_dt(locked) if locked is not None and locked > now else None,
        recovery_codes_left=row.recovery_left,
    )


def _new_record(new: NewUser, now: float, password_hash: str | None) -> UserRecord:
    return UserRecord(key=username_key(new.username), username=new.username, name=new.name, role=new.role.value,
                      created_at=now, email=new.email, team=new.team, password=password_hash)  # fmt: skip


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _lock_detail(until: float, now: float) -> str:
    return f"{round((until - now) / 60)} min"  # the length of the lock that just began


def os_actor() -> str:
    """The OS account running this process, and who ran sudo, if anyone: the actor the audit names."""
    import pwd

    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # an account without a passwd entry (a container's uid)
        name = str(os.geteuid())
    sudo = os.environ.get("SUDO_USER")
    return f"{name}(sudo:{sudo})" if sudo and sudo != name else name


def _recovery_code() -> str:
    """Ten characters of a 31-letter alphabet (49 bits), from one draw of the OS's CSPRNG."""
    n = secrets.randbelow(len(RECOVERY_ALPHABET) ** 10)
    chars = []
    for _ in range(10):
        n, digit = divmod(n, len(RECOVERY_ALPHABET))
        chars.append(RECOVERY_ALPHABET[digit])
    return f"{''.join(chars[:5])}-{''.join(chars[5:])}"


def _clean_new_user(new: NewUser) -> NewUser:
    return NewUser(
        username=clean_username(new.username),
        name=clean_name(new.name),
        role=clean_role(new.role.value if isinstance(new.role, Role) else new.role),
        email=clean_email(new.email or ""),
        team=clean_team(new.team or ""),
    )


def _check_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("password: at least 8 characters")
    if len(password) > 1024:
        raise InvalidInput("password: at most 1024 characters")
    return password
