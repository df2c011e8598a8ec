"""The PostgreSQL server of a test run, and a store (a schema of its own) per test in it.

The server is the one MFA_CONSOLE_TEST_PG names (a libpq URL to a database where the tests may
create schemas: `.ci/run` starts one), else one this run starts from Debian's `postgresql`
package: a temporary data folder, a random loopback port, no password (trust), stopped at the
end of the run whatever happened.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

URL_VARIABLE = "MFA_CONSOLE_TEST_PG"
_SYSTEM_USER = "postgres"  # initdb refuses to run as root: as root, the server runs as this user


def _binaries() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        raise RuntimeError(f"the tests need PostgreSQL: `apt-get install postgresql`, or set {URL_VARIABLE} "
                           "to a server's URL")  # fmt: skip
    return os.path.dirname(initdb)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A throwaway cluster. Durability is off (fsync, synchronous_commit): a test run does not
    survive power cuts, and these tests are about statements and sessions, not disks."""

    def __init__(self) -> None:
        bin_dir = _binaries()
        self.folder = tempfile.mkdtemp(prefix="mfa-console-pg-")
        as_user: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.folder, pwd.getpwnam(_SYSTEM_USER).pw_uid, -1)
            as_user = ["runuser", "-u", _SYSTEM_USER, "--"]
        data, port = os.path.join(self.folder, "data"), _free_port()
        self._pg_ctl = [*as_user, os.path.join(bin_dir, "pg_ctl"), "-D", data]
        run = {"check": True, "capture_output": True, "cwd": self.folder}
        subprocess.run([*as_user, os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], **run)  # fmt: skip
        options = (f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        subprocess.run([*self._pg_ctl, "-w", "-t", "60", "-l", os.path.join(self.folder, "log"), "-o", options,
                        "start"], **run)  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self._pg_ctl, "-m", "immediate", "stop"], capture_output=True, cwd=self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


def server_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        raise RuntimeError(f"{URL_VARIABLE} is not set: conftest.py starts a server and sets it")
    return url


@contextmanager
def store_schema() -> Iterator[str]:
    """The URL of an empty schema of its own (libpq's `options` sets the search_path), dropped after."""
    url, schema = server_url(), f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        # Its sessions carry its name (pg_stat_activity.application_name): a test can end its own.
        yield f"{url}?options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class Proxy:
    """A TCP relay to the server, on a port of its own, that can go down and up again: what a
    client sees when the database host or the network goes away (connections cut, then refused)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self._upstream = (parts.hostname, parts.port)
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self.port = _free_port()
        self.url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}"))
        self.up()

    def up(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return  # down already
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way (a close alone would not)
        listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down
            server = socket.create_connection(self._upstream)
            self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def end_sessions(url: str) -> None:
    """The sessions of the store at `url` (a store_schema's) end, as a server restart or a lost
    network would end them; the other tests' go on."""
    name = conninfo_to_dict(url)["application_name"]
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
