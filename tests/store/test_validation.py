import unicodedata

import pytest

from store import validation as v
from store.errors import InvalidInput
from store.models import Role
from tests.support import TRICKY  # values on the edge of some rule, for every field

# Characters that can hide, reorder or restyle text on a terminal.
CONTROL = [
    "\x00",  # NUL
    "\x07",  # BEL
    "\x1b[31m",  # ESC sequence
    "\x7f",  # DEL
    "\x9b",  # C1 CSI
    "\n",
    "\t",
    "\u200b",  # zero-width space
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\ufeff",  # zero-width no-break space
    "\u2028",  # line separator
]
TEXT_FIELDS = {
    "name": v.clean_name,
    "team": v.clean_team,
    "email": v.clean_email,
    "issuer": v.clean_issuer,
}


@pytest.mark.parametrize("raw, clean", [
    ("alice", "alice"),
    ("  Alice.Smith_2@cc-1  ", "Alice.Smith_2@cc-1"),
    ("7up", "7up"),
    ("a" * 64, "a" * 64),
])
def test_username_accepted_and_case_preserved(raw, clean):
    assert v.clean_username(raw) == clean


@pytest.mark.parametrize("raw, message", [
    ("", "username: required"),
    ("   ", "username: required"),
    (None, "username: required"),
    ("a" * 65, "username: at most 64 characters"),
    ("bob smith", "username: only letters, digits and . _ - @ allowed"),
    ("bob/..", "username: only letters, digits and . _ - @ allowed"),
    ("jos\u00e9", "username: only letters, digits and . _ - @ allowed"),
    ("bob\x1b[2J", "username: only letters, digits and . _ - @ allowed"),
    (".bob", "username: must start with a letter or digit"),
    ("-bob", "username: must start with a letter or digit"),
    ("@bob", "username: must start with a letter or digit"),
])
def test_username_refused(raw, message):
    with pytest.raises(InvalidInput) as e:
        v.clean_username(raw)
    assert str(e.value) == message


def test_username_key_is_case_insensitive():
    assert v.username_key("Alice") == v.username_key("ALICE") == "alice"


def test_name_stripped_and_limited():
    assert v.clean_name("  José Núñez  ") == "José Núñez"
    assert v.clean_name("n" * 100) == "n" * 100
    with pytest.raises(InvalidInput, match=r"^name: at most 100 characters$"):
        v.clean_name("n" * 101)
    with pytest.raises(InvalidInput, match=r"^name: required$"):
        v.clean_name("  ")


@pytest.mark.parametrize("clean", [v.clean_team, v.clean_email])
@pytest.mark.parametrize("raw", ["", "   ", None])
def test_optional_fields_empty_is_none(clean, raw):
    assert clean(raw) is None


def test_team_limit():
    assert v.clean_team(" Night shift ") == "Night shift"
    with pytest.raises(InvalidInput, match=r"^team: at most 64 characters$"):
        v.clean_team("t" * 65)


@pytest.mark.parametrize("raw", ["a@b.co", "first.last+tag@mail.example.org", " x@y.io "])
def test_email_accepted(raw):
    assert v.clean_email(raw) == raw.strip()


@pytest.mark.parametrize("raw", [
    "plainaddress", "@example.com", "a@b@c.com", "a@localhost", "a b@c.com",
    "a@c.com.", "a@.c.com", "a@c..com",
])
def test_email_refused(raw):
    with pytest.raises(InvalidInput, match=r"^email: "):
        v.clean_email(raw)


def test_email_length_limit():
    long = "a" * 243 + "@example.com"  # 255 characters
    assert v.clean_email(long[1:]) == long[1:]
    with pytest.raises(InvalidInput, match=r"^email: at most 254 characters$"):
        v.clean_email(long)


@pytest.mark.parametrize("raw, role", [
    ("admin", Role.ADMIN), (" Supervisor ", Role.SUPERVISOR), ("AGENT", Role.AGENT), (Role.AGENT, Role.AGENT),
])
def test_role_accepted(raw, role):
    assert v.clean_role(raw) is role


@pytest.mark.parametrize("raw", ["", None, "root", "admins", "ad min"])
def test_role_refused(raw):
    with pytest.raises(InvalidInput) as e:
        v.clean_role(raw)
    assert str(e.value) == "role: must be admin, supervisor or agent"


def test_issuer():
    assert v.clean_issuer(" Acme Contact Center ") == "Acme Contact Center"
    with pytest.raises(InvalidInput, match=r"^issuer: must not contain ':'$"):
        v.clean_issuer("Acme:CC")
    with pytest.raises(InvalidInput, match=r"^issuer: required$"):
        v.clean_issuer("")
    with pytest.raises(InvalidInput, match=r"^issuer: at most 64 characters$"):
        v.clean_issuer("i" * 65)


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("bad", CONTROL, ids=repr)
def test_control_characters_refused(field, bad):
    value = f"ab{bad}c@example.com" if field == "email" else f"ab{bad}cd"
    with pytest.raises(InvalidInput) as e:
        TEXT_FIELDS[field](value)
    assert str(e.value) == f"{field}: control characters are not allowed"


@pytest.mark.parametrize("clean, field", [(v.clean_name, "name"), (v.clean_team, "team")])
@pytest.mark.parametrize("raw", ["=1+1", "+33 1", "-2", "@SUM(A1)", "  =HYPERLINK(x)", "\t=cmd"])
def test_formula_prefix_refused(clean, field, raw):
    with pytest.raises(InvalidInput) as e:
        clean(raw)
    assert str(e.value) == f"{field}: must not start with = + - or @"


def test_formula_prefix_refused_in_email():
    with pytest.raises(InvalidInput, match=r"^email: must not start with"):
        v.clean_email("=cmd@evil.example")


def test_formula_characters_inside_are_fine():
    assert v.clean_name("Jean-Luc = Boss") == "Jean-Luc = Boss"
    assert v.clean_team("Tier-2 @ Paris") == "Tier-2 @ Paris"


@pytest.mark.parametrize("clean", [v.clean_name, v.clean_team, v.clean_issuer])
def test_rich_markup_kept_verbatim(clean):
    assert clean(" [red]x[/red] [bold]y[/] ") == "[red]x[/red] [bold]y[/]"


# -- fast paths: each must agree exactly with the rule it shortcuts ------------------------------
CLEANERS = {"username": v.clean_username, "name": v.clean_name, "email": v.clean_email, "team": v.clean_team}
AS_IS = {"username": v.usernames_as_is, "name": v.names_as_is, "email": v.emails_as_is}


def outcome(clean, value):
    try:
        return clean(value)
    except InvalidInput as e:
        return f"refused: {e}"


def test_isprintable_rules_out_every_control_category():
    # _text and the *_as_is checks lean on this: printable text has no character in a
    # refused category, and no whitespace but " ". Checked on every code point.
    chars = [chr(c) for c in range(0x110000)]
    assert not [c for c in chars if c.isprintable() and unicodedata.category(c) in v._CONTROL_CATEGORIES]
    assert [c for c in chars if c.isprintable() and c.isspace()] == [" "]


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_text_rules_match_a_category_walk_of_every_character(value):
    def reference(field, s, max_len):  # _text without its isprintable() shortcut
        s = (s or "").strip()
        if not s:
            raise InvalidInput(f"{field}: required")
        if any(unicodedata.category(c) in v._CONTROL_CATEGORIES for c in s):
            raise InvalidInput(f"{field}: control characters are not allowed")
        if len(s) > max_len:
            raise InvalidInput(f"{field}: at most {max_len} characters")
        if s.startswith(("=", "+", "-", "@")):
            raise InvalidInput(f"{field}: must not start with = + - or @")
        return s

    for field, max_len in (("name", 100), ("team", 64), ("email", 254)):
        fast = outcome(lambda s: v._text(field, s, max_len=max_len, formula_safe=True), value)
        assert fast == outcome(lambda s: reference(field, s, max_len), value)


ORDINARY = {  # columns the fast path must take
    "username": ["alice", "Bob.S", "7up", "a" * 64, "x_y-z@cc"],
    "name": ["Alice Martin", "José Núñez", "日本語", "e\u0301", "n" * 100, "Jean-Luc = Boss", "[red]x[/red]"],
    "email": ["a@b.co", "", "first.last+tag@mail.example.org", "é@exämple.com", "a" * 242 + "@example.com"],
}


@pytest.mark.parametrize("field", AS_IS)
def test_as_is_only_when_the_cleaner_returns_each_value_unchanged(field):
    clean, as_is, ordinary = CLEANERS[field], AS_IS[field], ORDINARY[field]
    assert as_is(ordinary)
    for s in TRICKY:
        column = ordinary[:2] + [s] + ordinary[2:]
        unchanged = all(outcome(clean, x) == (x or None) for x in column)
        assert as_is(column) <= unchanged, repr(s)  # True only if the cleaner would change nothing
        kept = outcome(clean, s) == (s or None)
        assert as_is([s]) <= kept, repr(s)
        # Only text that is not printable (say a no-break space) is left to the cleaner.
        assert as_is([s]) == (kept and s.isprintable()), repr(s)


def test_username_as_is_not_fooled_by_a_newline_inside_a_value():
    assert not v.usernames_as_is(["alice\nbob"])


def test_role_lookup_matches_the_enum():
    for s in TRICKY + [r.value for r in Role] + list(Role):
        try:
            expected = Role((s or "").strip().casefold())
        except ValueError:
            expected = "refused: role: must be admin, supervisor or agent"
        assert outcome(v.clean_role, s) == expected, repr(s)
