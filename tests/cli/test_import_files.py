"""What `users import` reads: a regular file of a sane size, or standard input up to the same
size; a FIFO, a device or a huge file is one line at once, never a hang or a MemoryError."""

from __future__ import annotations

import io
import os
import time

import pytest

from store import csvio
from store.errors import StoreError
from tests.support import Cli

HEADER = "username,name,email,role,team\n"


@pytest.fixture
def cli(service, tmp_path) -> Cli:
    """The `service` fixture's store (ada, sam, alice, bob), driven by the command line."""
    service.close()
    return Cli(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_an_import_of_what_is_not_a_regular_file_is_refused_at_once(cli, kind):
    """A FIFO nobody writes would hold the command forever; /dev/zero would feed it forever."""
    path = {"fifo": cli.tmp / "users.csv", "device": "/dev/zero", "folder": cli.tmp}[kind]
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    before = set(cli.users())
    started = time.monotonic()
    said = cli.fails("users", "import", str(path), code=2)
    assert time.monotonic() - started < 10
    assert said == f"mfa-console: {path} is not a regular file (a FIFO, a device or a folder): refusing to read it"
    assert set(cli.users()) == before


def test_an_import_over_the_size_cap_is_refused_unread(cli):
    """A sparse file: its size costs no disk, and it is read no further than the cap."""
    big = cli.tmp / "users.csv"
    with open(big, "wb") as f:
        f.write(HEADER.encode())
        f.truncate((csvio.MAX_IMPORT_MIB << 20) + 1)
    said = cli.fails("users", "import", str(big), code=2)
    assert said.startswith(f"mfa-console: {big} is over 64 MiB, the most one import takes")
    big.write_text(HEADER + "zoe,Zoe,,agent,\n")  # the same file at a sane size goes in
    assert cli.run("users", "import", str(big), code=0).stdout.strip() == "Imported 1 user."


def test_standard_input_is_read_no_further_than_the_cap(monkeypatch):
    monkeypatch.setattr(csvio, "MAX_IMPORT_MIB", 1)
    endless = io.BytesIO(b"x" * (3 << 20))
    with pytest.raises(StoreError, match=r"^standard input is over 1 MiB"):
        csvio.read_import(endless)
    assert endless.tell() == (1 << 20) + 1
    assert csvio.read_import(io.BytesIO(HEADER.encode())) == HEADER.encode()
