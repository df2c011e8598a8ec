"""The folders a store, its key and a TLS key live in: refusals that give advice safe to follow
(never a chmod of a shared folder like /tmp), naming the file they protect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.fs import UnsafePath
from store.paths import StorePaths
from store.service import Service
from tests.support import run_forked


def mfa_fails(cwd: Path, *args: str) -> str:
    """`mfa-console ARGS` refused: exit 2, nothing on stdout, one line on stderr (returned)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "MFA_CONSOLE_DB", "MFA_CONSOLE_KEY")}
    proc = run_forked(list(args), env=env, cwd=cwd)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfa-console: "), proc.stderr
    return lines[0]


@pytest.fixture
def sticky(tmp_path) -> Path:
    """A folder like /tmp: everyone may write, the sticky bit keeps each one's files theirs."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


def test_a_store_directly_in_a_shared_sticky_folder_is_told_to_move_not_to_chmod_it(service, paths, sticky):
    service.close()
    moved = StorePaths(db=sticky / "store.db", key=sticky / "store.key")
    for name in ("store.db", "store.key"):
        os.rename(paths.db.parent / name, sticky / name)
    said = (f"folder {sticky} is shared with other users (mode 1777): any of them could plant files beside the "
            f"store; fix: put the store in a folder of its own, made with `mkdir -m 700 {sticky}/mfa-console`")  # fmt: skip
    with pytest.raises(UnsafePath) as refusal:
        Service(moved).policy()
    assert str(refusal.value) == said
    assert mfa_fails(sticky, "--db", str(moved.db), "users", "list") == f"mfa-console: {said}"


def test_a_tls_key_directly_in_a_shared_sticky_folder_is_named_as_such(tmp_path, sticky):
    cert, key = tmp_path / "cert.pem", sticky / "key.pem"
    for path in (cert, key):
        path.write_text("-----BEGIN-----\n")
        path.chmod(0o600)
    said = mfa_fails(tmp_path, "--db", str(tmp_path / "store.db"), "serve", "--listen", "127.0.0.1:0",
                     "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    assert said == (f"mfa-console: folder {sticky} is shared with other users "
                    f"(mode 1777): any of them could plant files beside the TLS key; fix: put the TLS key in a "
                    f"folder of its own, made with `mkdir -m 700 {sticky}/mfa-console`")  # fmt: skip


def test_a_tls_key_in_a_folder_others_may_write_says_so_of_the_tls_key(tmp_path):
    folder = tmp_path / "tls"
    folder.mkdir(mode=0o700)
    cert, key = folder / "cert.pem", folder / "key.pem"
    for path in (cert, key):
        path.write_text("-----BEGIN-----\n")
        path.chmod(0o600)
    folder.chmod(0o777)
    said = mfa_fails(tmp_path, "--db", str(tmp_path / "store.db"), "serve", "--listen", "127.0.0.1:0",
                     "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    assert said.endswith(f"any of them could swap the TLS key; fix: `chmod go-w {folder}`"), said
