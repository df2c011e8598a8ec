import csv
import io
import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from store import csvio
from store.csvio import EXPORT_COLUMNS, IMPORT_COLUMNS, parse_users_csv, users_to_json, write_users_csv
from store.errors import ImportRejected, InvalidInput
from store.models import NewUser, Role, Status, User
from tests.support import TRICKY

HEADER = b"username,name,email,role,team\n"


def rejected(data: bytes, existing: set[str] = frozenset()) -> dict[int, str]:
    """Parse data that must be refused; return {line: reason}."""
    with pytest.raises(ImportRejected) as e:
        parse_users_csv(data, set(existing))
    errors = e.value.errors
    assert len({err.line for err in errors}) == len(errors), "one error per bad row"
    return {err.line: err.reason for err in errors}


def test_good_file_imports():
    data = HEADER + (
        b"alice,Alice Martin,alice@example.com,admin,\n"
        b" Bob.S , Bob Smith ,,Supervisor, Night shift \n"
        b'carol,"Carol, the ""Closer""",,AGENT,Tier 2\n'
    )
    assert parse_users_csv(data, set()) == [
        NewUser("alice", "Alice Martin", Role.ADMIN, "alice@example.com", None),
        NewUser("Bob.S", "Bob Smith", Role.SUPERVISOR, None, "Night shift"),
        NewUser("carol", 'Carol, the "Closer"', Role.AGENT, None, "Tier 2"),
    ]


def test_header_any_order_case_and_spaces_crlf_and_blank_lines():
    data = b" Team ,ROLE,Email,name,UserName\r\n\r\nT1,agent,,Dee,dee\r\n,,,,\r\n   \r\n"
    assert parse_users_csv(data, set()) == [NewUser("dee", "Dee", Role.AGENT, None, "T1")]


def test_utf8_bom_accepted():
    data = "\ufeffusername,name,email,role,team\nnuno,Nuño Peña,,agent,\n".encode()
    assert parse_users_csv(data, set())[0].name == "Nuño Peña"


def test_every_bad_row_reported_with_its_physical_line():
    data = HEADER + (
        b"ok1,Fine,,agent,\n"                  # 2
        b"bad user,X,,agent,\n"                # 3
        b'multi,"First\nSecond",,agent,\n'    # 4-5: newline in name
        b"ok2,Fine,,agent,\n"                  # 6
        b"\n"                                  # 7: blank, skipped
        b"r1,X,,root,\n"                       # 8
        b"f1,=SUM(A1),,agent,+team\n"          # 9
        b"e1,X,not-an-email,agent,\n"          # 10
        b",,,,\n"                              # 11: empty spreadsheet row, skipped
        b"n1,,,agent,\n"                       # 12
    )
    assert rejected(data) == {
        3: "username: only letters, digits and . _ - @ allowed",
        4: "name: control characters are not allowed",
        8: "role: must be admin, supervisor or agent",
        9: "name: must not start with = + - or @; team: must not start with = + - or @",
        10: "email: not a valid address (expected name@example.com)",
        12: "name: required",
    }


def test_duplicates_within_file_and_against_store():
    data = HEADER + (
        b"amy,Amy,,agent,\n"    # 2
        b"bob,Bob,,agent,\n"    # 3
        b"AMY,Amy 2,,agent,\n"  # 4
        b"Bob,Bob,,agent,\n"    # 5
        b"amy,Amy 3,,agent,\n"  # 6
    )
    assert rejected(data, {"bob"}) == {
        3: "username 'bob' already exists",
        4: "username 'AMY' appears twice (also line 2)",
        5: "username 'Bob' already exists",
        6: "username 'amy' appears 3 times (also lines 2, 4)",
    }


def test_duplicate_of_an_otherwise_bad_row_still_reported():
    data = HEADER + b"amy,Amy,,boss,\namy,Amy,,agent,\n"
    assert rejected(data) == {
        2: "role: must be admin, supervisor or agent",
        3: "username 'amy' appears twice (also line 2)",
    }


@pytest.mark.parametrize("name", [
    "Eve\x1b[2J\x1b[H",       # clear screen
    "Eve\x1b]8;;http://x\x07",  # OSC 8 hyperlink
    "Eve\u202egnp.exe",       # bidi override
    "Eve\u200b",              # zero-width space
    "Eve\x9b31m",             # C1 CSI
])
def test_control_characters_refused_in_import(name):
    data = HEADER + b"ok,Ok,,agent,\n" + f"eve,{name},,agent,\n".encode()
    assert rejected(data) == {3: "name: control characters are not allowed"}


def test_rich_markup_imported_verbatim():
    data = HEADER + b"rich,[red]Boss[/red],,agent,[bold]T[/]\n"
    [user] = parse_users_csv(data, set())
    assert (user.name, user.team) == ("[red]Boss[/red]", "[bold]T[/]")


def test_nul_byte_is_a_row_error_not_a_crash():
    data = HEADER + b"ok,Ok,,agent,\nnul,Bad\x00Name,,agent,\nok2,Ok,,agent,\n"
    assert list(rejected(data)) == [3]


def test_unterminated_quote_reported_where_it_starts():
    data = HEADER + b"bad user,X,,agent,\n" + b'ok,"Never closed,,agent,\nx,y,,agent,\n'
    errors = rejected(data)
    assert list(errors) == [2, 3]
    assert errors[3].startswith("malformed CSV")


def test_stray_quote_is_malformed_and_later_rows_still_checked():
    data = HEADER + b'q,"Bob"x,,agent,\nbad user,X,,agent,\n'
    errors = rejected(data)
    assert list(errors) == [2, 3]
    assert errors[2].startswith("malformed CSV")


@pytest.mark.parametrize("row, found", [(b"a,b,c,agent,t,extra,more", 7), (b"a,b,agent", 3)])
def test_wrong_field_count(row, found):
    assert rejected(HEADER + row + b"\n") == {2: f"expected 5 fields, found {found}"}


def test_not_utf8_names_line_and_offset():
    data = HEADER + b"ok,Ok,,agent,\n" + "jo,Jos\u00e9,,agent,\n".encode("latin-1")
    offset = data.index(b"\xe9")
    assert rejected(data) == {3: f"not UTF-8 text: byte 0xe9 at offset {offset}; save the file as CSV UTF-8"}


def test_not_utf8_offset_counts_the_bom():
    data = b"\xef\xbb\xbf" + HEADER + b"\xff\n"
    assert rejected(data) == {2: f"not UTF-8 text: byte 0xff at offset {len(data) - 2}; save the file as CSV UTF-8"}


@pytest.mark.parametrize("header, fragment", [
    (b"username,name,email,role", "missing column(s) team"),
    (b"username,name,email,role,team,password", "unknown column 'password'"),
    (b"username,name,email,role,team,Name", "duplicate column 'name'"),
    (b"username,name,email,role,team,", "column 6 has no name"),
    (b"user,name,email,role,team", "unknown column 'user'; missing column(s) username"),
    (b"username,name,email,role,team,\x1b[31m", r"unknown column '\x1b[31m'"),
])
def test_bad_header_is_an_error_on_line_1(header, fragment):
    errors = rejected(header + b"\nann,Ann,,agent,\n")
    assert list(errors) == [1]
    assert fragment in errors[1]


@pytest.mark.parametrize("data", [b"", b"\n\n", HEADER, HEADER + b"\n,,,,\n"])
def test_no_users(data):
    assert rejected(data) == {1: "no users in file"}


def users():
    t = datetime(2024, 3, 1, 8, 30, 5, 123456, tzinfo=UTC)
    return [
        User("alice", "Alice, \"Al\" Martin", Role.ADMIN, Status.ACTIVATED, email="alice@example.com",
             team="Tier 2", created_at=t, activated_at=t + timedelta(hours=1),
             last_login_at=t.astimezone(timezone(timedelta(hours=2)))),
        User("Bob", "Böb [red]x[/red]", Role.AGENT, Status.PENDING, active=False),
    ]


def test_csv_export_format():
    out = io.StringIO()
    write_users_csv(users(), out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        list(EXPORT_COLUMNS),
        ["alice", 'Alice, "Al" Martin', "alice@example.com", "admin", "Tier 2", "activated", "true",
         "2024-03-01T08:30:05Z", "2024-03-01T09:30:05Z", "2024-03-01T08:30:05Z"],
        ["Bob", "Böb [red]x[/red]", "", "agent", "", "pending", "false", "", "", ""],
    ]
    assert EXPORT_COLUMNS[:5] == ("username", "name", "email", "role", "team")


def test_csv_export_imports_back():
    out = io.StringIO()
    write_users_csv(users(), out)
    imported = parse_users_csv(out.getvalue().encode("utf-8-sig"), set())
    assert imported == [NewUser(u.username, u.name, u.role, u.email, u.team) for u in users()]


def test_json_export_is_serialisable():
    records = json.loads(json.dumps(users_to_json(users())))
    assert records[0] == {
        "username": "alice", "name": 'Alice, "Al" Martin', "email": "alice@example.com", "role": "admin",
        "team": "Tier 2", "status": "activated", "active": True, "created_at": "2024-03-01T08:30:05Z",
        "activated_at": "2024-03-01T09:30:05Z", "last_login_at": "2024-03-01T08:30:05Z",
    }
    assert records[1]["email"] is None and records[1]["created_at"] is None and records[1]["active"] is False
    assert [list(r) for r in records] == [list(EXPORT_COLUMNS)] * 2


# -- the fast path (_plain_users) against the row-by-row one ------------------------------------
def outcome(data: bytes, existing: set[str]) -> list:
    """The users, or the errors of a rejected file."""
    try:
        return parse_users_csv(data, set(existing))
    except ImportRejected as e:
        return e.errors


def both_ways(data: bytes, existing: set[str] = frozenset()) -> tuple[list, bool]:
    """The users or errors parse_users_csv gives, and whether the fast path gave them.

    Asserts that with the fast path turned off the answer is the same.
    """
    answers = []
    real = csvio._plain_users

    def spy(*args):
        answers.append(real(*args))
        return answers[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(csvio, "_plain_users", spy)
        result = outcome(data, existing)
        mp.setattr(csvio, "_plain_users", lambda *args: None)
        assert outcome(data, existing) == result
    return result, any(a is not None for a in answers)


def accepted(clean, value: str) -> bool:
    try:
        clean(value)
    except InvalidInput:
        return False
    return True


# Field values for generated files: every TRICKY one a file can hold (not a lone surrogate),
# and some that must be quoted.
VALUES = [s for s in TRICKY if s != "\ud800"] + ["a,b", 'say "hi"', "x\r\ny", "\u00a0Nuño\u00a0"]
VALID = {column: [s for s in VALUES if accepted(clean, s)] for column, clean in csvio._CLEANERS.items()}


def cell(value: str, rng: random.Random) -> str:
    if any(c in value for c in ',"\r\n') or rng.random() < 0.01:
        return '"' + value.replace('"', '""') + '"'
    return value


def generated_file(rng: random.Random) -> tuple[bytes, bool]:
    """A file, and whether it is plain: fit for the fast path if valid."""
    columns = list(IMPORT_COLUMNS) + rng.sample(EXPORT_COLUMNS[5:], rng.choice([0, 0, 2, 5]))
    rng.shuffle(columns)
    end = rng.choice(["\n", "\n", "\r\n", "\r"])
    lines = [",".join(c.upper() if rng.random() < 0.2 else c for c in columns)]
    empty = "," * (len(columns) - 1)
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.1:
            lines.append(rng.choice(["", empty, "   ", " ,"]))  # blank rows, skipped
            continue
        row = []
        for column in columns:
            if column == "username" and rng.random() < 0.7:
                # Mostly distinct, sometimes the same in another case.
                value = rng.choice(["user{}", "User.{}", " u{}@cc ", "USER{}"]).format(rng.randint(0, 6))
            elif column in VALID and rng.random() < 0.9:
                value = rng.choice(VALID[column])
            else:
                value = rng.choice(VALUES)
            row.append(cell(value, rng))
        lines.append(",".join(row))
    text = end.join(lines) + rng.choice([end, "", end + end])
    data = (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + text.encode()
    body = re.split(rb"\r\n|\r|\n", data, maxsplit=1)[-1]  # what follows the header
    odd_blank = any(line in ("   ", " ,") for line in lines)  # blank rows the fast path leaves to the slow one
    return data, b'"' not in body and body.count(b"\r") == body.count(b"\r\n") and not odd_blank


def test_fast_path_agrees_with_row_by_row_on_generated_files():
    rng = random.Random(5)
    taken = 0
    for _ in range(1500):
        data, plain = generated_file(rng)
        result, fast = both_ways(data, {"user6"})
        valid = all(isinstance(u, NewUser) for u in result)
        assert fast == (valid and plain), data  # any plain, valid file takes the fast path
        taken += fast
    assert taken > 150


def test_fast_path_on_ordinary_rows():
    rows = "".join(f"kim.lee.{i},Kim Lee,kim.lee.{i}@acme.example,{'agent' if i % 9 else 'supervisor'},Tier {i % 4}\n"
                   for i in range(500))
    users, fast = both_ways(HEADER + rows.encode())
    assert fast and len(users) == 500
    assert users[9] == NewUser("kim.lee.9", "Kim Lee", Role.SUPERVISOR, "kim.lee.9@acme.example", "Tier 1")


def test_fast_path_cleans_values_that_are_valid_but_not_as_is():
    data = HEADER + (
        " bob , Bob\u00a0Smith ,bob@example.com ,Agent, Night shift \r\n"  # stripped; no-break space kept
        "ann,Ann,,ADMIN,   \r\n"
        ",,,,\r\n"
        "sam,Sam\u3000Lee,,\u017fupervisor,\r\n"  # a long s, casefolded to s
    ).encode()
    users, fast = both_ways(data)
    assert fast
    assert users == [
        NewUser("bob", "Bob\u00a0Smith", Role.AGENT, "bob@example.com", "Night shift"),
        NewUser("ann", "Ann", Role.ADMIN, None, None),
        NewUser("sam", "Sam\u3000Lee", Role.SUPERVISOR, None, None),
    ]
    errors, fast = both_ways(data.replace(b"sam,", "\u017fam,".encode()))  # but not in a username
    assert not fast
    assert [(e.line, e.reason) for e in errors] == [(5, "username: only letters, digits and . _ - @ allowed")]


def test_duplicates_in_any_case_leave_the_fast_path():
    data = HEADER + b"amy,Amy,,agent,\nAMY,Amy,,agent,\naMy,Amy,,agent,\nbob,Bob,,agent,\n"
    errors, fast = both_ways(data, {"bob"})
    assert not fast
    assert [(e.line, e.reason) for e in errors] == [
        (3, "username 'AMY' appears twice (also line 2)"),
        (4, "username 'aMy' appears 3 times (also lines 2, 3)"),
        (5, "username 'bob' already exists"),
    ]


def test_rows_off_by_a_field_are_refused_even_when_the_fields_would_line_up():
    data = HEADER + b"u1,N1,,agent,T,u2\nN2,,agent,T\n"  # 6 + 4 fields, as if two good rows of 5
    errors, fast = both_ways(data)
    assert not fast
    assert [(e.line, e.reason) for e in errors] == [
        (2, "expected 5 fields, found 6"),
        (3, "expected 5 fields, found 4"),
    ]


def test_field_over_the_csv_limit_is_malformed_either_way():
    header = b"username,name,email,role,team,status\n"
    errors, fast = both_ways(header + b"amy,Amy,,agent,," + b"x" * (csv.field_size_limit() + 1) + b"\n")
    assert not fast and errors[0].reason.startswith("malformed CSV")
    old = csv.field_size_limit(20)
    try:
        errors, fast = both_ways(HEADER + b"amy,Amy,,agent,Twenty-one characters\n")
    finally:
        csv.field_size_limit(old)
    assert not fast and errors[0].reason.startswith("malformed CSV")


@pytest.mark.parametrize("text", ["", "a", "a\n", "a\r\nb\rc\nd", "\r\r\n\n\r", "end\r", "x\u2028y\x0bz\x0c\x85w\n"])
def test_lines_split_as_io_splits_them(text):
    assert list(csvio._lines(text)) == list(io.StringIO(text, newline=""))

