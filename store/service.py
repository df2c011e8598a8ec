"""The use-cases of mfa-console: one object, typed records in and out.

Every rule lives here — roles, policy, lockout, replay — so the CLI and the dashboard cannot
differ. A front end gets a `Session` from `login` (people) or `operator` (the host's operator,
for the command line) and passes it to every call; the service re-reads that user's role and
account state from the store on each call, so a demoted or deactivated user loses rights at once.
"""

from __future__ import annotations

import enum
import hmac
import itertools
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tinydb.table import Document, Table

from . import crypto, totp
from .audit import AuditLog
from .errors import InvalidInput, PermissionDenied, PolicyError, StoreError, UnknownUser
from .models import ROLES, AuditEvent, NewUser, Policy, PolicyMode, Role, Status, User
from .paths import StorePaths
from .storage import META_ID, META_TABLE, SCHEMA_VERSION, LineTable, LockedAtomicStorage, gc_paused
from .validation import clean_email, clean_issuer, clean_name, clean_role, clean_team, clean_username, username_key

RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
CHALLENGE_SECONDS = 300
ENROLL_SECONDS = 1800  # time to find the phone and install an app
_RECOVERY_RE = re.compile(r"^[a-z0-9]{5}-?[a-z0-9]{5}$")


class _StrTable(Table):
    """Users are keyed by their case-folded username: lookups are O(1), not a scan."""

    document_id_class = str

    def _update_table(self, updater) -> None:
        # TinyDB copies the whole table around each change; the storage's tables take changes
        # in place (the users table keeps only what the transaction touched).
        tables = self._storage.read()
        updater(tables[self.name])
        self._storage.write(tables)


class Scope(str, enum.Enum):
    FULL = "full"
    CODE = "code"  # password accepted; a TOTP or recovery code is still due
    ENROLL = "enroll"  # password accepted; the user must enroll before going on


@dataclass(frozen=True, slots=True, eq=False)
class Session:
    username: str
    role: Role
    scope: Scope
    operator: bool = False
    expires_at: float | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def actor(self) -> str:
        return f"os:{self.username}" if self.operator else self.username


class Outcome(str, enum.Enum):
    OK = "ok"
    INVALID = "invalid"  # unknown user, wrong password, wrong or replayed code: one answer
    LOCKED = "locked"
    CODE_REQUIRED = "code-required"
    ENROLLMENT_REQUIRED = "enrollment-required"
    NOT_ENROLLED = "not-enrolled"  # verify: the user has no active 2FA (Pending or Disabled)


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: Outcome
    session: Session | None = None
    locked_until: datetime | None = None
    used_recovery_code: bool = False
    recovery_codes_left: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Shown once, during enrollment; never retrievable afterwards."""

    username: str
    issuer: str
    secret: str
    uri: str

    @property
    def label(self) -> str:
        return f"{self.issuer}:{self.username}"

    @property
    def grouped_secret(self) -> str:
        return totp.group_secret(self.secret)

    @property
    def key_lines(self) -> tuple[str, ...]:
        """The key for manual entry: groups of four, four groups a line."""
        groups = self.grouped_secret.split(" ")
        return tuple(" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4))


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    outcome: Outcome
    recovery_codes: tuple[str, ...] = ()
    session: Session | None = None  # a full session when enrollment was the login's last step
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Rollout:
    total: int
    activated: int
    pending: int
    disabled: int

    @property
    def percent(self) -> float:
        return 100.0 * self.activated / self.total if self.total else 0.0


class Service:
    def __init__(self, paths: StorePaths, *, clock: Callable[[], float] | None = None):
        self.paths = paths
        self._clock = clock or time.time
        self._storage = LockedAtomicStorage(paths.db)
        self._audit = AuditLog(paths.audit)
        self._box: crypto.SecretBox | None = None
        self._sessions: dict[str, Session] = {}
        # The records list_users made, and what from: a change remakes only its users.
        self._made_from: _UsersMadeFrom | None = None

    # -- creating a store ----------------------------------------------------------------------
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
            admin = replace(_clean_new_user(admin), role=Role.ADMIN)
            password_hash = crypto.hash_password(_check_password(password or ""))
        if paths.db.exists():
            raise StoreError(f"a store already exists at {paths.db}; refusing to overwrite it")
        master = crypto.create_key_file(paths.key)
        box = crypto.SecretBox(master)
        service = cls(paths, clock=clock)
        now = service._clock()
        meta = {
            "schema": SCHEMA_VERSION,
            "key_check": box.check,
            "created_at": now,
            "policy": {"mode": mode.value, "enabled": True, "issuer": issuer},
        }
        users = {}
        events = [service._event(f"os:{actor}", "store.created", None, "ok", f"issuer {issuer}")]
        if admin is not None:
            users[username_key(admin.username)] = cls._new_doc(admin, now, password_hash)
            events.append(service._event(f"os:{actor}", "user.add", username_key(admin.username), "ok", "role admin"))
        service._storage = LockedAtomicStorage.create(paths.db, {META_TABLE: {META_ID: meta}, "users": users})
        service._box = box
        service._audit.append(events)
        return service

    def close(self) -> None:
        self._storage.close()

    # -- sessions ------------------------------------------------------------------------------
    def operator(self, os_user: str) -> Session:
        """The host's operator (the CLI): whoever can read the store and its key controls it anyway."""
        with self._storage.reading():
            pass  # a missing or corrupt store fails here, before any command runs
        return self._register(Session(username=os_user, role=Role.ADMIN, scope=Scope.FULL, operator=True))

    def logout(self, session: Session) -> None:
        self._sessions.pop(session.token, None)

    def login(self, username: str, password: str) -> AuthResult:
        """First factor. Unknown user, wrong password and deactivated account get one answer."""
        key = username_key(username.strip())
        shown = username.strip()[:64]  # what an unknown name is recorded as in the audit
        with self._storage.reading() as data:
            stored_hash = (data["users"].get(key) or {}).get("password")
        # scrypt runs outside the lock: other sessions and processes are not held up by it.
        password_ok = crypto.verify_password(password, stored_hash)
        now = self._clock()
        with self._tx() as tx:
            doc = tx.users.get(doc_id=key)
            locked = self._locked_until(doc, now) if doc else None
            if locked:
                tx.log(shown, "login", key, "locked")
                return AuthResult(Outcome.LOCKED, locked_until=locked)
            if doc is None or not password_ok or doc.get("password") != stored_hash or not doc["active"]:
                if doc:
                    locked = self._fail(tx, doc, now)
                else:  # the store is rewritten as for a known name's failure count: timing tells no names
                    self._storage.write(tx.data)
                tx.log(shown, "login.password", key if doc else None, "failed")
                if locked:
                    return AuthResult(Outcome.LOCKED, locked_until=locked)
                return AuthResult(Outcome.INVALID)
            status = self._status(doc, tx.policy)
            role = Role(doc["role"])
            if status is Status.ACTIVATED:
                tx.log(doc["username"], "login.password", key, "ok", "code required")
                session = Session(doc["username"], role, Scope.CODE, expires_at=now + CHALLENGE_SECONDS)
                return AuthResult(Outcome.CODE_REQUIRED, session=self._register(session))
            if status is Status.PENDING:
                tx.log(doc["username"], "login.password", key, "ok", "enrollment required")
                session = Session(doc["username"], role, Scope.ENROLL, expires_at=now + ENROLL_SECONDS)
                return AuthResult(Outcome.ENROLLMENT_REQUIRED, session=self._register(session))
            self._succeed(tx, doc, now, login=True)
            tx.log(doc["username"], "login", key, "ok", "2FA disabled: password only")
            return AuthResult(Outcome.OK, session=self._register(Session(doc["username"], role, Scope.FULL)))

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
        with self._storage.reading() as data:
            return _policy(data[META_TABLE][META_ID])

    def peek_policy(self) -> Policy:
        """The policy from the store's first line, without reading the users: a title for the
        sign-in screen at once. A damaged user line is found later, by the first full read."""
        return _policy(self._storage.head()[META_TABLE][META_ID])

    def preload(self) -> None:
        """Reads the store and builds the user list ahead of need (from a worker, at start-up)."""
        with self._storage.reading() as data:
            self._all_users(data)

    @property
    def generation(self) -> int:
        """Changes whenever the store's data changed (here or in another process) since the last read."""
        with self._storage.reading():
            return self._storage.generation

    def list_users(self, actor: Session) -> tuple[User, ...]:
        """Every user (staff only), as immutable records; cached until the store changes or a lock ends."""
        self._require(actor, staff=True)
        with self._storage.reading() as data:
            return self._all_users(data)

    def _all_users(self, data: dict) -> tuple[User, ...]:
        generation, now = self._storage.generation, self._clock()
        made_from = self._made_from
        if made_from is not None and made_from.generation == generation and now < made_from.lock_ends:
            return made_from.users
        policy = _policy(data[META_TABLE][META_ID])
        table: LineTable = data["users"]
        with gc_paused:
            if (made_from is not None and made_from.enabled == policy.enabled and now < made_from.lock_ends
                    and table.since is not None and table.since[0] is made_from.lines):
                made, lock_ends = self._remake_changed(table, policy, made_from)  # one commit or re-read ago
            else:
                made, lock_ends = self._make_all(table, policy, made_from, now)
        users = tuple(user for _, user in made.values())
        self._made_from = _UsersMadeFrom(generation, policy.enabled, table.version, made, lock_ends, users)
        return users

    def _remake_changed(self, table: LineTable, policy: Policy, made_from: _UsersMadeFrom):
        made, lock_ends = dict(made_from.made), made_from.lock_ends
        for key in table.since[1]:
            line = table.line(key)
            if line is None:
                made.pop(key, None)
                continue
            made[key] = (line, user := self._user(LineTable.parse(line), policy))
            if user.locked_until:
                lock_ends = min(lock_ends, user.locked_until.timestamp())
        return made, lock_ends

    def _make_all(self, table: LineTable, policy: Policy, made_from: _UsersMadeFrom | None, now: float):
        """Every user, reusing the records of lines seen before (the same bytes object)."""
        known = made_from.made if made_from is not None and made_from.enabled == policy.enabled else {}
        made: dict[str, tuple[bytes, User]] = {}
        lock_ends = math.inf
        for key, line in table.lines():
            entry = known.get(key)
            ends = entry and entry[1].locked_until and entry[1].locked_until.timestamp()
            if entry is None or entry[0] is not line or (ends and ends <= now):
                entry = (line, self._user(LineTable.parse(line), policy))
                ends = entry[1].locked_until and entry[1].locked_until.timestamp()
            if ends:
                lock_ends = min(lock_ends, ends)
            made[key] = entry
        return made, lock_ends

    def get_user(self, actor: Session, username: str) -> User:
        """Staff may read anyone; an agent only themselves."""
        self._require(actor, self_or_staff=username)
        with self._storage.reading() as data:
            doc = data["users"].get(username_key(username))
            if doc is None:
                raise UnknownUser(f"no user {username!r}")
            return self._user(doc, _policy(data[META_TABLE][META_ID]))

    def rollout(self, actor: Session) -> Rollout:
        """Counts over active accounts: deactivated users are out of the rollout."""
        users = [u for u in self.list_users(actor) if u.active]
        count = {s: 0 for s in Status}
        for user in users:
            count[user.status] += 1
        return Rollout(len(users), count[Status.ACTIVATED], count[Status.PENDING], count[Status.DISABLED])

    def audit_version(self) -> tuple[int, int] | None:
        """Changes whenever an event was recorded: the audit file's size and mtime."""
        return self._audit.version()

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
        key = username_key(user) if user else None
        matching = (
            e
            for e in self._audit.newest()
            if (key is None or key in (username_key(e.actor), e.target))
            and (action is None or e.action.startswith(action))
            and (since is None or e.at >= since)
        )
        return list(itertools.islice(matching, limit))

    # -- enrollment ----------------------------------------------------------------------------
    def begin_enrollment(self, actor: Session, username: str) -> Enrollment:
        """A fresh secret, held as pending until confirmed; a new begin replaces an old one."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        with self._tx() as tx:
            doc = self._doc(tx, username)
            if not tx.policy.enabled:
                raise PolicyError("2FA is turned off for this contact center; turn it on to enroll users")
            if not doc["active"]:
                raise PolicyError(f"{doc['username']} is deactivated")
            secret = totp.new_secret()
            key = doc.doc_id
            tx.users.update({"pending_secret": self._secrets().encrypt(secret, key)}, doc_ids=[key])
            tx.log(actor.actor, "enroll.begin", key, "ok")
            uri = totp.provisioning_uri(secret, doc["username"], tx.policy.issuer)
            return Enrollment(doc["username"], tx.policy.issuer, secret, uri)

    def confirm_enrollment(self, actor: Session, username: str, code: str) -> ConfirmResult:
        """Checks a code of the pending secret; on success it becomes the user's active secret."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        now = self._clock()
        with self._tx() as tx:
            doc = self._doc(tx, username)
            key = doc.doc_id
            locked = self._locked_until(doc, now)
            if locked:
                tx.log(actor.actor, "enroll.confirm", key, "locked")
                return ConfirmResult(Outcome.LOCKED, locked_until=locked)
            if not doc["active"]:
                raise PolicyError(f"{doc['username']} is deactivated")
            if not doc.get("pending_secret"):
                raise PolicyError(f"no enrollment is under way for {doc['username']}; begin one first")
            secret = self._secrets().decrypt(doc["pending_secret"], key)
            code = totp.normalize_code(code)
            step = totp.matching_step(secret, code, now, window=tx.policy.window) if code.isdigit() else None
            if step is None:
                locked = self._fail(tx, doc, now)
                tx.log(actor.actor, "enroll.confirm", key, "failed", "wrong code")
                if locked:
                    return ConfirmResult(Outcome.LOCKED, locked_until=locked)
                return ConfirmResult(Outcome.INVALID)
            codes = tuple(_recovery_code() for _ in range(RECOVERY_CODES))
            box = self._secrets()
            tx.users.update(
                {
                    "secret": doc["pending_secret"],
                    "pending_secret": None,
                    "activated_at": now,
                    "last_step": step,  # the confirming code cannot be replayed to log in
                    "recovery": [box.recovery_hash(c.replace("-", "")) for c in codes],
                    "failures": 0,
                    "lock_count": 0,
                    "locked_until": None,
                },
                doc_ids=[key],
            )
            tx.log(actor.actor, "enroll.confirm", key, "ok")
            session = None
            if actor.scope is Scope.ENROLL:
                self.logout(actor)
                tx.users.update({"last_login_at": now}, doc_ids=[key])
                tx.log(doc["username"], "login", key, "ok", "after enrollment")
                session = self._register(Session(doc["username"], Role(doc["role"]), Scope.FULL))
            return ConfirmResult(Outcome.OK, recovery_codes=codes, session=session)

    def cancel_enrollment(self, actor: Session, username: str) -> None:
        """Drops a pending secret (the wizard was cancelled): nothing is left half-done."""
        self._require(actor, self_or_admin=username, scopes=(Scope.FULL, Scope.ENROLL))
        with self._tx() as tx:
            doc = self._doc(tx, username)
            if doc.get("pending_secret"):
                tx.users.update({"pending_secret": None}, doc_ids=[doc.doc_id])
                tx.log(actor.actor, "enroll.cancel", doc.doc_id, "ok")

    # -- administration ------------------------------------------------------------------------
    def add_user(self, actor: Session, new: NewUser, *, password: str | None = None) -> User:
        self._require(actor, admin=True)
        new = _clean_new_user(new)
        password_hash = crypto.hash_password(_check_password(password)) if password else None
        with self._tx() as tx:
            key = username_key(new.username)
            if tx.users.contains(doc_id=key):
                raise InvalidInput(f"username {new.username!r} already exists")
            doc = self._new_doc(new, self._clock(), password_hash)
            tx.users.insert(Document(doc, doc_id=key))
            tx.log(actor.actor, "user.add", key, "ok", f"role {new.role.value}")
            return self._user(doc, tx.policy)

    def import_users(self, actor: Session, data: bytes) -> int:
        """All rows or none: every bad row is reported (ImportRejected) and nothing is written."""
        from .csvio import parse_users_csv  # the CSV machinery, for imports only

        self._require(actor, admin=True)
        with gc_paused, self._tx() as tx:
            rows = parse_users_csv(data, set(tx.data["users"]))
            now = self._clock()
            tx.data["users"].add({username_key(row.username): self._new_doc(row, now, None) for row in rows})
            self._storage.write(tx.data)
            tx.log(actor.actor, "user.import", None, "ok", f"{len(rows)} users")
            return len(rows)

    def seed_users(self, actor: Session, seeds: list) -> int:
        """Bulk accounts with a history (the demo): `seeds` are demo.SeedUser records.

        Activated ones get a random secret nobody holds: they show the rollout, not a login.
        """
        self._require(actor, admin=True)
        box = self._secrets()
        with gc_paused, self._tx() as tx:
            docs = {}
            for seed in seeds:
                new = _clean_new_user(seed.user)
                doc = self._new_doc(new, seed.created_at, None)
                if seed.activated_at is not None:
                    key = username_key(new.username)
                    doc.update(
                        secret=box.encrypt(totp.new_secret(), key),
                        activated_at=seed.activated_at,
                        last_login_at=seed.last_login_at,
                        # Codes nobody is shown: random input is enough, and 14× cheaper to draw.
                        recovery=[box.recovery_hash(secrets.token_hex(8)) for _ in range(RECOVERY_CODES)],
                    )
                docs[username_key(new.username)] = doc
            tx.data["users"].add(docs)
            self._storage.write(tx.data)
            tx.log(actor.actor, "user.import", None, "ok", f"{len(docs)} demo users")
            return len(docs)

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
            doc = self._doc(tx, username)
            if changes.get("role", Role.ADMIN.value) != Role.ADMIN.value:
                self._keep_an_admin(tx, doc)
            tx.users.update(changes, doc_ids=[doc.doc_id])
            tx.log(actor.actor, "user.edit", doc.doc_id, "ok", ", ".join(sorted(changes)))
            return self._user(tx.users.get(doc_id=doc.doc_id), tx.policy)

    def set_password(self, actor: Session, username: str, password: str) -> None:
        self._require(actor, admin=True)
        password_hash = crypto.hash_password(_check_password(password))
        with self._tx() as tx:
            doc = self._doc(tx, username)
            tx.users.update({"password": password_hash}, doc_ids=[doc.doc_id])
            tx.log(actor.actor, "user.password", doc.doc_id, "ok")

    def set_active(self, actor: Session, username: str, active: bool) -> User:
        self._require(actor, admin=True)
        with self._tx() as tx:
            doc = self._doc(tx, username)
            if not active:
                self._keep_an_admin(tx, doc)
            tx.users.update({"active": active}, doc_ids=[doc.doc_id])
            tx.log(actor.actor, "user.deactivate" if not active else "user.reactivate", doc.doc_id, "ok")
            return self._user(tx.users.get(doc_id=doc.doc_id), tx.policy)

    def reset_2fa(self, actor: Session, username: str) -> User:
        """Secret and recovery codes wiped: the user is Pending and must enroll again."""
        self._require(actor, admin=True)
        with self._tx() as tx:
            doc = self._doc(tx, username)
            now = self._clock()
            tx.users.update(
                {
                    "secret": None,
                    "pending_secret": None,
                    "recovery": [],
                    "activated_at": None,
                    "last_step": None,
                    "reset_at": now,
                },
                doc_ids=[doc.doc_id],
            )
            tx.log(actor.actor, "2fa.reset", doc.doc_id, "ok")
            return self._user(tx.users.get(doc_id=doc.doc_id), tx.policy)

    def unlock(self, actor: Session, username: str) -> User:
        self._require(actor, admin=True)
        with self._tx() as tx:
            doc = self._doc(tx, username)
            tx.users.update({"failures": 0, "lock_count": 0, "locked_until": None}, doc_ids=[doc.doc_id])
            tx.log(actor.actor, "user.unlock", doc.doc_id, "ok")
            return self._user(tx.users.get(doc_id=doc.doc_id), tx.policy)

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
            self._set_policy(tx, mode=mode.value, **({"enabled": True} if mode is PolicyMode.MANDATORY else {}))
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
        with self._storage.reading() as data:
            doc = data["users"].get(username_key(actor.username))
        if doc is None or not doc["active"]:
            self.logout(actor)
            raise PermissionDenied("this account no longer exists or was deactivated")
        role = Role(doc["role"])
        is_self = lambda name: username_key(name) == username_key(actor.username)  # noqa: E731
        if admin and role is not Role.ADMIN:
            self._deny(actor, "administrators only")
        if staff and role is Role.AGENT:
            self._deny(actor, "supervisors and administrators only")
        if self_or_admin is not None and actor.scope is not Scope.FULL:
            # A password-only (enroll) session, even an admin's, may enroll its own user only,
            # and only while Pending: otherwise a password alone could replace someone's phone.
            if not is_self(self_or_admin) or doc.get("secret"):
                self._deny(actor, "finish signing in first")
        if self_or_admin is not None and role is not Role.ADMIN and not is_self(self_or_admin):
            self._deny(actor, "you can only enroll yourself")
        if self_or_staff is not None and role is Role.AGENT and not is_self(self_or_staff):
            self._deny(actor, "you can only see your own account")

    def _deny(self, actor: Session, reason: str):
        self._audit_now(actor.actor, "permission", None, "denied", reason)
        raise PermissionDenied(f"permission denied: {reason}")

    def _audit_now(self, actor: str, action: str, target: str | None, outcome: str, detail: str | None) -> None:
        with self._storage.transaction():
            self._audit.append([self._event(actor, action, target, outcome, detail)])

    def _event(self, actor: str, action: str, target: str | None, outcome: str, detail: str | None) -> AuditEvent:
        return AuditEvent(datetime.fromtimestamp(self._clock(), UTC), actor, action, target, outcome, detail)

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._storage.transaction() as data:
            tx = _Tx(self, data)
            try:
                yield tx
            except BaseException:
                self._audit.append(tx.events)  # refused (nothing written): recorded as refused
                raise
            self._storage.commit()
            # Recorded once the change is durable: a commit that fails records no "ok".
            self._audit.append(tx.events)

    def _secrets(self) -> crypto.SecretBox:
        if self._box is None:
            box = crypto.SecretBox(crypto.load_key_file(self.paths.key))
            with self._storage.reading() as data:
                expected = data[META_TABLE][META_ID].get("key_check")
            if expected != box.check:
                raise crypto.KeyFileError(f"key file {self.paths.key} does not belong to the store {self.paths.db}")
            self._box = box
        return self._box

    def _doc(self, tx: _Tx, username: str) -> Document:
        doc = tx.users.get(doc_id=username_key(username))
        if doc is None:
            raise UnknownUser(f"no user {username!r}")
        return doc

    def _keep_an_admin(self, tx: _Tx, doc: Document) -> None:
        if doc["role"] != Role.ADMIN.value or not doc["active"]:
            return
        others = any(
            u.role is Role.ADMIN and u.active and username_key(u.username) != doc.doc_id
            for u in self._all_users(tx.data)
        )
        if not others:
            raise PolicyError(f"{doc['username']} is the last active administrator")

    def _set_policy(self, tx: _Tx, **changes) -> None:
        meta = tx.meta.get(doc_id=META_ID)
        tx.meta.update({"policy": {**meta["policy"], **changes}}, doc_ids=[META_ID])
        tx.policy = _policy(tx.meta.get(doc_id=META_ID))

    def _check_second_factor(
        self, username: str, code: str, *, action: str, login: bool, actor: str | None = None
    ) -> AuthResult:
        key = username_key(username.strip())
        now = self._clock()
        code = totp.normalize_code(code)
        with self._tx() as tx:
            doc = tx.users.get(doc_id=key)
            who = actor or (doc["username"] if doc else username.strip()[:64])
            if doc is None or not doc["active"]:
                tx.log(who, action, None, "failed", "unknown or deactivated user")
                return AuthResult(Outcome.INVALID)
            locked = self._locked_until(doc, now)
            if locked:
                tx.log(who, action, key, "locked")
                return AuthResult(Outcome.LOCKED, locked_until=locked)
            if self._status(doc, tx.policy) is not Status.ACTIVATED:
                tx.log(who, action, key, "failed", "no active 2FA")
                return AuthResult(Outcome.NOT_ENROLLED)
            box = self._secrets()
            if code.isdigit() and len(code) == tx.policy.digits:
                step = totp.matching_step(box.decrypt(doc["secret"], key), code, now, window=tx.policy.window)
                if step is not None and (doc.get("last_step") is None or step > doc["last_step"]):
                    self._succeed(tx, doc, now, login=login, last_step=step)
                    tx.log(who, action, key, "ok", "totp")
                    return AuthResult(Outcome.OK)
                reason = "replayed code" if step is not None else "wrong code"
            elif _RECOVERY_RE.match(code.lower()):
                wanted = box.recovery_hash(code.lower().replace("-", ""))
                hashes = doc.get("recovery") or []
                matches = [hmac.compare_digest(wanted, h) for h in hashes]  # all compared
                if any(matches):
                    left = [h for h, hit in zip(hashes, matches) if not hit]
                    self._succeed(tx, doc, now, login=login, recovery=left)
                    tx.log(who, action, key, "ok", f"recovery code ({len(left)} left)")
                    return AuthResult(Outcome.OK, used_recovery_code=True, recovery_codes_left=len(left))
                reason = "wrong recovery code"
            else:
                reason = "malformed code"
            locked = self._fail(tx, doc, now)
            tx.log(who, action, key, "failed", reason)
            if locked:
                return AuthResult(Outcome.LOCKED, locked_until=locked)
            return AuthResult(Outcome.INVALID)

    def _locked_until(self, doc: Document, now: float) -> datetime | None:
        until = doc.get("locked_until")
        return datetime.fromtimestamp(until, UTC) if until and until > now else None

    def _fail(self, tx: _Tx, doc: Document, now: float) -> datetime | None:
        """One more consecutive failure; the 5th locks, each further lock twice as long (capped)."""
        policy = tx.policy
        failures = doc.get("failures", 0) + 1
        changes: dict = {"failures": failures}
        locked = None
        if failures >= policy.max_failures:
            lock_count = doc.get("lock_count", 0) + 1
            minutes = min(policy.lock_minutes * 2 ** (lock_count - 1), policy.lock_cap_minutes)
            changes.update(failures=0, lock_count=lock_count, locked_until=now + minutes * 60)
            locked = datetime.fromtimestamp(now + minutes * 60, UTC)
            tx.log(doc["username"], "lock", doc.doc_id, "locked", f"{minutes} min after {failures} failures")
        tx.users.update(changes, doc_ids=[doc.doc_id])
        return locked

    def _succeed(self, tx: _Tx, doc: Document, now: float, *, login: bool, **changes) -> None:
        changes.update(failures=0, lock_count=0, locked_until=None)
        if login:
            changes["last_login_at"] = now
        tx.users.update(changes, doc_ids=[doc.doc_id])

    @staticmethod
    def _status(doc: dict, policy: Policy) -> Status:
        if not policy.enabled:
            return Status.DISABLED
        return Status.ACTIVATED if doc.get("secret") else Status.PENDING

    def _user(self, doc: dict, policy: Policy) -> User:
        now = self._clock()
        locked = doc.get("locked_until")
        created, reset = _dt(doc.get("created_at")), doc.get("reset_at")
        return User(
            username=doc["username"],
            name=doc["name"],
            role=ROLES[doc["role"]],
            status=self._status(doc, policy),
            email=doc.get("email"),
            team=doc.get("team"),
            active=doc["active"],
            created_at=created,
            activated_at=_dt(doc.get("activated_at")),
            last_login_at=_dt(doc.get("last_login_at")),
            pending_since=None if doc.get("secret") else _dt(reset) if reset else created,
            failures=doc.get("failures", 0),
            locked_until=_dt(locked) if locked and locked > now else None,
            recovery_codes_left=len(doc.get("recovery") or ()),
        )

    @staticmethod
    def _new_doc(new: NewUser, now: float, password_hash: str | None) -> dict:
        """A new account. The other fields (secret, pending_secret, recovery, failures, lock_count,
        locked_until, last_step, activated_at, last_login_at, reset_at) are absent: None or none yet."""
        doc = {"username": new.username, "name": new.name, "role": new.role.value, "active": True, "created_at": now}
        for field_, value in (("email", new.email), ("team", new.team), ("password", password_hash)):
            if value is not None:
                doc[field_] = value
        return doc


@dataclass(frozen=True, slots=True)
class _UsersMadeFrom:
    generation: int  # the storage's, when they were made
    enabled: bool  # 2FA on or off (every status depends on it)
    lines: object  # the users table's `version`
    made: dict[str, tuple[bytes, User]]  # key -> (its line, its record)
    lock_ends: float  # when the first lock shown ends: records change then
    users: tuple[User, ...]  # what list_users returns, in the file's order


class _Tx:
    """One transaction's tables, its policy and the audit events to record on commit."""

    def __init__(self, service: Service, data: dict):
        self.service = service
        self.data = data
        storage = service._storage
        self.users = _StrTable(storage, "users", cache_size=0)
        self.meta = _StrTable(storage, META_TABLE, cache_size=0)
        self.policy = _policy(data[META_TABLE][META_ID])
        self.events: list[AuditEvent] = []

    def log(self, actor: str, action: str, target: str | None, outcome: str, detail: str | None = None) -> None:
        self.events.append(self.service._event(actor, action, target, outcome, detail))


def _policy(meta: dict) -> Policy:
    p = meta["policy"]
    return Policy(mode=PolicyMode(p["mode"]), enabled=p["enabled"], issuer=p["issuer"])


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


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


