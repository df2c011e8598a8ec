"""`mfa-console enroll USER` in a real terminal (tmux): scan the QR off the screen, type the code.

The QR is decoded from `capture-pane -p -e -N` as a human would see it in a dark and in a light
theme; codes come from `oathtool`, not from the code under test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from tests.screen import Tmux, decode_qr, find_qr
from tests.support import read_store

_SCRIPT = Path(sys.executable).with_name("mfa-console")  # the console script of this venv
MFA = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]
ISSUER = "Acme Contact Center"
FIRST_PROMPT = "Code from the app (Enter alone redraws):"
KEY_HEADING = "Or enter this key by hand:"
RECOVERY = re.compile(r"\b[a-z2-9]{5}-[a-z2-9]{5}\b")
PERIOD = 30


class Store:
    def __init__(self, tmp_path: Path):
        self.db = tmp_path / "store" / "store.db"
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "MFA_CONSOLE_KEY")}
        self.env["MFA_CONSOLE_DB"] = str(self.db)

    def run(self, *args: str, input: str = "", code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*MFA, *args], input=input, capture_output=True, text=True, env=self.env, timeout=30)
        assert proc.returncode == code, f"{args}: exit {proc.returncode}, expected {code}\n{proc.stdout}{proc.stderr}"
        return proc

    def user(self, username: str) -> dict:
        return {u["username"]: u for u in json.loads(self.run("users", "list", "--json").stdout)}[username]

    def record(self, username: str) -> dict:
        """The user's raw record in the store file (to see what is left of an enrollment)."""
        return read_store(self.db)["users"][username]

    def terminal(self, username: str, cols: int = 80, rows: int = 24) -> Tmux:
        return Tmux([*MFA, "enroll", username], cols=cols, rows=rows, env={"MFA_CONSOLE_DB": str(self.db)},
                    remain_on_exit=True)  # fmt: skip


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path)
    store.run("init", "--issuer", ISSUER, "--admin", "root", "--password-stdin", input="root-password\n")
    for username in ("alice", "carol"):
        store.run("users", "add", username, "--name", username.title(), "--role", "agent")
    return store


def oathtool(secret: str) -> str:
    """The current TOTP code, by oathtool; the key goes on stdin, not in argv."""
    return subprocess.run(
        ["oathtool", "--totp", "-b", "-"], input=secret, capture_output=True, text=True, check=True
    ).stdout.strip()


def wrong_code(secret: str) -> str:
    """A well-formed code that no step a confirmation in the next minute accepts has."""
    step = int(time.time() // PERIOD)
    near = {pyotp.TOTP(secret).at(s * PERIOD) for s in range(step - 2, step + 4)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in near)


def check_uri(uri: str, username: str) -> str:
    """The otpauth URI names the account and the issuer; returns its secret."""
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/{ISSUER}:{username}"
    query = parse_qs(parts.query, strict_parsing=True)
    assert query["issuer"] == [ISSUER]
    assert set(query) <= {"secret", "issuer", "digits", "period", "algorithm"}
    (secret,) = query["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret  # 160 bits of base32
    return secret


def key_on_screen(plain: str) -> tuple[int, list[str]]:
    """The column the hand-entry key is shown at, and its lines as shown."""
    lines = plain.split("\n")
    start = next(i for i, line in enumerate(lines) if KEY_HEADING in line)
    col = lines[start].index(KEY_HEADING)
    key_lines = []
    for line in lines[start + 1 :]:
        text = line[col:].strip()
        if text.startswith("(time-based"):
            return col, key_lines
        key_lines.append(text)
    raise AssertionError(f"no end to the key:\n{plain}")


def check_key(key_lines: list[str], secret: str) -> None:
    """The key, in groups of four, four groups a line, spells the URI's secret."""
    groups = [group for line in key_lines for group in line.split(" ")]
    assert all(re.fullmatch(r"[A-Z2-7]{4}", g) for g in groups), key_lines
    assert all(len(line.split(" ")) <= 4 for line in key_lines)
    assert "".join(groups) == secret


def check_success(tmux: Tmux, store: Store, username: str, secret: str) -> None:
    """Success screen with 10 recovery codes, the key gone from screen and scrollback, user Activated."""
    assert tmux.wait_exit() == 0
    screen = tmux.capture(escapes=False)
    assert f"2FA is active for {username}." in screen
    codes = RECOVERY.findall(screen)
    assert len(codes) == 10 == len(set(codes))
    everything = tmux.capture_history()
    assert "Recovery codes" in everything  # the scrollback capture works...
    groups = [secret[i : i + 4] for i in range(0, len(secret), 4)]
    for shown in (secret, " ".join(groups[:4]), " ".join(groups[4:]), KEY_HEADING):
        assert shown not in everything  # ...and the key is in neither
    assert not any(ch in everything for ch in "▀▄█")  # nor the QR code
    user = store.user(username)
    assert (user["status"], user["active"]) == ("activated", True)
    # The codes shown are the ones stored.
    store.run("verify", username, input=f"{codes[0]}\n", code=0)


# -- tests ---------------------------------------------------------------------------------------
def test_enroll_at_80x24_scans_in_both_themes_and_activates(store):
    with store.terminal("alice", 80, 24) as tmux:
        plain = tmux.wait_for(FIRST_PROMPT)
        screen = tmux.capture()
        uris = decode_qr(screen, "dark")
        assert len(uris) == 1
        assert decode_qr(screen, "light") == uris
        secret = check_uri(uris[0], "alice")

        # The whole code, its quiet zone included, and the prompt fit the 24 rows: nothing scrolled.
        rows = plain.split("\n")[:24]
        qr = find_qr(screen)
        assert qr is not None
        assert qr.top == 0 and qr.bottom <= 23 and qr.right <= 80
        assert min(qr.quiet) >= 2, qr
        prompt_row = next(i for i, line in enumerate(rows) if FIRST_PROMPT in line)
        assert qr.bottom <= prompt_row < 24
        assert f"{ISSUER}:alice" in plain

        # Beside it: the same key, grouped for typing by hand.
        col, key_lines = key_on_screen(plain)
        assert col >= qr.right
        assert len(key_lines) == 2
        check_key(key_lines, secret)

        tmux.send(oathtool(secret), "Enter")
        check_success(tmux, store, "alice", secret)


def test_a_wrong_code_hints_at_the_clock_and_the_right_one_then_works(store):
    with store.terminal("alice") as tmux:
        tmux.wait_for(FIRST_PROMPT)
        secret = check_uri(decode_qr(tmux.capture())[0], "alice")
        tmux.send(wrong_code(secret), "Enter")
        tmux.wait_for("That code is not right")
        screen = tmux.wait_for("Code from the app:")  # asked again (the first prompt has no ':' there)
        assert "Check the phone's clock is set automatically" in screen
        assert screen.rstrip().endswith("Code from the app:")
        assert store.user("alice")["status"] == "pending"
        tmux.send(oathtool(secret), "Enter")
        check_success(tmux, store, "alice", secret)


def test_a_terminal_too_small_says_what_it_needs_and_the_key_still_works(store):
    with store.terminal("alice", 40, 15) as tmux:
        plain = tmux.wait_for(FIRST_PROMPT)
        screen = tmux.capture()
        assert decode_qr(screen, "dark") == decode_qr(screen, "light") == []
        assert find_qr(screen) is None
        words = " ".join(plain.split())
        need = re.search(r"This terminal is 40x15: the QR code needs at least (\d+)x(\d+)\.", words)
        assert need, plain  # the whole message, its first line included: nothing scrolled off
        assert "Enlarge the window" in words
        assert all(len(line) <= 40 for line in plain.split("\n"))
        assert f"{ISSUER}:alice" in words
        _, key_lines = key_on_screen(plain)
        secret = "".join("".join(key_lines).split())
        check_key(key_lines, secret)
        assert store.record("alice")["pending_secret"]

        # The size it names is enough: carol (a name as long as alice's) gets a QR code there.
        cols, rows = int(need.group(1)), int(need.group(2))
        with store.terminal("carol", cols, rows) as roomy:
            roomy.wait_for(FIRST_PROMPT)
            big = roomy.capture()
            qr = find_qr(big)
            assert qr is not None and qr.top == 0 and min(qr.quiet) >= 2
            assert len(decode_qr(big, "dark")) == 1 and decode_qr(big, "light") == decode_qr(big, "dark")
            roomy.send("C-c")
            assert roomy.wait_exit() == 130

        tmux.send(oathtool(secret), "Enter")
        check_success(tmux, store, "alice", secret)
    store.run("verify", "carol", input="123456\n", code=4)


@pytest.mark.parametrize(("keys", "status"), [("C-c", 130), ("C-d", 1)])
def test_interrupting_enrollment_leaves_the_user_pending(store, keys, status):
    with store.terminal("alice") as tmux:
        tmux.wait_for(FIRST_PROMPT)
        secret = check_uri(decode_qr(tmux.capture())[0], "alice")
        assert store.record("alice")["pending_secret"]  # under way...
        tmux.send(keys)
        assert tmux.wait_exit() == status
        after = tmux.capture_history()
        screen = tmux.capture(escapes=True)
    assert "Traceback" not in after
    # The key leaves the screen with the cancel, as with a success: neither the QR nor its text.
    assert find_qr(screen) is None and secret[:4] not in after and "alice stays pending" in after
    record = store.record("alice")
    assert (record.get("secret"), record.get("pending_secret")) == (None, None)  # ...and nothing of it left
    assert store.user("alice")["status"] == "pending"
    actions = [json.loads(line)["action"] for line in store.run("audit", "--user", "alice", "--json").stdout.splitlines()]
    assert actions[:2] == ["enroll.cancel", "enroll.begin"]
    store.run("verify", "alice", input=f"{oathtool(secret)}\n", code=4)
