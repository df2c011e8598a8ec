"""A store file damaged on disk — single bits flipped, the file cut short — met by every use.

A disk, a copy or a backup tool can flip a bit or lose the end of a file. Whatever was hit, each
use of the store must either work or be refused with a StoreError (one line that the command
line prints, exit 2), never an unexpected exception: a `verify` that dies with a traceback under
pam_exec is a login failure nobody can explain, and the dashboard would crash. A store whose
settings cannot be read must not be written either, and after a damaged copy was used, opening it
again must work or be refused just as clearly.

Flips are drawn over the bytes in use (the headers, every non-zero byte): a flip in a page's
unused space changes nothing any reader sees, and most of a small store's pages are unused.
Each flip gets a fresh copy of one small closed store: a few enrolled users, events, a lock.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from store.errors import StoreCorrupt, StoreError
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from tests.support import PERIOD, code, enroll, password, run_forked, wrong_code

SEED = 20261203


@dataclass(frozen=True)
class Pristine:
    data: bytes  # the closed store file, its WAL checkpointed into it
    key: Path
    secrets: dict[str, str]  # username -> TOTP secret of the enrolled users

    def in_use(self) -> list[int]:
        """Offsets worth flipping: the file's and each page's header, and every non-zero byte."""
        page_size = int.from_bytes(self.data[16:18], "big")
        headers = {offset for page in range(0, len(self.data), page_size) for offset in range(page, page + 12)}
        return sorted(headers | set(range(100)) | {i for i, byte in enumerate(self.data) if byte})


@pytest.fixture
def pristine(service, paths, clock) -> Pristine:
    """conftest's four users; alice and bob enrolled, sam locked out, a failed unknown name."""
    op = service.operator("tester")
    secrets = {name: enroll(service, op, name, clock) for name in ("alice", "bob")}
    clock.advance(PERIOD)
    for _ in range(5):
        service.login("sam", "wrong password")
    service.verify("nobody", "123456")
    service.close()
    assert not Path(f"{paths.db}-wal").exists()  # the whole store is in the one file
    clock.advance(2 * PERIOD)  # codes from here on are fresh on every copy
    return Pristine(paths.db.read_bytes(), paths.key, secrets)


class Copies:
    """A fresh private folder per damaged copy; the one before is removed (used up by then)."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def make(self, data: bytes) -> Path:
        shutil.rmtree(self.root / f"copy-{self.count}", ignore_errors=True)
        self.count += 1
        folder = self.root / f"copy-{self.count}"
        folder.mkdir(mode=0o700)
        db = folder / "store.db"
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return db


@pytest.fixture
def copies(tmp_path) -> Iterator[Copies]:
    """In memory where there is a tmpfs: the uses commit durably, and 300 copies' fsyncs on a
    disk would be most of this file's time."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="mfa-console-damage-", dir=shm))
        yield Copies(root)
        shutil.rmtree(root)
    else:
        root = tmp_path / "copies"
        root.mkdir(mode=0o700)
        yield Copies(root)


def flipped(data: bytes, offset: int, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 1 << bit
    return bytes(damaged)


def _where(exc: BaseException) -> str:
    """The statement that raised: file, line and source."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} `{frames[-1].line}`" if frames else ""


def use(db: Path, pristine: Pristine, clock) -> list[tuple[str, BaseException]]:
    """Every kind of use on the copy at `db`, then a reopening; the unexpected exceptions met
    (a StoreError is a refusal, as expected). A store refused at its first read is not written."""
    before = db.read_bytes()
    unexpected: list[tuple[str, BaseException]] = []
    refused_first = False

    def attempt(name: str, call) -> object:
        try:
            return call()
        except StoreError:
            return None
        except Exception as exc:  # noqa: BLE001 -- what this test looks for
            unexpected.append((name, exc))
            return None

    service = Service(StorePaths(db=db, key=pristine.key), clock=clock)
    try:
        refused_first = attempt("policy", service.policy) is None
        op = attempt("operator", lambda: service.operator("tester"))
        alice = pristine.secrets["alice"]
        if op is not None:
            attempt("list_users", lambda: service.list_users(op))
            attempt("get_user", lambda: service.get_user(op, "alice"))
            attempt("audit", lambda: service.audit(op, limit=100))
        attempt("verify right", lambda: service.verify("alice", code(alice, clock)))
        attempt("verify wrong", lambda: service.verify("bob", wrong_code(pristine.secrets["bob"], clock)))
        attempt("login", lambda: service.login("ada", password("ada")))
        attempt("login locked", lambda: service.login("sam", password("sam")))
        if op is not None:
            attempt("add_user", lambda: service.add_user(op, NewUser("carol", "Carol", Role.AGENT)))
            attempt("reset_2fa", lambda: service.reset_2fa(op, "bob"))
        attempt("preload", service.preload)
    finally:
        service.close()
    if refused_first and db.read_bytes() != before:
        unexpected.append(("all", AssertionError("its settings could not be read, yet the file was written")))
    again = Service(StorePaths(db=db, key=pristine.key), clock=clock)
    try:
        attempt("reopen: policy", again.policy)
        attempt("reopen: preload", again.preload)
    finally:
        again.close()
    return unexpected


def describe(label: str, found: list[tuple[str, BaseException]]) -> list[str]:
    return [f"{label}: {name}: {type(exc).__name__}: {exc}{_where(exc)}" for name, exc in found]


@pytest.mark.heavy
def test_random_bit_flips_are_refused_or_harmless(pristine, copies, clock):
    rng = random.Random(SEED)
    offsets = pristine.in_use()
    failures = []
    for _ in range(300):
        offset, bit = rng.choice(offsets), rng.randrange(8)
        found = use(copies.make(flipped(pristine.data, offset, bit)), pristine, clock)
        failures += describe(f"bit {bit} of byte {offset}", found)
    assert not failures, "\n".join(failures)


def test_truncations_are_refused(pristine, copies, clock):
    """A file cut short is refused whole, at once: no use of it may read on into the missing part."""
    rng = random.Random(SEED)
    for length in sorted(rng.sample(range(len(pristine.data)), 30)):
        db = copies.make(pristine.data[:length])
        found = use(db, pristine, clock)
        assert not found, "\n".join(describe(f"cut at {length} bytes", found))
        with pytest.raises(StoreCorrupt, match="truncated|empty|not an SQLite database|not an mfa-console store"):
            Service(StorePaths(db=db, key=pristine.key)).policy()


def _cli(db: Path, key: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(MFA_CONSOLE_DB=str(db), MFA_CONSOLE_KEY=str(key))
    return run_forked(list(args), input=stdin, env=env, cwd=db.parent, timeout=60)


def check_cli(db: Path, pristine: Pristine, label: str) -> None:
    """What a person or pam_exec sees: an answer, or one line and exit 2; never a traceback."""
    now_code = pyotp.TOTP(pristine.secrets["alice"]).now()  # the command line runs on real time
    for args, stdin, codes in (
        (("policy", "show"), "", (0, 2)),
        (("users", "list"), "", (0, 2)),
        (("verify", "alice"), f"{now_code}\n", (0, 1, 2, 3, 4)),  # accepted, rejected, refused, locked, no 2FA
    ):
        proc = _cli(db, pristine.key, *args, stdin=stdin)
        out = proc.stdout + proc.stderr
        where = f"{label}: mfa-console {' '.join(args)}"
        assert "Traceback" not in out and "\x1b" not in out, f"{where}:\n{out}"
        assert proc.returncode in codes, f"{where}: exit {proc.returncode}\n{out}"
        if proc.returncode == 2:
            assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("mfa-console: "), f"{where}:\n{out}"


@pytest.mark.heavy
def test_the_command_line_on_flipped_copies(pristine, copies):
    rng = random.Random(SEED + 1)
    offsets = pristine.in_use()
    for _ in range(10):
        offset, bit = rng.choice(offsets), rng.randrange(8)
        check_cli(copies.make(flipped(pristine.data, offset, bit)), pristine, f"bit {bit} of byte {offset}")


# -- damage that random flips find now and then ------------------------------------------------


def _flip_in(data: bytes, text: bytes, index: int, bit: int) -> tuple[int, bytes]:
    """Flips `bit` of the `index`th byte of `text`, found once in the file (the schema's SQL)."""
    if data.count(text) != 1:  # the schema's text changed: the test must be told where to flip
        raise LookupError(f"{text!r} is in the store {data.count(text)} times")
    offset = data.index(text) + index
    return offset, flipped(data, offset, bit)


SCHEMA_DAMAGE = {
    # "DEFAULT" of users.recovery: the schema no longer parses; SQLite says so quoting the
    # damaged word, at the first statement of a connection.
    "a table's definition unreadable": (b"recovery TEXT NOT NULL DEFAULT ''", 24, 7),
    # 'agent' in users.role's CHECK: the schema parses, and adding an agent breaks the CHECK;
    # SQLite's message quotes the constraint.
    "a CHECK's word not UTF-8": (b"'agent')", 3, 7),
    # The space in "enabled IN (0, 1)": "enabled\xa0IN(0, 1)" reads as a call of an unknown
    # function, which the integrity check (preload) evaluates and reports by its name.
    "a CHECK's space not UTF-8": (b"(enabled IN", 8, 7),
}


@pytest.mark.parametrize("text, index, bit", SCHEMA_DAMAGE.values(), ids=SCHEMA_DAMAGE.keys())
def test_damaged_schema_text_is_refused_not_a_traceback(pristine, copies, clock, text, index, bit):
    offset, damaged = _flip_in(pristine.data, text, index, bit)
    found = use(copies.make(damaged), pristine, clock)
    assert not found, "\n".join(describe(f"bit {bit} of byte {offset}", found))
    check_cli(copies.make(damaged), pristine, f"bit {bit} of byte {offset}")


def test_a_store_whose_table_definitions_changed_is_refused_at_open(pristine, copies, clock):
    """'admin' -> 'admhn' in users.role's CHECK: valid SQL, and the store still reads, but no
    administrator can be added or promoted any more. The file is not the schema mfa-console
    made: it should be refused at open, like a planted trigger is."""
    offset, damaged = _flip_in(pristine.data, b"('admin'", 5, 0)
    db = copies.make(damaged)
    with pytest.raises(StoreCorrupt):
        Service(StorePaths(db=db, key=pristine.key), clock=clock).policy()


def test_a_refusal_is_one_line_even_when_sqlite_quotes_the_schema(pristine, copies, clock):
    """The dashboard shows a refusal's message as it is (the command line makes it one line)."""
    _, damaged = _flip_in(pristine.data, b"tag TEXT PRIMARY KEY", 8, 1)  # the space becomes '"'
    with pytest.raises(StoreCorrupt) as refused:
        Service(StorePaths(db=copies.make(damaged), key=pristine.key), clock=clock).policy()
    assert "\n" not in str(refused.value), str(refused.value)
