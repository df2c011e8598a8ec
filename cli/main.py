"""The `mfa-console` command line: the host operator's tool, and the dashboard's launcher.

Commands run as the host's operator (whoever can read the store and its key controls it anyway)
and are audited with the OS user name. Exit codes: 0 ok, 1 rejected or refused, 2 usage error,
unknown user or unusable store, 3 locked out, 4 no active 2FA, 5 enrollment required.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import getpass
import json
import math
import os
import shutil
import signal
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from store import fs, legacy
from store.csvio import MAX_IMPORT_MIB, csv_cell, read_import, users_to_json
from store.errors import ImportRejected, PermissionDenied, PolicyError, StoreError, StoreMissing
from store.exports import write_private, write_users
from store.models import AuthResult, Enrollment, NewUser, Outcome, Policy, PolicyMode, Role, Session, Status, User
from store.paths import StorePaths, resolve
from store.service import Service, os_actor
from store.sql import is_url
from store.validation import printable

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_LOCKED, EXIT_NOT_ENROLLED, EXIT_ENROLL = 0, 1, 2, 3, 4, 5
SIDE_WIDTH = 33  # the text column beside a QR code: 80 - 45 (QR) - 2 (gap)
CONFIRM_TRIES = 3
DEFAULT_LISTEN = "127.0.0.1:8765"  # loopback: a reverse proxy or TLS in front for others


class Fail(Exception):
    """A one-line message for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_REJECTED):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {printable(message)} (see --help)\n")


class _Commands(argparse._SubParsersAction):
    """A command's own arguments are added once the command line names it: `verify`, started
    for every SSH login, builds its one parser, not all thirty."""

    def __call__(self, parser, namespace, values, option_string=None):
        _ARGUMENTS[values[0]](self.choices[values[0]])
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mfa-console", description="Two-factor authentication (TOTP) for a contact center.")
    _store_options(p, default=None)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action=_Commands)
    for name, text in COMMAND_HELP.items():
        sub.add_parser(name, help=text)
    return p


COMMAND_HELP = {
    "init": "create a store and its first administrator",
    "demo": "create (or reuse) the demo contact center and open it",
    "users": "list, add, change, import and export users",
    "enroll": "set up a user's authenticator app in this terminal",
    "verify": "check one code from stdin: 0 accepted, 1 rejected, 3 locked, 4 no 2FA",
    "login": "password, then code: exit codes as verify, 5 enrollment required",
    "policy": "show or change the 2FA policy",
    "report": "rollout numbers for cron and mail: overall and the last 30 days, or --by team",
    "audit": "the audit log, newest first",
    "migrate": "copy the store to another engine (SQLite <-> PostgreSQL) and compare the two",
    "clients": "the verification service's clients (API keys): add, list, revoke",
    "serve": "run the verification service (HTTP) for apps and VPNs",
}


def _init_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--issuer", required=True, help="the contact center's name, shown in authenticator apps")
    s.add_argument("--admin", required=True, metavar="USERNAME")
    s.add_argument("--name", help="the administrator's display name (default: the username)")
    s.add_argument("--mode", choices=[m.value for m in PolicyMode], default=PolicyMode.MANDATORY.value)
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _store_options(s)


def _demo_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--users", type=_positive, help="how many users (default 200); rebuilds the demo store")
    s.add_argument("--reset", action="store_true", help="rebuild the demo store")
    s.add_argument("--no-dashboard", action="store_true", help="only create the store and say how to sign in")
    _store_options(s)


def _users_arguments(users: argparse.ArgumentParser) -> None:
    usub = users.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    s = usub.add_parser("list", help="list users")
    s.add_argument("--status", choices=[st.value for st in Status])
    s.add_argument("--team")
    s.add_argument("--role", choices=[r.value for r in Role])
    s.add_argument("--json", action="store_true")
    s = usub.add_parser("add", help="add a user")
    s.add_argument("username")
    s.add_argument("--name", required=True)
    s.add_argument("--role", required=True, choices=[r.value for r in Role])
    s.add_argument("--team")
    s.add_argument("--email")
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s = usub.add_parser("edit", help="change a user's name, email, role or team ('' clears email/team)")
    s.add_argument("username")
    s.add_argument("--name")
    s.add_argument("--email")
    s.add_argument("--role", choices=[r.value for r in Role])
    s.add_argument("--team")
    for action, text in (
        ("deactivate", "deactivate an account (it can no longer sign in)"),
        ("reactivate", "reactivate a deactivated account"),
        ("reset-2fa", "wipe a user's secret and recovery codes: back to Pending"),
        ("unlock", "lift a lockout"),
    ):
        usub.add_parser(action, help=text).add_argument("username")
    s = usub.add_parser("passwd", help="set a user's password")
    s.add_argument("username")
    s.add_argument("--password-stdin", action="store_true")
    s = usub.add_parser("import", help=f"add users from a CSV file, or - for stdin (all rows or none; {MAX_IMPORT_MIB} MiB at most)")
    s.add_argument("file", help="CSV with header username,name,email,role,team ('-' for stdin)")
    s = usub.add_parser("export", help="export users as CSV or JSON")
    s.add_argument("--format", choices=["csv", "json"], default="csv")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE (created 0600) instead of stdout (- is stdout)")
    s.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _store_options(users)
    for action in usub.choices.values():
        _store_options(action)


def _enroll_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("username")
    _store_options(s)


def _verify_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("username", nargs="?", help="default: $PAM_USER (as pam_exec sets it)")
    s.add_argument("-q", "--quiet", action="store_true", help="say nothing; the exit code tells")
    s.add_argument("--timeout", type=_positive, default=VERIFY_SECONDS, metavar="SECONDS",
                   help=f"refuse the code (exit 2) if the whole check takes longer (default {VERIFY_SECONDS})")
    _store_options(s)


def _policy_arguments(policy: argparse.ArgumentParser) -> None:
    psub = policy.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    psub.add_parser("show", help="the policy in force").add_argument("--json", action="store_true")
    psub.add_parser("set-mode", help="the plan: 2FA mandatory or optional").add_argument(
        "mode", choices=[m.value for m in PolicyMode]
    )
    psub.add_parser("enable", help="turn 2FA on")
    psub.add_parser("disable", help="turn 2FA off (only when the mode is optional)")
    psub.add_parser("set-issuer", help="the name authenticator apps show").add_argument("issuer")
    _store_options(policy)
    for action in psub.choices.values():
        _store_options(action)


def _report_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--by", choices=["team"], help="one row per team, furthest behind first")
    output = s.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="a header row, then one row (or one per team)")
    _store_options(s)


def _audit_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--user", help="events by or about this user")
    s.add_argument("--action", help="events whose action starts with this (e.g. login, 2fa.reset)")
    s.add_argument("--since", type=_since, metavar="DATE", help="YYYY-MM-DD or an ISO 8601 time (UTC if no zone)")
    s.add_argument("--json", action="store_true")
    _store_options(s)


def _migrate_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--to", required=True, metavar="STORE",
                   help="where to copy it: a postgresql:// URL (an empty schema) or a new SQLite file")  # fmt: skip
    _store_options(s)


def _clients_arguments(clients: argparse.ArgumentParser) -> None:
    csub = clients.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    s = csub.add_parser("add", help="a new client; its API key is printed once")
    s.add_argument("name")
    s.add_argument("--radius", action="store_true", help="also a RADIUS client: a shared secret (needs --source)")
    s.add_argument("--radius-password", action="store_true",
                   help="its RADIUS User-Password is the user's password followed by the code (implies --radius)")
    s.add_argument("--radius-unsigned", action="store_true",
                   help="accept its Access-Requests without a Message-Authenticator, as older NASes and Debian 12's "
                   "pam_radius_auth send them (implies --radius; loopback or a trusted network only)")
    s.add_argument("--source", action="append", default=[], metavar="CIDR",
                   help="an address or network its requests must come from (repeatable; default: any)")  # fmt: skip
    s = csub.add_parser("list", help="every client, revoked ones too")
    s.add_argument("--json", action="store_true")
    s = csub.add_parser("revoke", help="the client's key stops working at once")
    s.add_argument("name")
    s = csub.add_parser("radius-secret", help="a RADIUS client's shared secret, for the NAS's configuration")
    s.add_argument("name")
    for s in csub.choices.values():
        _store_options(s)


def _serve_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--listen", metavar="HOST:PORT",
                   help=f"where to listen (default {DEFAULT_LISTEN}, loopback: put a reverse proxy in front, or TLS)")
    s.add_argument("--socket", metavar="PATH", help="listen on a Unix socket instead")
    s.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM) ...")
    s.add_argument("--tls-key", metavar="FILE", help="... and its private key (PEM)")
    s.add_argument("--radius", metavar="[HOST:]PORT",
                   help="also answer RADIUS Access-Requests on this UDP port (e.g. 1812; HOST defaults to --listen's)")
    s.add_argument("--rate-client", type=_rate, default=100.0, metavar="N",
                   help="checks per second per client (bursts of twice that; default 100)")
    s.add_argument("--rate-source", type=_rate, default=50.0, metavar="N",
                   help="requests per second per source address (bursts of twice that; default 50)")  # fmt: skip
    _store_options(s)


_ARGUMENTS = {
    "init": _init_arguments,
    "demo": _demo_arguments,
    "users": _users_arguments,
    "enroll": _enroll_arguments,
    "verify": _verify_arguments,
    "login": _enroll_arguments,  # the same: one username
    "policy": _policy_arguments,
    "report": _report_arguments,
    "audit": _audit_arguments,
    "migrate": _migrate_arguments,
    "clients": _clients_arguments,
    "serve": _serve_arguments,
}


def _store_options(parser: argparse.ArgumentParser, *, default=argparse.SUPPRESS) -> None:
    """--db and --key, before the command (`default` None) or after it: SUPPRESS there keeps, unless
    they are given again, the values from before the command."""
    parser.add_argument(
        "--db", metavar="STORE", default=default,
        help="the store: a file, or a postgresql:// URL (default: $MFA_CONSOLE_DB or the user data folder)"
    )
    parser.add_argument(
        "--key", metavar="PATH", default=default, help="the key file (default: $MFA_CONSOLE_KEY, or beside a file store, or store.key in the user data folder)"
    )


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # whatever this process creates is its user's alone
    _no_core_dumps()
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            return _dashboard(resolve(args.db, args.key))
        # Each store a command opens is closed when it ends (SQLite's last close folds the WAL back
        # into the file), not left to the interpreter's exit.
        with contextlib.ExitStack() as args.opened:
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed stdout fails here, not in the interpreter's exit
        return code
    except ImportRejected as exc:
        for error in exc.errors:
            print(f"{args.file}:{error.line}: {printable(error.reason)}", file=sys.stderr)
        print(f"mfa-console: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except Fail as exc:
        print(f"mfa-console: {printable(str(exc))}", file=sys.stderr)
        return exc.code
    except (PolicyError, PermissionDenied) as exc:
        print(f"mfa-console: {printable(str(exc))}", file=sys.stderr)
        return EXIT_REJECTED
    except StoreMissing as exc:
        demo = resolve(demo=True).db
        if demo.exists() and not (getattr(args, "db", None) or os.environ.get("MFA_CONSOLE_DB")):
            exc = StoreMissing(f"{exc}; the demo store is {demo}: use it with --db {demo}")
        print(f"mfa-console: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:  # unknown user, bad input, a corrupt, unsafe or busy store
        print(f"mfa-console: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except _RanOut:
        if getattr(args, "waiting_for", "store") == "code":
            said = f"no code came on standard input within {args.timeout} s; nothing was accepted"
        else:
            said = f"the store did not answer within {args.timeout} s; the code was not accepted"
        print(f"mfa-console: {said}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except EOFError:  # stdin ended at a prompt (Ctrl-D); enroll has cancelled its enrollment
        print("\nmfa-console: no input; cancelled", file=sys.stderr)
        return EXIT_REJECTED
    except BrokenPipeError:  # the reader went away (`mfa-console users list | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_REJECTED


# -- commands ------------------------------------------------------------------------------------
def cmd_init(args) -> int:
    paths = resolve(args.db, args.key)
    _check_new_store_paths(paths)
    if not is_url(paths.db) and paths.db.exists():
        raise Fail(f"a store already exists at {paths.db}; refusing to overwrite it", EXIT_USAGE)
    password = _new_password(args.password_stdin, f"Password for {args.admin}")
    if not password:
        raise Fail("the first administrator needs a password", EXIT_USAGE)
    admin = NewUser(args.admin, args.name or args.admin, Role.ADMIN)
    Service.create(
        paths, issuer=args.issuer, mode=PolicyMode(args.mode), actor=os_actor(), admin=admin, password=password
    ).close()
    print(f"Created {paths.shown} (key {paths.key}).")
    print(f"{admin.username} is Pending: enroll now with `mfa-console enroll {admin.username}`,")
    print("or sign in to the dashboard (`mfa-console`), which enrolls at first sign-in.")
    return EXIT_OK


def _check_new_store_paths(paths: StorePaths) -> None:
    """Before the password is asked: a folder another user could change, or a link where the store
    or the key would be made, is refused by name (UnsafePath, one line)."""
    for path in (paths.key,) if is_url(paths.db) else (paths.db, paths.key):
        try:
            folder = fs.check_folder(path.parent)
        except FileNotFoundError:
            continue  # made 0700 by init
        fs.check_file(path, folder, secret=True)


def cmd_demo(args) -> int:
    from store import demo as demo_store  # imported here: every other command starts faster

    paths = resolve(args.db, args.key, demo=True)
    if is_url(paths.db):
        raise Fail("the demo is a store on this host: --db names a file here (for PostgreSQL, `init --db URL`)",
                   EXIT_USAGE)  # fmt: skip
    earlier = legacy.json_path(paths.db)  # a demo made by an earlier version: moved when opened
    exists = lambda: paths.db.exists() or earlier.exists()  # noqa: E731
    if exists() and (args.reset or args.users):
        if args.db or args.key:
            # --db/--key may name a real store: only the default demo store is ever deleted.
            raise Fail(
                f"a store exists at {paths.db}; --reset and --users delete only the default demo store", EXIT_USAGE
            )
        for path in (paths.db, Path(f"{paths.db}-wal"), Path(f"{paths.db}-shm"), paths.key, *legacy.files(earlier)):
            path.unlink(missing_ok=True)
    if not exists():
        count = args.users or 200
        print(f"Building the demo contact center ({count:,} users) at {printable(str(paths.db))} ...", file=sys.stderr)
        demo_store.build_demo(paths, users=count, actor=os_actor(), now=time.time()).close()
    service = Service(paths)  # opened (a folder or a damaged file is refused here), and the logins read
    logins = {u.username: u.status for u in service.list_users(service.operator(os_actor()))}
    service.close()
    where = (f"The demo store is {printable(str(paths.db))}: other commands use it with --db (or "
             "MFA_CONSOLE_DB) set to that path.")  # fmt: skip
    if args.no_dashboard or not sys.stdout.isatty():
        print(demo_store.login_help(logins))
        print(where)
        return EXIT_OK
    code = _dashboard(paths, demo=True)  # its sign-in screen shows the demo's sign-ins
    print(where)
    return code


def cmd_users(args) -> int:
    service, op = _open(args)
    action = args.action
    if action == "list":
        users = [
            u
            for u in service.list_users(op)
            if (not args.status or u.status.value == args.status)
            and (not args.team or (u.team or "").casefold() == args.team.casefold())
            and (not args.role or u.role.value == args.role)
        ]
        if args.json:
            print(json.dumps(users_to_json(users), indent=2))
        else:
            _print_users(users)
        return EXIT_OK
    if action == "add":
        password = _new_password(args.password_stdin, f"Password for {args.username} (Enter for none)", required=False)
        new = NewUser(args.username, args.name, Role(args.role), email=args.email, team=args.team)
        user = service.add_user(op, new, password=password or None)
        print(f"Added {user.username} ({user.role.value}), {user.status.value}.")
        if not password:
            print(f"No password yet: set one with `mfa-console users passwd {user.username}`.")
        return EXIT_OK
    if action == "edit":
        service.get_user(op, args.username)  # an unknown user is said so, even with nothing to change
        user = service.edit_user(op, args.username, name=args.name, email=args.email, role=args.role, team=args.team)
        print(f"Updated {user.username}.")
        return EXIT_OK
    if action in ("deactivate", "reactivate"):
        user = service.set_active(op, args.username, action == "reactivate")
        print(f"{user.username} is {'active' if user.active else 'deactivated'}.")
        return EXIT_OK
    if action == "reset-2fa":
        user = service.reset_2fa(op, args.username)
        print(f"2FA of {user.username} reset: {user.status.value}; they enroll again at next sign-in.")
        return EXIT_OK
    if action == "unlock":
        user = service.unlock(op, args.username)
        print(f"{user.username} is unlocked.")
        return EXIT_OK
    if action == "passwd":
        service.get_user(op, args.username)  # an unknown user fails before the prompt
        password = _new_password(args.password_stdin, f"New password for {args.username}")
        if not password:
            raise Fail("no password given", EXIT_USAGE)
        service.set_password(op, args.username, password)
        print(f"Password of {args.username} set.")
        return EXIT_OK
    if action == "import":
        data = read_import(sys.stdin.buffer if args.file == "-" else Path(args.file))
        count = service.import_users(op, data)
        print(f"Imported {count} user{'' if count == 1 else 's'}.")
        return EXIT_OK
    if action == "export":
        users = service.list_users(op)
        if not args.output or args.output == "-":  # `-o -` is standard output, as the convention goes
            write_users(users, sys.stdout, args.format)
            return EXIT_OK
        try:
            write_private(args.output, lambda out: write_users(users, out, args.format), force=args.force)
        except FileExistsError as exc:
            raise Fail(f"{args.output} already exists (--force replaces it)", EXIT_USAGE) from exc
        except OSError as exc:
            raise Fail(f"cannot write {args.output}: {exc.strerror}", EXIT_USAGE) from exc
        print(f"Exported {len(users)} users to {printable(args.output)}.", file=sys.stderr)
        return EXIT_OK
    raise AssertionError(action)


def cmd_enroll(args) -> int:
    service, op = _open(args)
    user = service.get_user(op, args.username)
    # Said in the prompt: a line printed above the 23-row code would scroll off at 80x24.
    prompt = "Code from the new app (it replaces the old one): " if user.status is Status.ACTIVATED else None
    enrollment = service.begin_enrollment(op, user.username)
    try:
        for attempt in range(CONFIRM_TRIES):
            code = _ask_code_with_qr(enrollment, prompt) if attempt == 0 else _ask("Code from the app: ")
            result = service.confirm_enrollment(op, user.username, code)
            if result.ok:
                break
            if result.outcome is Outcome.LOCKED:
                raise Fail(f"{user.username} is locked out until {_when(result.locked_until)}", EXIT_LOCKED)
            print("That code is not right. Check the phone's clock is set automatically, then try the newest code.")
        else:
            raise Fail(f"enrollment not confirmed; {user.username} stays {user.status.value}")
    except (EOFError, KeyboardInterrupt, Fail):
        service.cancel_enrollment(op, user.username)
        _clear_screen()
        print(f"Enrollment cancelled: {user.username} stays {user.status.value}.", file=sys.stderr)
        raise
    _clear_screen()
    print(f"2FA is active for {user.username}.")
    print("Recovery codes, each good for one sign-in without the phone.")
    print("Save them now: they are not shown again.")
    codes = result.recovery_codes
    for left, right in zip(codes[0::2], codes[1::2]):
        print(f"  {left}    {right}")
    return EXIT_OK


def _clear_screen() -> None:
    """The key must not outlive enrollment on screen, done or not: the screen and its scrollback."""
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J\x1b[3J")
        sys.stdout.flush()


def cmd_verify(args) -> int:
    username = args.username or os.environ.get("PAM_USER")
    if not username:
        raise Fail("which user? give USERNAME (or run it from pam_exec, which sets PAM_USER)", EXIT_USAGE)
    deadline = time.monotonic() + args.timeout
    signal.signal(signal.SIGALRM, _verify_ran_out)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    service = _service(args, quiet=args.quiet)
    args.waiting_for = "code"
    # pam_exec's expose_authtok sends the token NUL-terminated. A line longer than any code is
    # read no further (stdin may be endless: /dev/zero).
    code = sys.stdin.readline(CODE_LINE_MAX).replace("\x00", "").strip()
    args.waiting_for = "store"
    service.db.wait_at_most(deadline - time.monotonic())
    result = service.verify(username, code, actor=f"verify:{os_actor()}")
    signal.setitimer(signal.ITIMER_REAL, 0)
    return _auth_exit(result, quiet=args.quiet)


# A whole verify, whatever the store does (its own waits are 5 s each). Not less: 200 logins at
# once on 2 cores keep each verify process alive for about as long as the whole storm (~35 s on
# PostgreSQL here, psycopg's import being most of each); half of sshd's LoginGraceTime.
VERIFY_SECONDS = 60
CODE_LINE_MAX = 1024  # characters of stdin read for a code (a recovery code is 11)


class _RanOut(BaseException):
    """Raised by the timer: a BaseException, so that no library's `except Exception` (an import's
    fallback, a driver's cleanup) takes it for an error of its own and goes on."""


def _verify_ran_out(signum, frame) -> NoReturn:
    # A transaction cut here is rolled back (by SQLite's journal, or the server when the connection goes).
    raise _RanOut


def cmd_login(args) -> int:
    service = _service(args)
    interactive = sys.stdin.isatty()
    password = getpass.getpass("Password: ") if interactive else sys.stdin.readline().rstrip("\r\n")
    result = service.login(args.username, password)
    if result.outcome is Outcome.CODE_REQUIRED:
        code = _ask("Code (or recovery code): ") if interactive else sys.stdin.readline().strip()
        result = service.login_code(result.session, code)
    return _auth_exit(result)


def cmd_policy(args) -> int:
    service, op = _open(args)
    if args.action == "show":
        _print_policy(service.policy(), as_json=args.json)
        return EXIT_OK
    if args.action == "set-mode":
        policy = service.set_mode(op, PolicyMode(args.mode))
    elif args.action in ("enable", "disable"):
        policy = service.set_enabled(op, args.action == "enable")
    else:
        policy = service.set_issuer(op, args.issuer)
    _print_policy(policy, as_json=False)
    return EXIT_OK


def cmd_audit(args) -> int:
    service, op = _open(args)
    events = service.audit(op, user=args.user, action=args.action, since=args.since)
    if args.json:  # JSON Lines, for log shippers and jq; `id` only grows, to resume from
        for e in events:
            print(json.dumps({"id": e.id, "at": _iso(e.at), "actor": e.actor, "action": e.action,
                              "target": e.target, "outcome": e.outcome, "detail": e.detail}))  # fmt: skip
        return EXIT_OK
    for e in events:
        line = f"{_iso(e.at)}  {e.actor:<16} {e.action:<16} {e.target or '-':<20} {e.outcome:<8} {e.detail or ''}"
        print(printable(line.rstrip()))
    return EXIT_OK


REPORT_TEAM_FIELDS = ("team", "users", "activated", "pending", "disabled", "percent")


def cmd_report(args) -> int:
    """The Rollout tab's numbers (store/report.py); percents rounded down to 0.1."""
    from store import report  # imported here, like the demo: other commands start faster

    service, op = _open(args)
    users = service.list_users(op)
    now = datetime.now(UTC)
    o = report.overall(users, now)
    pct = lambda part, whole: report.floor_percent(part, whole, 1)  # noqa: E731
    overall = {
        "total": o.total, "activated": o.activated, "pending": o.pending, "disabled": o.disabled,
        "percent": pct(o.activated, o.total),
        "activated_today": o.activated_today, "activated_last_7_days": o.activated_7d,
    }  # fmt: skip
    teams = report.teams(users) if args.by == "team" else ()
    team_rows = [
        (t.team or None, t.users, t.activated, t.pending, t.disabled, pct(t.activated, t.users)) for t in teams
    ]
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if args.by:
            writer.writerow(REPORT_TEAM_FIELDS)
            writer.writerows(map(csv_cell, row) for row in team_rows)  # a team name is text typed by people
        else:
            writer.writerow(("generated_at", *overall))
            writer.writerow((_iso(now), *overall.values()))
        return EXIT_OK
    if args.json:
        doc: dict = {"generated_at": _iso(now), "overall": overall}
        if args.by:
            doc["teams"] = [dict(zip(REPORT_TEAM_FIELDS, row)) for row in team_rows]
        else:
            doc["daily"] = [
                {"date": d.day.isoformat(), "activations": d.activations, "activated": d.activated,
                 "percent": pct(d.activated, o.total)}
                for d in report.daily(users, now, 30)
            ]  # fmt: skip
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"Rollout at {now:%Y-%m-%d %H:%M} UTC")
    print(f"Activated {o.activated:,} of {o.total:,} ({report.percent_label(o.activated, o.total)}) · Pending {o.pending:,} · "
          f"Disabled {o.disabled:,}")  # fmt: skip
    print(f"Activated today {o.activated_today:,}, in the last 7 days {o.activated_7d:,}")
    if teams:
        table = [tuple(f.upper() for f in REPORT_TEAM_FIELDS)]
        table += [(printable(t.label), *(f"{n:,}" for n in row[1:5]), f"{int(row[5])}%") for t, row in zip(teams, team_rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(REPORT_TEAM_FIELDS))]
        print()
        for row in table:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return EXIT_OK


def cmd_migrate(args) -> int:
    from store.migrate import migrate  # imported here: every other command starts faster

    to = args.to if is_url(args.to) else Path(args.to).expanduser().absolute()
    if not is_url(to) and os.path.lexists(to):
        raise Fail(f"{printable(str(to))} exists: migrate makes a new store, it never writes into one", EXIT_USAGE)
    done = migrate(_service(args), to, actor=os_actor())
    counts = done.counts
    print(f"Copied {counts['users']:,} users and {counts['audit']:,} audit events to {printable(done.target)}; "
          "compared user by user: identical.")  # fmt: skip
    if done.key_copied:
        print(f"Its key file: {done.key} (a copy of the store's).")
    else:
        print(f"Its key stays in {done.key}: every host that uses it needs a copy (--key or MFA_CONSOLE_KEY).")
    if done.missed:
        print(f"mfa-console: the store recorded {done.missed} more events while it was copied: the copy misses those "
              "changes; stop what writes to it, and copy again into an empty target", file=sys.stderr)  # fmt: skip
        return EXIT_REJECTED
    return EXIT_OK


def cmd_clients(args) -> int:
    service, op = _open(args)
    if args.action == "add":
        client, key = service.add_client(op, args.name, tuple(args.source), radius=args.radius,
                                         radius_password=args.radius_password, radius_unsigned=args.radius_unsigned)
        where = " from " + ", ".join(map(str, client.sources)) if client.sources else " from any address"
        print(f"Added client {client.name}{where}. Its API key, shown this once (the store keeps a digest):",
              file=sys.stderr)  # fmt: skip
        print(key)
        if client.radius:
            print("Its RADIUS shared secret (`clients radius-secret NAME` shows it again):", file=sys.stderr)
            print(service.radius_secret(op, client.name))
    elif args.action == "revoke":
        service.revoke_client(op, args.name)
        print(f"Revoked {args.name}: its key no longer works.")
    elif args.action == "radius-secret":
        print(service.radius_secret(op, args.name))
    else:
        rows = [{"name": c.name, "sources": [str(n) for n in c.sources], "created_at": _iso(c.created_at),
                 "revoked_at": _iso(c.revoked_at) if c.revoked_at else None,
                 "radius": ("password+code" if c.radius_password else "code") + (", unsigned" if c.radius_unsigned else "")
                 if c.radius else None} for c in service.list_clients(op)]  # fmt: skip
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'NAME':<24}  {'STATE':<8}  {'SINCE':<20}  {'RADIUS':<14}  SOURCES")
            for r in rows:
                state, since = ("revoked", r["revoked_at"]) if r["revoked_at"] else ("active", r["created_at"])
                print(f"{printable(r['name']):<24}  {state:<8}  {since:<20}  {r['radius'] or '-':<14}  "
                      f"{' '.join(r['sources']) or 'any'}")  # fmt: skip
    return EXIT_OK


def cmd_serve(args) -> int:
    import ssl

    from server.http import Limits, serve  # imported here: aiohttp loads for this command only

    if args.socket and args.listen:
        raise Fail("give --listen or --socket, not both", EXIT_USAGE)
    listen = args.listen or DEFAULT_LISTEN
    host, _, port = listen.rpartition(":")
    if not args.socket and (not host or not _is_port(port)):
        raise Fail(f"--listen wants HOST:PORT (a port from 0 to 65535), not {printable(listen)}", EXIT_USAGE)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise Fail("TLS needs both --tls-cert and --tls-key", EXIT_USAGE)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            key = fs.open_private_key(Path(args.tls_key))
        except OSError as exc:
            raise Fail(f"cannot open the TLS key {printable(args.tls_key)}: {exc.strerror or exc}", EXIT_USAGE) from exc
        try:
            tls.load_cert_chain(args.tls_cert, f"/proc/self/fd/{key}")  # the file checked, not the path again
        except (OSError, ssl.SSLError) as exc:
            raise Fail(f"cannot load the TLS certificate or key: {exc}", EXIT_USAGE) from exc
        finally:
            os.close(key)
    radius = None
    if args.radius:
        radius_host, _, radius_port = args.radius.rpartition(":")
        if not _is_port(radius_port):
            raise Fail(f"--radius wants [HOST:]PORT (a port from 0 to 65535), not {printable(args.radius)}", EXIT_USAGE)
        radius = ((radius_host or host or "127.0.0.1").strip("[]"), int(radius_port))
    service = _service(args)
    service.policy()  # a missing, damaged or unreachable store is said now, not at the first check
    try:
        serve(service, host=host.strip("[]"), port=int(port or 0), socket_path=args.socket, tls=tls,
              limits=Limits(args.rate_client, args.rate_source), radius=radius)  # fmt: skip
    except OSError as exc:
        raise Fail(f"cannot listen on {printable(args.socket or listen)}: {exc.strerror or exc}", EXIT_USAGE) from exc
    return EXIT_OK


COMMANDS = {
    "init": cmd_init,
    "demo": cmd_demo,
    "users": cmd_users,
    "enroll": cmd_enroll,
    "verify": cmd_verify,
    "login": cmd_login,
    "policy": cmd_policy,
    "audit": cmd_audit,
    "report": cmd_report,
    "migrate": cmd_migrate,
    "clients": cmd_clients,
    "serve": cmd_serve,
}


# -- helpers -------------------------------------------------------------------------------------
def _service(args, *, quiet: bool = False) -> Service:
    """The store named by the options, opened now: a JSON store of an earlier version is moved
    to SQLite here, and said so once."""
    service = args.opened.enter_context(contextlib.closing(Service(resolve(args.db, args.key))))
    service.db  # noqa: B018 -- opened (and moved) before anything is asked or read from stdin
    if service.migrated_from is not None and not quiet:
        print(f"mfa-console: moved the store {service.migrated_from} to SQLite at {service.db.name}; "
              "the old files are kept, no longer used", file=sys.stderr)  # fmt: skip
    return service


def _open(args) -> tuple[Service, Session]:
    service = _service(args)
    return service, service.operator(os_actor())


def _dashboard(paths: StorePaths, *, demo: bool = False) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise Fail("the dashboard needs a terminal (ssh -t, or a terminal window); every other command "
                   "works without one", EXIT_USAGE)  # fmt: skip
    if not os.environ.get("COLORTERM") and "256color" not in os.environ.get("TERM", ""):
        # With 16 colours Textual sends the QR code's black and white as ANSI colours, which
        # terminal themes remap; every terminal in use over SSH takes the fixed 256-colour ones.
        os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "256")
    from tui.app import run_dashboard  # Textual loads only when the dashboard opens

    return run_dashboard(paths, demo=demo)


def _new_password(from_stdin: bool, prompt: str, *, required: bool = True) -> str:
    """A password from stdin's first line, or asked twice without echo on a terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        if not required:
            return ""
        raise Fail("no terminal to ask for the password: pass it with --password-stdin", EXIT_USAGE)
    first = getpass.getpass(f"{prompt}: ")
    if first and getpass.getpass("Again: ") != first:
        raise Fail("the two passwords differ", EXIT_USAGE)
    return first


def _ask(prompt: str) -> str:
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.strip()


def _ask_code_with_qr(enrollment: Enrollment, prompt: str | None = None) -> str:
    """Draws the QR code for the terminal's current size; Enter on an empty line redraws it."""
    while True:
        size = shutil.get_terminal_size((80, 24))
        for line in enrollment_screen(enrollment, size.columns, size.lines - 1):
            print(line)
        code = _ask(prompt or "Code from the app (Enter alone redraws): ")
        if code:
            return code


def enrollment_screen(enrollment: Enrollment, cols: int, rows: int) -> list[str]:
    """The QR code with the account and key beside it, below it, or, if it cannot fit, the key alone."""
    from store.qr import QRCode, QRTooLarge, ansi_lines, fit_qr  # segno loads only for enrollment

    side = _side_text(enrollment, SIDE_WIDTH)
    code = fit_qr(enrollment.uri, cols - SIDE_WIDTH - 2, rows)
    if isinstance(code, QRCode):
        lines = ansi_lines(code)
        pad = (code.height - len(side)) // 2
        side = [""] * max(pad, 0) + side
        return [qr + "  " + (side[i] if i < len(side) else "") for i, qr in enumerate(lines)]
    below = _side_text(enrollment, cols)
    code = fit_qr(enrollment.uri, cols, rows - len(below))
    if isinstance(code, QRCode):
        return ansi_lines(code) + below
    need = fit_qr(enrollment.uri, 1, 1)
    assert isinstance(need, QRTooLarge)
    # The smallest terminal that shows it: the smallest code with the text beside it, and the prompt.
    need_cols, need_rows = need.needed_cols + 2 + SIDE_WIDTH, max(need.needed_rows, len(side)) + 1
    message = (
        f"This terminal is {cols}x{rows + 1}: the QR code needs at least {need_cols}x{need_rows}. "
        "Enlarge the window and press Enter to redraw it, or type the key into the app:"
    )
    return [*textwrap.wrap(message, cols), "", *below[below.index("Account:") :]]  # no "Scan ...": no code


def _side_text(enrollment: Enrollment, width: int) -> list[str]:
    wrap = lambda text: textwrap.wrap(printable(text), width) or [""]  # noqa: E731
    return [
        *wrap("Scan with Google Authenticator or any TOTP app."),
        "",
        "Account:",
        *wrap(enrollment.label),
        "",
        "Or enter this key by hand:",
        *enrollment.key_lines,
        "(time-based, 6 digits, 30 s)",
    ]


def _auth_exit(result: AuthResult, *, quiet: bool = False) -> int:
    messages = {
        Outcome.OK: ("accepted", EXIT_OK),
        Outcome.INVALID: ("rejected", EXIT_REJECTED),
        Outcome.LOCKED: (f"locked out until {_when(result.locked_until)}", EXIT_LOCKED),
        Outcome.NOT_ENROLLED: ("no active 2FA for this user", EXIT_NOT_ENROLLED),
        Outcome.ENROLLMENT_REQUIRED: ("enrollment required: run `mfa-console enroll` or sign in to the dashboard", EXIT_ENROLL),
    }
    message, code = messages[result.outcome]
    if result.used_recovery_code:
        message += f" (recovery code used; {result.recovery_codes_left} left)"
    if not quiet:
        print(message, file=sys.stderr)
    return code


def _print_users(users: list[User]) -> None:
    header = ("USERNAME", "NAME", "ROLE", "TEAM", "2FA", "ACTIVATED", "LAST LOGIN", "")
    rows = [
        (
            u.username,
            u.name,
            u.role.value,
            u.team or "",
            u.status.value,
            _day(u.activated_at),
            _day(u.last_login_at),
            ", ".join(f for f in ("deactivated" if not u.active else "", "locked" if u.locked_until else "") if f),
        )
        for u in sorted(users, key=lambda u: u.username.casefold())
    ]
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _print_policy(policy: Policy, *, as_json: bool) -> None:
    doc = {
        "issuer": policy.issuer,
        "mode": policy.mode.value,
        "enabled": policy.enabled,
        "digits": policy.digits,
        "period_seconds": policy.period,
        "window_steps": policy.window,
        "lockout": {
            "failures": policy.max_failures,
            "first_lock_minutes": policy.lock_minutes,
            "max_lock_minutes": policy.lock_cap_minutes,
        },
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    state = "on" if policy.enabled else "off"
    print(f"Issuer:   {printable(policy.issuer)}")
    print(f"2FA:      {state} ({policy.mode.value}{'' if policy.may_disable else ': cannot be turned off'})")
    print(f"Codes:    TOTP, {policy.digits} digits, every {policy.period} s, ±{policy.window} step accepted")
    print(
        f"Lockout:  {policy.max_failures} failures lock for {policy.lock_minutes} min, "
        f"doubling each time up to {policy.lock_cap_minutes} min"
    )


def _no_core_dumps() -> None:
    """The key, TOTP secrets and typed passwords pass through this process: never into a core file."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # not dumpable: no core even through a core_pattern pipe, and no ptrace by others
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):  # not Linux
        pass


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected requests per second above 0, got {text!r}")
    return value


def _is_port(text: str) -> bool:
    return text.isdigit() and int(text) <= 65535


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or an ISO 8601 time, got {text!r}") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d") if at else ""


def _when(at: datetime | None) -> str:
    if at is None:
        return "later"
    minutes = max(1, round((at.timestamp() - time.time()) / 60))
    return f"{at.astimezone().strftime('%H:%M %Z')} ({minutes} min)"
