"""`users edit` of an unknown user says so whatever the options."""

from __future__ import annotations

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

