"""`users edit` of an unknown user says so whatever the options; `users export -o -` writes to
standard output, as `-` conventionally means, not to a file named `-`."""

from __future__ import annotations

import csv
import io

import pytest

from tests.support import Cli


@pytest.fixture
def cli(service, tmp_path) -> Cli:
    """The `service` fixture's store (ada, sam, alice, bob), driven by the command line."""
    service.close()
    return Cli(tmp_path)


def test_editing_an_unknown_user_says_so_even_with_nothing_to_change(cli):
    assert cli.fails("users", "edit", "nosuch", code=2) == "mfa-console: no user 'nosuch'"
    assert "nothing to change" in cli.fails("users", "edit", "alice", code=2)


def test_export_to_a_dash_writes_standard_output(cli):
    proc = cli.run("users", "export", "-o", "-", code=0)
    assert {row["username"] for row in csv.DictReader(io.StringIO(proc.stdout))} == {"ada", "sam", "alice", "bob"}
    assert proc.stdout == cli.run("users", "export", code=0).stdout
    assert not (cli.tmp / "-").exists()
