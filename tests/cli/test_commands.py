"""The `mfa-console` command line, driven as a subprocess: output and exit codes.

Setup that would need a phone (an enrolled user) goes through the Python API on the same files;
every code a command checks is computed by `oathtool`, an independent TOTP implementation.
Passwords and codes always travel on stdin, never in argv.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest

from store.clients import new_radius_secret
from tests.support import MFA, PERIOD, Cli, hand_edit_user

ISSUER = "Acme Contact Center"
ROOT_PASSWORD = "root-password"


# -- helpers -------------------------------------------------------------------------------------
def oathtool(secret: str, at: float | None = None) -> str:
    """The TOTP code at `at` (default now), by oathtool; the key goes on stdin, not in argv."""
    args = ["oathtool", "--totp", "-b"] + (["-N", f"@{int(at)}"] if at is not None else []) + ["-"]
    return subprocess.run(args, input=secret, capture_output=True, text=True, check=True).stdout.strip()


def wrong_code(secret: str) -> str:
    """A well-formed code that is no code of the steps a verify in the next minute accepts."""
    step = int(time.time() // PERIOD)
    near = {pyotp.TOTP(secret).at(s * PERIOD) for s in range(step - 2, step + 4)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555", "666666") if c not in near)


@pytest.fixture
def cli(tmp_path) -> Cli:
    """No store yet."""
    return Cli(tmp_path)


@pytest.fixture(scope="session")
def initialised(tmp_path_factory) -> Path:
    """The folder of a store made once by `init`: root (admin, Pending) with ROOT_PASSWORD."""
    folder = tmp_path_factory.mktemp("initialised")
    template = Cli(folder)
    # Session scope runs before the autouse fixture: keep this child off the real data folder too.
    template.env.update(XDG_DATA_HOME=str(folder / "xdg-data"), HOME=str(folder / "home"))
    template.run("init", "--issuer", ISSUER, "--admin", "root", "--password-stdin", input=f"{ROOT_PASSWORD}\n", code=0)
    return template.db.parent


@pytest.fixture
def store(cli, initialised) -> Cli:
    """A copy of the `init`ed store, of its own (running init for every test costs seconds)."""
    shutil.copytree(initialised, cli.db.parent)
    return cli


# -- init ----------------------------------------------------------------------------------------
def test_init_creates_a_store_with_a_pending_admin(cli):
    proc = cli.run(
        "init", "--issuer", ISSUER, "--admin", "root", "--name", "Root Admin", "--password-stdin",
        input=f"{ROOT_PASSWORD}\n", code=0,
    )  # fmt: skip
    assert f"Created {cli.db}" in proc.stdout
    assert "mfa-console enroll root" in proc.stdout
    assert stat.S_IMODE(cli.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.db.stat().st_mode) == 0o600
    root = cli.users()["root"]
    assert (root["name"], root["role"], root["status"], root["active"]) == ("Root Admin", "admin", "pending", True)
    assert cli.login("root", ROOT_PASSWORD, expect=5).stderr.startswith("enrollment required")
    policy = json.loads(cli.run("policy", "show", "--json", code=0).stdout)
    assert (policy["issuer"], policy["mode"], policy["enabled"]) == (ISSUER, "mandatory", True)


def test_init_refuses_an_existing_store_and_leaves_it_alone(store):
    before = store.dump()
    message = store.fails(
        "init", "--issuer", "Other", "--admin", "other", "--password-stdin", input="other-password\n", code=2
    )
    assert "already exists" in message and str(store.db) in message
    assert store.dump() == before
    assert list(store.users()) == ["root"]


@pytest.mark.parametrize(
    ("args", "password", "reason"),
    [
        (["--admin", "root"], "short", "at least 8 characters"),
        (["--admin", "root"], "", "needs a password"),
        (["--admin", "bad name"], ROOT_PASSWORD, "username"),
        (["--admin", "root", "--issuer", "Acme:CC"], ROOT_PASSWORD, "issuer"),
    ],
)
def test_init_with_bad_input_creates_nothing(cli, args, password, reason):
    args = ["--issuer", ISSUER, *args] if "--issuer" not in args else args
    assert reason in cli.fails("init", *args, "--password-stdin", input=f"{password}\n", code=2)
    assert not cli.db.exists() and not cli.key.exists()


def test_init_without_a_terminal_wants_password_stdin(cli):
    assert "--password-stdin" in cli.fails("init", "--issuer", ISSUER, "--admin", "root", code=2)
    assert not cli.db.exists()


# -- users add / list ----------------------------------------------------------------------------
def test_users_add_and_list_with_filters(store):
    proc = store.run(
        "users", "add", "alice", "--name", "Alice Smith", "--role", "agent", "--team", "Billing",
        "--email", "alice@example.com", "--password-stdin", input="alice-password\n", code=0,
    )  # fmt: skip
    assert proc.stdout.splitlines()[0] == "Added alice (agent), pending."
    proc = store.run("users", "add", "sam", "--name", "Sam Jones", "--role", "supervisor", "--team", "Sales", code=0)
    assert "users passwd sam" in proc.stdout  # no password yet, and how to set one
    store.add("bob", team="billing")
    store.enroll("alice")

    table = store.run("users", "list", code=0).stdout.splitlines()
    assert table[0].split() == ["USERNAME", "NAME", "ROLE", "TEAM", "2FA", "ACTIVATED", "LAST", "LOGIN"]
    assert [line.split()[0] for line in table[1:]] == ["alice", "bob", "root", "sam"]
    alice_row = next(line for line in table if line.startswith("alice"))
    assert "Alice Smith" in alice_row and "activated" in alice_row

    users = store.users()
    assert users["alice"] | {"created_at": None, "activated_at": None} == {
        "username": "alice", "name": "Alice Smith", "email": "alice@example.com", "role": "agent",
        "team": "Billing", "status": "activated", "active": True, "created_at": None, "activated_at": None,
        "last_login_at": None,
    }  # fmt: skip
    assert users["alice"]["activated_at"].endswith("Z")
    assert set(store.users("--status", "pending")) == {"bob", "root", "sam"}
    assert set(store.users("--status", "activated")) == {"alice"}
    assert set(store.users("--team", "BILLING")) == {"alice", "bob"}  # case-insensitive
    assert set(store.users("--role", "supervisor")) == {"sam"}
    assert set(store.users("--team", "billing", "--status", "pending", "--role", "agent")) == {"bob"}
    assert store.users("--team", "Nobody") == {}
    filtered = store.run("users", "list", "--role", "admin", code=0).stdout.splitlines()
    assert len(filtered) == 2 and filtered[1].startswith("root")


def test_users_add_refuses_bad_input_with_exit_2(store):
    store.add("alice")
    assert "already exists" in store.fails("users", "add", "ALICE", "--name", "Other", "--role", "agent", code=2)
    assert "email" in store.fails(
        "users", "add", "bob", "--name", "Bob", "--role", "agent", "--email", "not-an-email", code=2
    )
    assert "at least 8" in store.fails(
        "users", "add", "bob", "--name", "Bob", "--role", "agent", "--password-stdin", input="short\n", code=2
    )
    formula = store.fails("users", "add", "bob", "--name", "=HYPERLINK()", "--role", "agent", code=2)
    assert "must not start with" in formula
    assert set(store.users()) == {"root", "alice"}


def test_rich_markup_in_a_name_is_shown_literally(store):
    store.add("mark", name="[red]x[/red] [bold]Mark[/bold]")
    row = next(line for line in store.run("users", "list", code=0).stdout.splitlines() if line.startswith("mark"))
    assert "[red]x[/red] [bold]Mark[/bold]" in row
    assert store.users()["mark"]["name"] == "[red]x[/red] [bold]Mark[/bold]"
    exported = store.run("users", "export", code=0).stdout
    assert "[red]x[/red] [bold]Mark[/bold]" in exported


@pytest.mark.parametrize("name", ["Evil \x1b[31mred", "Title \x1b]0;pwned\x07", "Bell\x07", "Bidi \u202egnp.exe"])
def test_a_name_with_control_characters_is_refused_at_add(store, name):
    message = store.fails("users", "add", "eve", "--name", name, "--role", "agent", code=2)
    assert "control characters" in message
    assert "eve" not in store.users()
    store.add("eve")
    assert "control characters" in store.fails("users", "edit", "eve", "--name", name, code=2)
    assert store.users()["eve"]["name"] == "Eve"


def test_escape_sequences_that_got_into_the_store_are_not_replayed(store):
    """A hand-edited store: the table shows '?' for them; JSON escapes them."""
    store.add("eve", team="Billing")
    hand_edit_user(store.db, "eve", name="Eve\x1b]0;pwned\x07\x1b[2J", team="\x1b[31mRed")
    row = next(line for line in store.run("users", "list", code=0).stdout.splitlines() if line.startswith("eve"))
    assert "Eve?]0;pwned??[2J" in row and "?[31mRed" in row
    assert store.users()["eve"]["name"] == "Eve\x1b]0;pwned\x07\x1b[2J"  # JSON carries it, escaped
    store.run("audit", code=0)
    store.login("eve\x1b[2J", "any-password", expect=1)  # an unknown name typed at a prompt...
    unknown = store.audit("--action", "login")[0]
    assert unknown["actor"] == "(unknown)" and re.fullmatch(r"unknown name #[0-9a-f]{8}", unknown["detail"])
    assert "[2J" not in store.run("audit", code=0).stdout  # ...is audited without the name


# -- edit, deactivate / reactivate, reset-2fa, unlock, passwd ------------------------------------
def test_users_edit(store):
    store.add("alice", team="Billing")
    proc = store.run(
        "users", "edit", "alice", "--name", "Alice Smith", "--email", "alice@example.com", "--role", "supervisor",
        "--team", "Sales", code=0,
    )  # fmt: skip
    assert proc.stdout.strip() == "Updated alice."
    alice = store.users()["alice"]
    assert (alice["name"], alice["email"], alice["role"], alice["team"]) == (
        "Alice Smith", "alice@example.com", "supervisor", "Sales",
    )  # fmt: skip
    store.run("users", "edit", "ALICE", "--email", "", "--team", "", code=0)  # '' clears; any case finds her
    alice = store.users()["alice"]
    assert (alice["name"], alice["email"], alice["team"]) == ("Alice Smith", None, None)
    assert "nothing to change" in store.fails("users", "edit", "alice", code=2)
    assert "last active administrator" in store.fails("users", "edit", "root", "--role", "agent", code=1)
    assert store.users()["root"]["role"] == "admin"
    assert [e["detail"] for e in store.audit("--action", "user.edit")] == ["email, team", "email, name, role, team"]


def test_deactivate_and_reactivate(store):
    store.add("alice", password="alice-password")
    assert store.run("users", "deactivate", "alice", code=0).stdout.strip() == "alice is deactivated."
    assert store.users()["alice"]["active"] is False
    row = next(line for line in store.run("users", "list", code=0).stdout.splitlines() if line.startswith("alice"))
    assert row.endswith("deactivated")
    deactivated = store.login("alice", "alice-password", expect=1)
    unknown = store.login("nobody", "alice-password", expect=1)
    assert (deactivated.stdout, deactivated.stderr) == (unknown.stdout, unknown.stderr)
    assert store.run("users", "reactivate", "alice", code=0).stdout.strip() == "alice is active."
    assert store.users()["alice"]["active"] is True
    store.login("alice", "alice-password", expect=5)
    assert "last active administrator" in store.fails("users", "deactivate", "root", code=1)
    assert store.users()["root"]["active"] is True


def test_reset_2fa_puts_the_user_back_to_pending(store):
    store.add("alice", password="alice-password")
    alice = store.enroll("alice")
    store.verify("alice", oathtool(alice.secret), expect=0)
    proc = store.run("users", "reset-2fa", "alice", code=0)
    assert proc.stdout.strip() == "2FA of alice reset: pending; they enroll again at next sign-in."
    user = store.users()["alice"]
    assert (user["status"], user["activated_at"]) == ("pending", None)
    store.verify("alice", oathtool(alice.secret), expect=4)
    store.login("alice", "alice-password", expect=5)
    assert store.audit("--action", "2fa.reset")[0]["target"] == "alice"


def test_lockout_after_five_failures_and_unlock(store):
    store.add("alice")
    alice = store.enroll("alice")
    wrong = wrong_code(alice.secret)
    for _ in range(4):
        assert store.verify("alice", wrong, expect=1) == "rejected"
    assert store.verify("alice", wrong, expect=3).startswith("locked out until")
    assert store.verify("alice", oathtool(alice.secret), expect=3).startswith("locked out until")  # even right
    row = next(line for line in store.run("users", "list", code=0).stdout.splitlines() if line.startswith("alice"))
    assert row.endswith("locked")
    assert store.users()["alice"]["status"] == "activated"
    assert store.run("users", "unlock", "alice", code=0).stdout.strip() == "alice is unlocked."
    store.verify("alice", oathtool(alice.secret), expect=0)
    assert [e["outcome"] for e in store.audit("--action", "lock")] == ["locked"]


def test_passwd(store):
    store.add("alice", password="old-password")
    proc = store.run("users", "passwd", "alice", "--password-stdin", input="new-password\n", code=0)
    assert proc.stdout.strip() == "Password of alice set."
    store.login("alice", "old-password", expect=1)
    store.login("alice", "new-password", expect=5)
    assert "at least 8" in store.fails("users", "passwd", "alice", "--password-stdin", input="short\n", code=2)
    assert "no password given" in store.fails("users", "passwd", "alice", "--password-stdin", input="\n", code=2)
    assert "--password-stdin" in store.fails("users", "passwd", "alice", code=2)  # no terminal to ask on
    # An unknown user fails before any password is read.
    assert "no user 'nobody'" in store.fails("users", "passwd", "nobody", "--password-stdin", input="x" * 9, code=2)
    store.login("alice", "new-password", expect=5)


# -- import / export -----------------------------------------------------------------------------
GOOD_CSV = (
    "username,name,email,role,team\n"
    "bob,Bob Brown,bob@example.com,agent,Sales\n"
    "carol,Carol White,,supervisor,Sales\n"
)


def test_import_a_good_file(store):
    path = store.tmp / "people.csv"
    path.write_text(GOOD_CSV)
    assert store.run("users", "import", str(path), code=0).stdout.strip() == "Imported 2 users."
    users = store.users()
    assert set(users) == {"root", "bob", "carol"}
    assert (users["carol"]["role"], users["carol"]["team"], users["carol"]["email"]) == ("supervisor", "Sales", None)
    assert users["bob"]["status"] == "pending"
    # From stdin too.
    proc = store.run("users", "import", "-", input="username,name,email,role,team\ndave,Dave,,agent,\n", code=0)
    assert proc.stdout.strip() == "Imported 1 user."
    assert "dave" in store.users()


def test_import_reports_every_bad_row_and_writes_nothing(store):
    store.add("alice")
    path = store.tmp / "bad.csv"
    path.write_text(
        "username,name,email,role,team\n"
        "bob,Bob Brown,bob@example.com,agent,Sales\n"  # 2: fine
        "-x,=cmd(),not-an-email,king,Sales\n"  # 3: four problems
        "alice,Alice Again,,agent,\n"  # 4: exists
        "bob,Bob Twice,,agent,\n"  # 5: duplicate of line 2
        "carol,Carol,,agent\n"  # 6: a field short
        "dave,\"Dave\nDavis\",,agent,\n"  # 7-8: a line break in a name
        "eve,Eve,,agent,,extra\n"  # 9: a field too many
    )
    before = store.dump()
    proc = store.run("users", "import", str(path), code=1)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[-1] == "mfa-console: 6 problems in the file; nothing imported"
    reported = {int(line.split(":")[1]): line.split(": ", 1)[1] for line in lines[:-1]}
    assert all(line.startswith(f"{path}:") for line in lines[:-1])
    assert sorted(reported) == [3, 4, 5, 6, 7, 9]  # physical lines: 9 comes after a 2-line record
    assert all(part in reported[3] for part in ("username", "name", "email", "role"))
    assert "already exists" in reported[4]
    assert "appears twice (also line 2)" in reported[5]
    assert "expected 5 fields, found 4" in reported[6]
    assert "name: control characters" in reported[7]
    assert "expected 5 fields, found 6" in reported[9]
    assert store.dump() == before
    assert set(store.users()) == {"root", "alice"}
    assert not any(e["action"] == "user.import" for e in store.audit())


def test_import_of_a_missing_file_is_a_usage_error(store):
    assert "cannot read" in store.fails("users", "import", str(store.tmp / "missing.csv"), code=2)


def test_export_csv_and_json(store):
    (store.tmp / "people.csv").write_text(GOOD_CSV)
    store.run("users", "import", "people.csv", code=0)
    alice_row = ["username", "name", "email", "role", "team", "status", "active", "created_at"]
    rows = list(csv.DictReader(io.StringIO(store.run("users", "export", code=0).stdout)))
    assert list(rows[0])[: len(alice_row)] == alice_row
    by_name = {r["username"]: r for r in rows}
    assert set(by_name) == {"root", "bob", "carol"}
    assert (by_name["bob"]["email"], by_name["bob"]["team"], by_name["bob"]["active"]) == (
        "bob@example.com", "Sales", "true",
    )  # fmt: skip
    assert by_name["carol"]["email"] == ""
    docs = json.loads(store.run("users", "export", "--format", "json", code=0).stdout)
    assert {d["username"]: d["email"] for d in docs} == {"root": None, "bob": "bob@example.com", "carol": None}
    assert {d["username"]: d for d in docs} == store.users()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_to_a_file_is_created_0600(store, fmt):
    store.add("alice", team="Billing")
    out = store.tmp / f"users.{fmt}"
    proc = store.run("users", "export", "--format", fmt, "-o", str(out), code=0)
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"Exported 2 users to {out}."
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    names = [r["username"] for r in (json.loads(text) if fmt == "json" else csv.DictReader(io.StringIO(text)))]
    assert sorted(names) == ["alice", "root"]
    assert "cannot write" in store.fails("users", "export", "-o", str(store.tmp / "no" / "such" / "dir.csv"), code=2)


# -- policy --------------------------------------------------------------------------------------
def test_policy_show(store):
    text = store.run("policy", "show", code=0).stdout
    assert f"Issuer:   {ISSUER}" in text
    assert "2FA:      on (mandatory: cannot be turned off)" in text
    assert "6 digits, every 30 s" in text
    assert json.loads(store.run("policy", "show", "--json", code=0).stdout) == {
        "issuer": ISSUER, "mode": "mandatory", "enabled": True, "digits": 6, "period_seconds": 30,
        "window_steps": 1, "lockout": {"failures": 5, "first_lock_minutes": 5, "max_lock_minutes": 60},
    }  # fmt: skip


def test_policy_disable_is_refused_while_mandatory_and_works_when_optional(store):
    store.add("alice")
    message = store.fails("policy", "disable", code=1)
    assert "mandatory" in message and "cannot be turned off" in message
    assert json.loads(store.run("policy", "show", "--json", code=0).stdout)["enabled"] is True
    assert store.audit("--action", "policy.disable")[0]["outcome"] == "refused"

    assert "2FA:      on (optional)" in store.run("policy", "set-mode", "optional", code=0).stdout
    assert "2FA:      off (optional)" in store.run("policy", "disable", code=0).stdout
    assert {u["status"] for u in store.users().values()} == {"disabled"}
    assert set(store.users("--status", "disabled")) == {"root", "alice"}
    table = store.run("users", "list", code=0).stdout.splitlines()[1:]
    assert len(table) == 2 and all(line.split()[-1] == "disabled" for line in table)

    assert "2FA:      on (optional)" in store.run("policy", "enable", code=0).stdout
    assert {u["status"] for u in store.users().values()} == {"pending"}
    store.run("policy", "disable", code=0)
    # Mandatory turns 2FA back on.
    assert "2FA:      on (mandatory" in store.run("policy", "set-mode", "mandatory", code=0).stdout
    assert json.loads(store.run("policy", "show", "--json", code=0).stdout)["enabled"] is True


def test_policy_set_issuer(store):
    assert "Issuer:   Acme Billing" in store.run("policy", "set-issuer", "Acme Billing", code=0).stdout
    assert json.loads(store.run("policy", "show", "--json", code=0).stdout)["issuer"] == "Acme Billing"
    assert "':'" in store.fails("policy", "set-issuer", "Acme:Billing", code=2)
    assert "invalid choice" in store.fails("policy", "set-mode", "sometimes", code=2)


# -- audit ---------------------------------------------------------------------------------------
def test_audit(store):
    store.add("alice")
    store.add("bob")
    store.run("users", "edit", "bob", "--team", "Sales", code=0)
    events = store.audit()
    assert [e["action"] for e in events][:4] == ["user.edit", "user.add", "user.add", "user.add"]  # newest first
    assert events[-1]["action"] == "store.created"
    assert all(e["at"].endswith("Z") for e in events)
    about_bob = {(e["action"], e["target"]) for e in store.audit("--user", "bob")}
    assert about_bob == {("user.add", "bob"), ("user.edit", "bob")}
    assert [e["target"] for e in store.audit("--action", "user.add")] == ["bob", "alice", "root"]
    assert store.audit("--since", "2999-01-01") == []
    assert store.audit("--since", "2000-01-01") == events
    since = store.audit("--since", events[0]["at"])  # an ISO time, Z and all
    assert since and all(e["at"] >= events[0]["at"] for e in since)

    lines = store.run("audit", "--user", "alice", code=0).stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].split()[2:5] == ["user.add", "alice", "ok"]
    assert "--since" in store.fails("audit", "--since", "last tuesday", code=2)


# -- verify --------------------------------------------------------------------------------------
def test_verify_accepts_a_code_once(store):
    store.add("alice")
    alice = store.enroll("alice")
    now = time.time()
    code, next_code = oathtool(alice.secret, now), oathtool(alice.secret, now + PERIOD)
    assert code == pyotp.TOTP(alice.secret).at(now)  # two implementations agree
    assert store.verify("alice", code, expect=0) == "accepted"
    assert store.verify("alice", code, expect=1) == "rejected"  # replayed
    # The next step's code is new, and is inside the ±1 step window of any verify in the next 30 s.
    assert store.verify("alice", next_code, expect=0) == "accepted"
    assert store.verify("alice", code, expect=1) == "rejected"  # an older step, never again
    assert store.verify("alice", wrong_code(alice.secret), expect=1) == "rejected"
    assert store.run("verify", "-q", "alice", input="12\n", code=1).stderr == ""
    verifies = [(e["outcome"], e["detail"]) for e in store.audit("--action", "verify")]
    assert verifies == [
        ("failed", "malformed code"), ("failed", "wrong code"), ("failed", "replayed code"), ("ok", "totp"),
        ("failed", "replayed code"), ("ok", "totp"),
    ]  # fmt: skip
    assert all(e["actor"].startswith("verify:") for e in store.audit("--action", "verify"))


def test_verify_accepts_a_recovery_code_once(store):
    store.add("alice")
    alice = store.enroll("alice")
    assert store.verify("alice", alice.recovery_codes[0], expect=0) == "accepted (recovery code used; 9 left)"
    assert store.verify("alice", alice.recovery_codes[0], expect=1) == "rejected"
    assert store.verify("alice", alice.recovery_codes[1].upper().replace("-", ""), expect=0).endswith("8 left)")


def test_verify_unknown_pending_deactivated_and_disabled(store):
    store.add("alice")
    store.add("bob")
    bob = store.enroll("bob")
    assert store.verify("nobody", "123456", expect=1) == "rejected"
    assert store.verify("alice", "123456", expect=4) == "no active 2FA for this user"  # Pending
    store.run("users", "deactivate", "bob", code=0)
    assert store.verify("bob", oathtool(bob.secret), expect=1) == "rejected"
    store.run("users", "reactivate", "bob", code=0)
    store.run("policy", "set-mode", "optional", code=0)
    store.run("policy", "disable", code=0)
    assert store.verify("bob", oathtool(bob.secret), expect=4) == "no active 2FA for this user"
    store.run("policy", "enable", code=0)  # the secret was kept
    assert store.verify("bob", oathtool(bob.secret), expect=0) == "accepted"


# -- login ---------------------------------------------------------------------------------------
def test_login(store):
    store.add("alice", password="alice-password")
    store.add("bob", password="bob-password")
    alice = store.enroll("alice")
    assert store.login("alice", "alice-password", oathtool(alice.secret), expect=0).stderr.strip() == "accepted"
    assert store.users()["alice"]["last_login_at"] is not None
    assert store.login("alice", "alice-password", wrong_code(alice.secret), expect=1).stderr.strip() == "rejected"
    used = store.login("alice", "alice-password", alice.recovery_codes[3], expect=0).stderr.strip()
    assert used == "accepted (recovery code used; 9 left)"
    assert store.login("bob", "bob-password", expect=5).stderr.startswith("enrollment required")

    wrong_password = store.login("alice", "not-her-password", oathtool(alice.secret), expect=1)
    unknown_user = store.login("mallory", "not-her-password", oathtool(alice.secret), expect=1)
    assert wrong_password.stderr.strip() == "rejected"
    assert (wrong_password.stdout, wrong_password.stderr) == (unknown_user.stdout, unknown_user.stderr)


def test_login_with_2fa_disabled_needs_only_the_password(store):
    store.add("alice", password="alice-password")
    store.run("policy", "set-mode", "optional", code=0)
    store.run("policy", "disable", code=0)
    assert store.run("login", "alice", input="alice-password\n", code=0).stderr.strip() == "accepted"
    store.login("alice", "wrong-password", expect=1)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["users", "list", "--bogus"],
        ["--bogus", "users", "list"],
        ["users"],
        ["users", "edit"],
        ["users", "add", "alice", "--role", "agent"],
        ["users", "add", "alice", "--name", "A", "--role", "king"],
        ["users", "add", "alice", "--name", "A", "--role", "agent", "--password", "secret123"],
        ["verify", "alice", "123456"],
        ["login", "alice", "alice-password"],
        ["demo", "--users", "0"],
        ["policy", "frobnicate"],
        ["serve", "--rate-source", "0"],
        ["serve", "--rate-client", "nan"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(cli, args):
    message = cli.fails(*args, code=2)
    assert message.endswith("(see --help)")
    assert not cli.db.parent.exists()  # refused before anything was opened


@pytest.mark.parametrize("args, said", [
    (["--listen", "127.0.0.1:99999"], "--listen wants HOST:PORT (a port from 0 to 65535)"),
    (["--radius", "70000"], "--radius wants [HOST:]PORT (a port from 0 to 65535)"),
    (["--listen", "127.0.0.1:8765", "--socket", "serve.sock"], "give --listen or --socket, not both"),
])  # fmt: skip
def test_serve_refuses_a_port_out_of_range_before_opening_the_store(cli, args, said):
    assert said in cli.fails("serve", *args, code=2)
    assert not cli.db.parent.exists()


def test_an_unknown_user_is_one_line_and_exit_2(store):
    before = store.dump()
    for args in (
        ["users", "edit", "nobody", "--name", "X"],
        ["users", "deactivate", "nobody"],
        ["users", "reactivate", "nobody"],
        ["users", "reset-2fa", "nobody"],
        ["users", "unlock", "nobody"],
        ["enroll", "nobody"],
    ):
        assert store.fails(*args, code=2) == "mfa-console: no user 'nobody'"
    assert store.dump() == before


@pytest.mark.parametrize(
    ("args", "input"),
    [
        (["users", "list"], ""),
        (["users", "add", "alice", "--name", "Alice", "--role", "agent"], ""),
        (["policy", "show"], ""),
        (["audit"], ""),
        (["verify", "alice"], "123456\n"),
        (["login", "alice"], "alice-password\n123456\n"),
    ],
)
def test_a_missing_store_is_one_line_and_exit_2(cli, args, input):
    message = cli.fails(*args, input=input, code=2)
    assert f"no store at {cli.db}" in message and "mfa-console init" in message
    assert not cli.db.parent.exists()  # nothing created on the way


TRUNCATED = b'{"meta": {"1": {"sch'


@pytest.mark.parametrize(
    ("garbage", "args", "input"),
    [
        (TRUNCATED, ["users", "list"], ""),
        (b"", ["users", "list"], ""),
        (b"[1, 2, 3]", ["users", "list"], ""),
        (b"\x00\xff\xfe\x1b[2J binary", ["users", "list"], ""),
        (TRUNCATED, ["users", "add", "alice", "--name", "Alice", "--role", "agent"], ""),
        (TRUNCATED, ["verify", "root"], "123456\n"),
        (TRUNCATED, ["login", "root"], f"{ROOT_PASSWORD}\n"),
    ],
)
def test_a_corrupt_store_is_named_and_left_unchanged(store, garbage, args, input):
    store.db.write_bytes(garbage)
    message = store.fails(*args, input=input, code=2)
    assert str(store.db) in message and "untouched" in message
    assert store.db.read_bytes() == garbage


def test_the_db_option_goes_before_or_after_the_command(store, tmp_path):
    other = Cli(tmp_path / "other")
    other.run("init", "--issuer", "Other", "--admin", "boss", "--password-stdin", input="boss-password\n", code=0)
    for args in (["--db", str(other.db), "users", "list"], ["users", "list", "--db", str(other.db)]):
        assert store.run(*args, code=0).stdout.splitlines()[1].startswith("boss")
    assert store.run("users", "list", code=0).stdout.splitlines()[1].startswith("root")  # MFA_CONSOLE_DB


def test_a_closed_stdout_is_no_traceback(store):
    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone
    try:
        proc = subprocess.run([*MFA, "users", "list"], stdin=subprocess.DEVNULL, stdout=write,
                              stderr=subprocess.PIPE, text=True, env=store.env, timeout=30)  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == ""


# -- demo ----------------------------------------------------------------------------------------
def test_demo_builds_a_store_at_the_xdg_demo_location(cli, tmp_path):
    proc = cli.run("demo", "--no-dashboard", "--users", "50", code=0)
    demo_db = tmp_path / "xdg-data" / "mfa-console" / "demo" / "store.db"
    assert f"(50 users) at {demo_db}" in proc.stderr
    assert "Demo sign-ins" in proc.stdout
    for role, username, password in (
        ("admin", "admin", "demo-admin"),
        ("supervisor", "supervisor", "demo-supervisor"),
        ("agent", "agent", "demo-agent"),
    ):
        line = next(line for line in proc.stdout.splitlines() if line.split()[:2] == [role, username])
        assert line.split()[2:5] == ["password", password, "Pending:"], line
    assert f"The demo store is {demo_db}" in proc.stdout
    assert not cli.db.exists()  # MFA_CONSOLE_DB is not the demo's
    # Another command without --db is told where the demo is.
    elsewhere = {k: v for k, v in cli.env.items() if k != "MFA_CONSOLE_DB"}
    lost = subprocess.run([*MFA, "policy", "show"], capture_output=True, text=True, env=elsewhere, timeout=30)
    assert lost.returncode == 2 and f"the demo store is {demo_db}: use it with --db {demo_db}" in lost.stderr

    table = cli.run("users", "list", "--db", str(demo_db), code=0).stdout.splitlines()
    assert len(table) == 1 + 50
    users = json.loads(cli.run("users", "list", "--db", str(demo_db), "--json", code=0).stdout)
    assert len(users) == 50
    assert len({u["team"] for u in users}) > 3
    assert {"pending", "activated"} <= {u["status"] for u in users}
    # The printed sign-ins work: Pending, so they must enroll first.
    cli.run("--db", str(demo_db), "login", "agent", input="demo-agent\n", code=5)

    # Again: the demo store is reused; --users rebuilds it.
    before = demo_db.read_bytes()
    again = cli.run("demo", "--no-dashboard", code=0)
    assert "Building" not in again.stderr and "Demo sign-ins" in again.stdout
    assert demo_db.read_bytes() == before
    cli.run("demo", "--no-dashboard", "--users", "10", code=0)
    assert len(json.loads(cli.run("users", "list", "--db", str(demo_db), "--json", code=0).stdout)) == 10


def test_demo_pointed_at_a_folder_is_refused(cli, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir(mode=0o700)
    assert "is not a regular file" in cli.fails("demo", "--no-dashboard", "--db", str(folder), code=2)
    assert list(folder.iterdir()) == []


def test_the_dashboard_without_a_terminal_says_so(store):
    """`ssh host mfa-console` without -t, or a cron job: one line and exit 2, no escape codes."""
    message = store.fails(code=2)
    assert "needs a terminal" in message


def test_demo_never_deletes_a_store_it_was_pointed_at(store):
    before = store.dump()
    for args in (["--db", str(store.db), "demo", "--reset", "--no-dashboard"],
                 ["demo", "--users", "5", "--no-dashboard", "--db", str(store.db)]):  # fmt: skip
        assert "delete only the default demo store" in store.fails(*args, code=2)
    assert store.dump() == before and store.key.exists()
    assert list(store.users()) == ["root"]


def test_verify_as_pam_exec_calls_it(store):
    """pam_exec with expose_authtok: the user in PAM_USER, the token on stdin NUL-terminated."""
    store.add("alice")
    alice = store.enroll("alice")
    store.env["PAM_USER"] = "alice"
    assert store.run("verify", input=oathtool(alice.secret, time.time()) + "\x00", code=0).stderr.strip() == "accepted"
    del store.env["PAM_USER"]
    assert "PAM_USER" in store.fails("verify", input="123456\n", code=2)


def test_verify_reads_a_line_of_a_code_at_most_and_says_when_none_came(store):
    """stdin is pam_exec's pipe, or anything: an endless one is read no further than a code
    line, and a silent one runs out the timeout with its own message, not the store's."""
    store.add("alice")
    store.enroll("alice")
    command = [sys.executable, "-m", "cli", "verify", "--timeout", "2", "alice"]
    with open("/dev/zero", "rb") as zeros:
        endless = subprocess.run(command, stdin=zeros, env=store.env, capture_output=True, text=True, timeout=30)
    assert endless.returncode == 1 and "rejected" in endless.stderr  # NULs: no code
    silent = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=store.env, text=True)  # fmt: skip
    silent.wait(timeout=30)  # its stdin open all the while
    err = silent.stderr.read()
    silent.stdin.close(), silent.stdout.close(), silent.stderr.close()
    assert silent.returncode == 2 and err == "mfa-console: no code came on standard input within 2 s; nothing was accepted\n"


# -- clients -------------------------------------------------------------------------------------
def test_clients_add_list_secret_and_revoke(store):
    added = store.run("clients", "add", "vpn", "--source", "10.0.0.0/8", "--radius", code=0)
    key, secret = added.stdout.split()  # stdout: what a script keeps; the words around it on stderr
    assert key.startswith("mfak_") and "shown this once" in added.stderr and "from 10.0.0.0/8" in added.stderr
    # A shared secret goes into NAS forms, config files and command lines: letters and digits only.
    assert all(len(s) == 32 and s.isascii() and s.isalnum() for s in [secret, *(new_radius_secret() for _ in range(200))])
    assert store.run("clients", "radius-secret", "vpn", code=0).stdout.strip() == secret
    assert not any(key in line or secret in line for line in store.dump())  # a digest, and the secret sealed
    listed = json.loads(store.run("clients", "list", "--json", code=0).stdout)
    assert [(c["name"], c["sources"], c["radius"], c["revoked_at"]) for c in listed] == [
        ("vpn", ["10.0.0.0/8"], "code", None)]  # fmt: skip
    assert "Revoked vpn" in store.run("clients", "revoke", "vpn", code=0).stdout
    assert json.loads(store.run("clients", "list", "--json", code=0).stdout)[0]["revoked_at"] is not None
    assert "no client 'vpn'" in store.fails("clients", "revoke", "vpn", code=2)
    assert "vpn" in store.fails("clients", "add", "vpn", code=2)  # a name is never reused
    assert [e["action"] for e in store.audit() if e["action"].startswith("client")] == ["client.revoke", "client.add"]
