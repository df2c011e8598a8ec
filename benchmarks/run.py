"""Scale benchmark of the store: each figure beside its floor, measured in the same run.

    python benchmarks/run.py                      # 10k and 100k users, 5 runs a figure
    python benchmarks/run.py --users 100000 --runs 3 --only verify,storm --json > figures.json
    python benchmarks/run.py --users 100000 --runs 3 --only pg-verify,pg-storm,pg-durable \
        --pg postgresql://postgres@127.0.0.1:5432/postgres

Groups (`--only`), with the floor each figure is divided by (issue 9's "How fast"):

- verify: `mfa-console verify` started as pam_exec starts it (the console script, PAM_USER in
  the environment, the code on stdin NUL-terminated), a right code of an enrolled user each run.
  Floor: a Python process that imports exactly the modules a verify loads, then exits. The list
  is found in this run: a verify run in-process reports what it added to `sys.modules`. Once
  every size is measured, verify runs on each size in turn (interleaved) for the size ratio.
- storm: 200 concurrent verify processes for 200 different enrolled users, each code drawn as
  its process starts; every exit code is checked, and a refusal's reason read from the audit log.
  Floor: 200 x the floor above / the cores this process may run on. 200 floor processes are
  started at once too, and the CPU time of each storm is counted (getrusage of the children):
  they tell the machine's share of a miss from the verify's.
- durable: one change in-process (a code accepted by `Service.verify`; `Service.reset_2fa`).
  Floor: a bare single-row `UPDATE ... WHERE key = ? AND step < ?` + commit on a table of as
  many rows, WAL, synchronous=FULL, in the same folder, interleaved with ours.
- import: `Service.import_users` of a CSV with as many users as the store, into a new store.
  Floor: `csv` parsing of the same bytes + `executemany` of the rows into a bare table, one
  transaction (WAL, synchronous=FULL, same folder).
- enumeration: `Service.verify` in-process for a wrong code of an enrolled user, an unknown name,
  and a locked user, interleaved; medians, p90 and the ratios between them. The ratio of two
  halves of the wrong-code samples (odd and even) shows the noise those ratios sit in.
- dashboard: the real app in tmux: start to the sign-in screen (floor: a trivial Textual app),
  sign-in code to the grid drawn, a search keystroke (floor: a plain Python filter), peak memory
  (floor: the store file's size). The same figures of the last revision with the JSON Lines
  store (`--before`, read with `git archive`, with a demo store of its own) are measured in the
  same runs, interleaved: "no worse than before" compares figures taken under the same load.
- pg-verify, pg-storm, pg-durable (issue 11): verify, storm and durable on PostgreSQL, with
  `--pg URL` (a server where the run may create a database; without it they are skipped, saying
  so). Each size's store is the SQLite one copied by `store.migrate.migrate` into a database the
  run creates (and drops), read with the same key file. The floors are the same: the verify floor
  imports what a verify on PostgreSQL loads (psycopg among them, found in this run); durable's is
  BEGIN; the bare UPDATE; COMMIT on a table of as many rows in that database, interleaved. The
  server's fsync and synchronous_commit head the table: they decide what a commit costs.
- service-pam (issue 12): `mfa-console serve --radius` on the store, asked as sshd asks: pamtester
  through pam_radius_auth (Debian's, unsigned requests), in a private mount namespace, the code
  on stdin; one login at a time, and 200 at once. Floor: google-authenticator-libpam's own login
  driven the same way (pamtester through pam_google_authenticator, a secret file per user with
  TOTP_AUTH and DISALLOW_REUSE: a code once, as ours), interleaved. Each login a fresh user; every
  answer checked.
- service-http (issue 12): checks a second from 50 concurrent aiohttp clients (keep-alive, one
  process) on POST /validate/check, each a first use of an enrolled user's code, every answer
  checked; p50 and p99 of one check under that load. Floor: an aiohttp server that reads the form
  and answers a constant JSON, same client, same load, interleaved. Then the peak RSS of `serve`
  (beside the constant server's). Rate limits are set far above the load. Then one check at a
  time: an unknown name's REJECT beside a wrong code's, interleaved in random order.

Every store lives in a temporary folder (0700), deleted afterwards. Users are enrolled in-process
once per store, with codes an hour old, so that any code of now is new to them; each run uses
users no earlier run used. In-process figures run in a fresh worker process each. Processes get
the environment they would have installed: bytecode written and used (PYTHONDONTWRITEBYTECODE
dropped). Not part of the test suite: it asserts correctness (every answer right), never timing.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import io
import json
import math
import os
import random
import resource
import select
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "store", "tui")
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
import pyotp  # noqa: E402

from store.demo import FIRST, LAST, TEAMS, build_demo  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.models import Outcome, Status  # noqa: E402
from store.paths import StorePaths  # noqa: E402
from store.service import Service  # noqa: E402
from store.sql import is_url  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "demo-admin"  # a demo login, enrolled by the benchmark
STORM = 200  # concurrent verify processes
DURABLE_EACH = 20  # changes of each kind a run, interleaved with the floor's
ENUM_EACH = 100  # verify calls of each kind a run
ENUM_POOL = 10  # users taking the wrong codes: each unlocked (untimed) after 4 failures
WARMUP = 2  # untimed process starts before a group's timed ones (bytecode, page cache)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
SEARCH = "kim"  # typed one key at a time; each prefix must show a different count
COLS, ROWS = 80, 24
# What the screen shows once each step is drawn.
LOGIN_MARK = "Sign in"
CODE_MARK = "Enter the code"
GRID_MARK = "● Activated"  # a grid row's badge
SEARCH_MARK = "Search username"

FLOOR_APP = """
from textual.app import App
from textual.widgets import Static

class Floor(App):
    def compose(self):
        yield Static("Sign in")

Floor().run()
"""

# Run in a process set up as a verify is: what verify adds to sys.modules (the floor's imports).
DISCOVER = """
import sys
before = set(sys.modules)
sys.argv = ["mfa-console", "verify", "-q"]
from cli.main import main
rc = main()
added = [name for name in sys.modules if name not in before and name != "__main__"]
import json
sys.stdout.write(json.dumps({"rc": rc, "modules": added}))
"""

# The floor of a verify process: the same modules imported, nothing done.
FLOOR_VERIFY = """
import importlib
for name in {names!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
"""

# FACTS.md's floor: what checking a code needs at the least (SQLite, HMAC, AES-GCM, HKDF, TOTP).
BARE_IMPORTS = """
import hashlib, hmac, sqlite3
import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
"""


# -- measuring ---------------------------------------------------------------------------------
class Figures:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, figure: str, users: int, ours: list[float], floor: list[float] | None = None, *, unit: str = "s",
            target: str = "", max_ratio: float | None = None, ratio_range: tuple[float, float] | None = None,
            max_value: float | None = None, note: str = "") -> dict:
        row = {"figure": figure, "users": users, "unit": unit, "ours": _stats(ours),
               "floor": _stats(floor) if floor else None, "target": target, "note": note}
        row["ratio"] = row["ours"]["median"] / row["floor"]["median"] if floor else None
        meets = None
        if max_ratio is not None:
            meets = row["ratio"] <= max_ratio
        elif ratio_range is not None:
            meets = ratio_range[0] <= row["ratio"] <= ratio_range[1]
        elif max_value is not None:
            meets = row["ours"]["median"] <= max_value
        row["meets"] = meets
        self.rows.append(row)
        _say(f"  {figure}: {_fmt(row['ours']['median'], unit)}"
             + (f" (floor {_fmt(row['floor']['median'], unit)}, ratio {row['ratio']:.2f})" if floor else "")
             + (f" [{'meets' if meets else 'MISSES'} {target}]" if meets is not None else ""))
        return row

    def table(self) -> str:
        head = ("figure", "users", "ours: median [min–max]", "p90", "floor: median [min–max]", "ratio", "target",
                "met")
        lines, notes = [], {}
        for r in self.rows:
            mark = ""
            if r["note"]:
                mark = f" ({notes.setdefault(r['note'], len(notes) + 1)})"
            lines.append((
                r["figure"] + mark, f"{r['users']:,}", _span(r["ours"], r["unit"]),
                _fmt(r["ours"]["p90"], r["unit"]) if r["ours"]["runs"] >= 20 else "—",
                _span(r["floor"], r["unit"]) if r["floor"] else "—",
                f"{r['ratio']:.2f}" if r["ratio"] is not None else "—", r["target"] or "—",
                {True: "yes", False: "NO", None: "—"}[r["meets"]],
            ))
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
        out += [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
        out += ["", *(f"({i}) {note}" for note, i in notes.items())]
        return "\n".join(out)


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": _pct(ordered, 0.9),
            "max": ordered[-1], "runs": len(ordered)}


def _pct(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _fmt(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "count":
        return f"{value:,.0f}"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _span(s: dict, unit: str) -> str:
    if s["runs"] == 1:
        return _fmt(s["median"], unit)
    return f"{_fmt(s['median'], unit)} [{_fmt(s['min'], unit)}–{_fmt(s['max'], unit)}]"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _copy_store(src: Path, dst: Path) -> StorePaths:
    """A copy of a closed store (no -wal left), files with their modes: a store open to others is refused."""
    _mkdir(dst)
    for name in ("store.db", "store.key"):
        shutil.copy2(src / name, dst / name)
    for suffix in ("-wal", "-shm"):
        (dst / f"store.db{suffix}").unlink(missing_ok=True)
    return StorePaths(dst / "store.db", dst / "store.key")


def _paths(folder: Path) -> StorePaths:
    return StorePaths(folder / "store.db", folder / "store.key")


def _env() -> dict[str, str]:
    """The environment of the processes measured: bytecode cached as an installed package's is."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "COLUMNS", "LINES")}
    check = subprocess.run([sys.executable, "-c", "import cli; print(cli.__file__)"], cwd="/", env=env,
                           capture_output=True, text=True)
    if check.returncode != 0 or not check.stdout.startswith(str(ROOT)):
        env["PYTHONPATH"] = str(ROOT)  # not installed from this checkout: measure this checkout's code
    return env


def _compile() -> None:
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def _json_store_revision() -> str:
    """The last revision whose store was the JSON Lines file (store/storage.py), before the move to SQLite."""
    moved = subprocess.run(["git", "-C", str(ROOT), "rev-list", "-1", "HEAD", "--", "store/storage.py"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", f"{moved}^"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _console_script() -> list[str]:
    """How pam_exec starts it: the installed `mfa-console` (its shebang runs this Python)."""
    script = Path(sys.executable).with_name("mfa-console")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


# -- stores ------------------------------------------------------------------------------------
def build_store(folder: Path, users: int, pools: dict[str, int]) -> tuple[float, float, dict[str, list]]:
    """The demo store of `users` users with the admin and `pools` of Pending users enrolled an hour
    ago (their last accepted code is old: any code of now is new). Returns (build s, enroll s, pools
    as [[username, secret], ...] by name, with "admin")."""
    paths = _paths(_mkdir(folder))
    started = time.perf_counter()
    build_demo(paths, users=users, actor="bench", now=time.time()).close()
    took = time.perf_counter() - started
    past = time.time() - 3600
    service = Service(paths, clock=lambda: past)
    op = service.operator("bench")
    wanted = sum(pools.values())
    pending = [u.username for u in service.list_users(op)
               if u.status is Status.PENDING and u.active and u.username not in (ADMIN, "supervisor", "agent")]
    if len(pending) < wanted:
        raise SystemExit(f"{users:,} users have {len(pending):,} Pending, fewer than the {wanted:,} to enroll: "
                         "fewer --runs, or a larger store")
    random.Random(9).shuffle(pending)  # spread over the table, as real sign-ins are
    started = time.perf_counter()
    out: dict[str, list] = {}
    names = iter([ADMIN, *pending])
    for pool, count in {"admin": 1, **pools}.items():
        out[pool] = []
        for _ in range(count):
            name = next(names)
            enrollment = service.begin_enrollment(op, name)
            assert service.confirm_enrollment(op, name, pyotp.TOTP(enrollment.secret).at(past)).ok
            out[pool].append([name, enrollment.secret])
    enroll = time.perf_counter() - started
    service.close()
    assert not Path(f"{paths.db}-wal").exists(), "the store was left open"
    return took, enroll, out


def users_csv(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = ["username,name,email,role,team"]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        username = f"{first}.{last}.{i}".lower()
        role = "supervisor" if rng.random() < 0.04 else "agent"
        lines.append(f"{username},{first} {last},{username}@acme.example,{role},{rng.choice(TEAMS)}")
    return ("\n".join(lines) + "\n").encode()


def bare_table(path: Path, rows: int) -> sqlite3.Connection:
    """The durable floor's table: `rows` rows keyed like users, WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (key TEXT PRIMARY KEY, step INTEGER NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, 0)", ((f"user.{i:06d}",) for i in range(rows)))
    conn.execute("COMMIT")
    return conn


def pg_server(url: str) -> dict[str, str]:
    """What a commit costs on the server depends on: its version, durability and connection settings."""
    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "fsync", "synchronous_commit", "max_connections")}


# -- processes ---------------------------------------------------------------------------------
class Verifies:
    """Starts `mfa-console verify` as pam_exec does, and the floor process beside it."""

    def __init__(self, paths: StorePaths, folder: Path, env: dict[str, str], discover: list[str] | None):
        self.paths = paths
        self.discover = discover  # [user, secret]: the right code its modules are found with; None: no floor
        self.env = {**env, "MFA_CONSOLE_DB": str(self.paths.db), "MFA_CONSOLE_KEY": str(self.paths.key)}
        self.command = [*_console_script(), "verify", "-q"]
        self.stderr = open(folder / "stderr.log", "ab")  # noqa: SIM115 -- shared by hundreds of processes
        self.floor = self._floor(folder) if discover else []

    def _floor(self, folder: Path) -> list[str]:
        """Finds what a verify imports (one verify run in-process), and writes the floor that imports it."""
        user, secret = self.discover
        found = subprocess.run([sys.executable, "-c", DISCOVER], input=f"{pyotp.TOTP(secret).now()}\0".encode(),
                               cwd="/", env={**self.env, "PAM_USER": user}, capture_output=True, timeout=120)
        if found.returncode != 0 or json.loads(found.stdout)["rc"] != 0:
            raise RuntimeError(f"finding verify's modules failed:\n{found.stdout.decode()}{found.stderr.decode()}")
        self.modules = json.loads(found.stdout)["modules"]
        script = folder / "floor_verify.py"
        script.write_text(FLOOR_VERIFY.format(names=self.modules))
        check = subprocess.run([sys.executable, "-c", script.read_text() + "\nimport sys\nprint(len(sys.modules))"],
                               cwd="/", env=self.env, capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"the verify floor failed:\n{check.stderr}")
        bare = folder / "floor_bare.py"
        bare.write_text(BARE_IMPORTS)
        self.bare = [sys.executable, str(bare)]
        return [sys.executable, str(script)]

    def start(self, user: str | None, code: str, command: list[str] | None = None) -> subprocess.Popen:
        command = command or (self.command if user else self.floor)
        env = {**self.env, "PAM_USER": user} if user else self.env
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                cwd="/", env=env)
        try:
            proc.stdin.write(f"{code}\0".encode())  # pam_exec's expose_authtok: the token, NUL-terminated
            proc.stdin.close()
        except BrokenPipeError:  # a floor that exited before its stdin was written
            pass
        return proc

    def one(self, user: str | None, secret: str | None = None, command: list[str] | None = None) -> float:
        """One process, timed from its start to its exit; a verify must accept its code."""
        code = pyotp.TOTP(secret).now() if secret else "000000"
        started = time.perf_counter()
        proc = self.start(user, code, command)
        rc = proc.wait()
        took = time.perf_counter() - started
        if rc != 0:
            raise RuntimeError(f"{'verify' if user else 'the floor'} exited {rc} (see {self.stderr.name})")
        return took

    def storm(self, users: list[list[str]] | int) -> dict:
        """Starts every process at once (verify for each [user, secret], or `users` floors), each
        code drawn just before its process starts, as if typed then. Returns the wall time, each
        one's latency from its start to its exit, exit codes, the CPU time (user + system) of them
        all, and for each verify whether its code's window (its step ± 1) had passed at its exit."""
        jobs = users if isinstance(users, list) else [(None, None)] * users
        poller, running, ends = select.poll(), {}, {}

        def reap(timeout: int | None) -> None:
            for fd, _ in poller.poll(timeout):
                ends[fd] = (time.perf_counter(), time.time())
                poller.unregister(fd)

        cpu = _children_cpu()
        begun = time.perf_counter()
        for user, secret in jobs:
            typed = time.time()
            code = pyotp.TOTP(secret).at(typed) if secret else "000000"
            started = time.perf_counter()
            proc = self.start(user, code)
            fd = os.pidfd_open(proc.pid)
            poller.register(fd, select.POLLIN)
            running[fd] = (proc, started, typed)
            reap(0)  # exits while others are still being started are timed when they happen
        while len(ends) < len(running):
            reap(None)
        out: dict = {"latencies": [], "codes": [], "late": []}
        for fd, (proc, started, typed) in running.items():
            out["latencies"].append(ends[fd][0] - started)
            out["codes"].append(proc.wait())
            out["late"].append(int(ends[fd][1] // 30) > int(typed // 30) + 1)
            os.close(fd)
        out["wall"] = max(end for end, _ in ends.values()) - begun
        out["cpu"] = _children_cpu() - cpu
        return out

    def close(self) -> None:
        self.stderr.close()


def verify_runs(v: Verifies, pool: list[list[str]], runs: int) -> dict:
    out: dict[str, list[float]] = {"ours": [], "floor": [], "bare": []}
    for user, secret in pool[:WARMUP]:
        v.one(user, secret)
        v.one(None)
        v.one(None, command=v.bare)
    for i, (user, secret) in enumerate(pool[WARMUP : WARMUP + runs]):
        trio = [("floor", None, None, None), ("ours", user, secret, None), ("bare", None, None, v.bare)]
        for key, u, s, command in trio[i % 3 :] + trio[: i % 3]:
            out[key].append(v.one(u, s, command))
    return out


def verify_across(stores: dict[int, tuple[Path, Path, list]], env: dict[str, str], runs: int) -> dict[int, list]:
    """`mfa-console verify` on each store size in turn within each run (the order alternating), so
    that the machine's load, which changes over minutes, weighs on every size alike."""
    vs = {users: Verifies(_paths(work), folder, env, None) for users, (work, folder, _) in stores.items()}
    out: dict[int, list] = {users: [] for users in stores}
    try:
        for users, (_, _, pool) in stores.items():
            for user, secret in pool[:WARMUP]:
                vs[users].one(user, secret)
        order = list(stores)
        for i in range(runs):
            for users in order if i % 2 == 0 else reversed(order):
                user, secret = stores[users][2][WARMUP + i]
                out[users].append(vs[users].one(user, secret))
    finally:
        for v in vs.values():
            v.close()
    return out


def storm_runs(v: Verifies, pool: list[list[str]], runs: int) -> dict:
    keys = ("wall", "p50", "p99", "cpu", "floor", "floor_cpu", "floor_wall", "floor_p50", "floor_p99",
            "floor_storm_cpu")
    out: dict[str, list] = {k: [] for k in keys}
    out["answers"], out["wrong"], out["late"], out["reasons"] = 0, 0, 0, {}
    v.one(*pool[0])  # warm
    v.one(None)
    for i in range(runs):
        singles, cpus = [], []
        for _ in range(3):
            cpu = _children_cpu()
            singles.append(v.one(None))
            cpus.append(_children_cpu() - cpu)
        out["floor"].append(STORM * statistics.median(singles) / CORES)
        out["floor_cpu"].append(STORM * statistics.median(cpus))
        floors = v.storm(STORM)
        assert floors["codes"] == [0] * STORM, f"floor processes failed: {floors['codes']}"
        out["floor_wall"].append(floors["wall"])
        out["floor_p50"].append(statistics.median(floors["latencies"]))
        out["floor_p99"].append(_pct(sorted(floors["latencies"]), 0.99))
        out["floor_storm_cpu"].append(floors["cpu"])
        users = pool[1 + i * STORM : 1 + (i + 1) * STORM]
        ours = v.storm(users)
        out["wall"].append(ours["wall"])
        out["p50"].append(statistics.median(ours["latencies"]))
        out["p99"].append(_pct(sorted(ours["latencies"]), 0.99))
        out["cpu"].append(ours["cpu"])
        out["answers"] += STORM
        rejected = [(user, late) for (user, _), rc, late in zip(users, ours["codes"], ours["late"]) if rc != 0]
        out["wrong"] += len(rejected)
        out["late"] += sum(late for _, late in rejected)
        if rejected:
            for reason in _reasons(v.paths, [user for user, _ in rejected]):
                out["reasons"][reason] = out["reasons"].get(reason, 0) + 1
            _say(f"  storm run {i + 1}: {len(rejected)} not accepted (exit codes "
                 f"{sorted(set(ours['codes']) - {0})}), {sum(late for _, late in rejected)} of them exited after "
                 f"their code's window; p99 {_fmt(out['p99'][-1], 's')}")
    return out


def _children_cpu() -> float:
    """User + system CPU seconds of every child process reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reasons(paths: StorePaths, users: list[str]) -> list[str]:
    """Why each user's last verify was refused, as the audit log says."""
    service = Service(paths)
    op = service.operator("bench")
    reasons = []
    for user in users:
        events = service.audit(op, user=user, action="verify", limit=1)
        reasons.append(f"{events[0].outcome}: {events[0].detail}" if events else "no event")
    service.close()
    return reasons


# -- workers: one fresh process for each group of in-process figures -----------------------------
def worker(name: str, folder: Path, runs: int, pg: str | None) -> dict:
    if name == "pg-durable":
        return _work_pg_durable(folder, runs, pg)
    return {"durable": _work_durable, "import": _work_import, "enumeration": _work_enumeration}[name](folder, runs)


def _pools(work: Path) -> dict[str, list]:
    return json.loads((work / "pools.json").read_text())


def _work_durable(work: Path, runs: int) -> dict:
    users = _user_count(work)
    floor = bare_table(work / "floor.db", users)

    def bare(n: int) -> float:
        started = time.perf_counter()
        floor.execute("BEGIN IMMEDIATE")
        floor.execute("UPDATE t SET step = ? WHERE key = ? AND step < ?", (n, f"user.{n * 7919 % users:06d}", n))
        floor.execute("COMMIT")
        return time.perf_counter() - started

    try:
        return _durable(Service(_paths(work)), _pools(work)["durable"], runs, bare)
    finally:
        floor.close()


def _work_pg_durable(work: Path, runs: int, url: str) -> dict:
    """As _work_durable, on the store's copy at `url`; the floor's table in a schema of its own there."""
    floor = psycopg.connect(url, autocommit=True)
    users = floor.execute("SELECT count(*) FROM users").fetchone()[0]
    floor.execute("CREATE SCHEMA bench_floor")
    floor.execute("CREATE TABLE bench_floor.t (key TEXT PRIMARY KEY, step BIGINT NOT NULL)")
    floor.execute("INSERT INTO bench_floor.t SELECT 'user.' || lpad(i::text, 6, '0'), 0 FROM generate_series(0, %s) i",
                  (users - 1,))
    floor.execute("VACUUM ANALYZE bench_floor.t")

    def bare(n: int) -> float:
        started = time.perf_counter()
        floor.execute("BEGIN")
        floor.execute("UPDATE bench_floor.t SET step = %s WHERE key = %s AND step < %s",
                      (n, f"user.{n * 7919 % users:06d}", n))
        floor.execute("COMMIT")
        return time.perf_counter() - started

    try:
        return _durable(Service(StorePaths(url, work / "store.key")), _pools(work)["durable"], runs, bare)
    finally:
        floor.close()


def _durable(service: Service, pool: list[list[str]], runs: int, bare: Callable[[int], float]) -> dict:
    """A code accepted and a reset for each user of `pool`, interleaved with `bare(n)`, the floor's n-th change."""
    op = service.operator("bench")
    out: dict[str, list[float]] = {"accept": [], "reset": [], "floor": []}

    def accept(user: str, secret: str) -> float:
        code = pyotp.TOTP(secret).now()
        started = time.perf_counter()
        result = service.verify(user, code, actor="bench")
        took = time.perf_counter() - started
        assert result.ok, (user, result)
        return took

    def reset(user: str) -> float:
        started = time.perf_counter()
        service.reset_2fa(op, user)
        return time.perf_counter() - started

    user, secret = pool[0]
    accept(user, secret), reset(user), bare(1)  # warm: the key loaded, statements prepared
    for n, (user, secret) in enumerate(pool[1 : 1 + runs * DURABLE_EACH], start=2):
        out["floor"].append(bare(n))
        out["accept"].append(accept(user, secret))
        out["reset"].append(reset(user))
    service.close()
    return out


def _user_count(work: Path) -> int:
    conn = sqlite3.connect(f"file:{work / 'store.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        conn.close()


def _work_import(work: Path, runs: int) -> dict:
    users = _user_count(work)
    data = users_csv(users)
    out: dict[str, list[float]] = {"ours": [], "floor": []}
    for i in range(runs):
        folder = _mkdir(work.parent / f"import-{i}")
        service = Service.create(_paths(folder), issuer="Bench", actor="bench")
        op = service.operator("bench")
        started = time.perf_counter()
        assert service.import_users(op, data) == users
        out["ours"].append(time.perf_counter() - started)
        service.close()

        conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE users (username TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT, "
                     "role TEXT NOT NULL, team TEXT)")
        started = time.perf_counter()
        rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        next(rows)  # the header
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        out["floor"].append(time.perf_counter() - started)
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == users
        conn.close()
        shutil.rmtree(folder)
    return out


def _work_enumeration(work: Path, runs: int) -> dict:
    pools = _pools(work)
    wrong_pool, (locked_user, _) = pools["enum"][:ENUM_POOL], pools["enum"][ENUM_POOL]
    service = Service(_paths(work))
    op = service.operator("bench")
    rng = random.Random(5)
    failures = {user: 0 for user, _ in wrong_pool}

    def wrong_code(secret: str) -> str:
        """Six digits no code of now ± 1 step is."""
        near = {pyotp.TOTP(secret).at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
        while True:
            code = f"{rng.randrange(10**6):06d}"
            if code not in near:
                return code

    def lock() -> None:
        for _ in range(5):
            service.verify(locked_user, "000000", actor="bench")
        assert service.verify(locked_user, "000000", actor="bench").outcome is Outcome.LOCKED

    def timed(user: str, code: str, expect: Outcome) -> float:
        started = time.perf_counter()
        result = service.verify(user, code, actor="bench")
        took = time.perf_counter() - started
        assert result.outcome is expect, (user, result, expect)
        return took

    out: dict[str, list[float]] = {"wrong": [], "unknown": [], "locked": []}
    lock()
    secrets_ = dict(wrong_pool)
    timed(wrong_pool[0][0], wrong_code(wrong_pool[0][1]), Outcome.INVALID)  # warm
    service.unlock(op, wrong_pool[0][0])
    for i in range(runs * ENUM_EACH):
        user = wrong_pool[i % len(wrong_pool)][0]
        if failures[user] == 4:  # the fifth would lock it: start its count again, untimed
            service.unlock(op, user)
            failures[user] = 0
        if service.get_user(op, locked_user).locked_until is None:
            lock()  # a lock lasts 5 minutes at first
        unknown = f"{rng.choice(FIRST)}.{rng.choice(LAST)}.{rng.randrange(10**9)}".lower()  # nobody's
        kinds = [("wrong", user, wrong_code(secrets_[user]), Outcome.INVALID),
                 ("unknown", unknown, wrong_code(secrets_[user]), Outcome.INVALID),
                 ("locked", locked_user, wrong_code(secrets_[user]), Outcome.LOCKED)]
        rng.shuffle(kinds)  # no kind always first, or always after another
        for kind, name, code, expect in kinds:
            out[kind].append(timed(name, code, expect))
        failures[user] += 1
    service.close()
    return out


def run_worker(name: str, folder: Path, runs: int, pg: str | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name, str(folder), "--runs",
                           str(runs), *(["--pg", pg] if pg else [])], cwd=ROOT, capture_output=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{proc.stderr.decode()}")
    return json.loads(proc.stdout)


# -- the dashboard in tmux ---------------------------------------------------------------------
class Tmux:
    """One private tmux server; each run is a new session of it (starting a server is not timed)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.socket = str(folder / "tmux.sock")
        self.env = env  # without COLUMNS and LINES: Textual believes them over the pane's real size
        self.n = 0
        self("-f", os.devnull, "new-session", "-d", "-s", "idle", "-x", str(COLS), "-y", str(ROWS), "--", "cat")

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=20).stdout

    def start(self, env: dict[str, str], *command: str) -> str:
        """A new session running `command`, with `env` over the server's environment."""
        self.n += 1
        name = f"run{self.n}"
        changed = [f"-e{k}={v}" for k, v in env.items() if self.env.get(k) != v]
        # Started outside the checkout: `python -m` puts its folder first on sys.path, before PYTHONPATH.
        self("new-session", "-d", "-s", name, "-x", str(COLS), "-y", str(ROWS), "-c", str(self.folder), *changed,
             "--", *command)
        return name

    def wait(self, session: str, test: Callable[[str], bool], timeout: float = 60.0) -> float:
        """Polls the pane until `test(screen)`; returns the moment it was first seen."""
        deadline = time.perf_counter() + timeout
        while True:
            screen = self("capture-pane", "-p", "-t", session)
            seen = time.perf_counter()
            if test(screen):
                return seen
            if seen > deadline:
                raise TimeoutError(f"not on screen after {timeout} s:\n{screen}")
            time.sleep(0.002)

    def pid(self, session: str) -> int:
        return int(self("display-message", "-p", "-t", session, "#{pane_pid}").strip())

    def stop(self, session: str) -> None:
        self("kill-session", "-t", session)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], env=self.env, capture_output=True)


def _peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024


# Run with a side's code (PYTHONPATH) against its store: what the dashboard figures need from it.
DASH_HELPER = """
import json, sys, time
from pathlib import Path
import pyotp
from store.paths import StorePaths
from store.service import Service
db, action = Path(sys.argv[1]), sys.argv[2]
paths = StorePaths(db, db.with_name("store.key"))
if action == "build":  # the demo store with the admin enrolled an hour ago
    from store.demo import build_demo
    build_demo(paths, users=int(sys.argv[3]), actor="bench", now=time.time()).close()
    past = time.time() - 3600
    service = Service(paths, clock=lambda: past)
    op = service.operator("bench")
    enrollment = service.begin_enrollment(op, "admin")
    assert service.confirm_enrollment(op, "admin", pyotp.TOTP(enrollment.secret).at(past)).ok
    service.close()
    print(json.dumps({"secret": enrollment.secret}))
    raise SystemExit
service = Service(paths)
op = service.operator("bench")
users = service.list_users(op)
activated = [u.username for u in users if u.active and u.status.value == "activated"]
if action == "list":
    print(json.dumps({"haystacks": [f"{u.username}\\n{u.name}\\n{u.team or ''}".casefold() for u in users],
                      "activated": len(activated)}))
else:  # another process resets one user's 2FA
    service.reset_2fa(op, next(name for name in activated if name != "admin"))
service.close()
"""


class Side:
    """One version of the dashboard: its code (None: this checkout) and a closed store of it."""

    def __init__(self, label: str, code: Path | None, pristine: Path, store: str, secret: str):
        self.label, self.code, self.pristine, self.store, self.secret = label, code, pristine, store, secret

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": str(self.code)} if self.code else env

    def helper(self, env: dict[str, str], db: Path, *args: str) -> dict | None:
        proc = subprocess.run([sys.executable, "-c", DASH_HELPER, str(db), *args], cwd="/", env=self.env(env),
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label}: {' '.join(args)} failed:\n{proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def command(self) -> list[str]:
        """The command line's entry: `cli` now, the `tui` package before the command line left it."""
        code = self.code or ROOT
        return [sys.executable, "-m", "cli" if (code / "cli" / "__main__.py").exists() else "tui"]

    def copy(self, folder: Path) -> Path:
        """A fresh copy of the store (the admin's code is new to each), with its key."""
        _mkdir(folder)
        for name in (self.store, "store.key"):
            shutil.copy2(self.pristine / name, folder / name)
        for suffix in ("-wal", "-shm"):
            (folder / f"{self.store}{suffix}").unlink(missing_ok=True)
        return folder / self.store


def before_side(folder: Path, rev: str, users: int, env: dict[str, str]) -> Side:
    """The JSON Lines store's code (`rev`, read from git, nothing checked out) and a demo store of it."""
    code = _mkdir(folder / "code")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev], capture_output=True, text=True,
                            check=True).stdout.split()
    packages = [package for package in PACKAGES if package in listed]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *packages], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    for package in packages:
        compileall.compile_dir(code / package, quiet=1)
    side = Side(f"before ({rev[:7]})", code, _mkdir(folder / "pristine"), "store.json", "")
    side.secret = side.helper(env, side.pristine / side.store, "build", str(users))["secret"]
    return side


def dashboard_runs(tmux: Tmux, sides: list[Side], env: dict[str, str], runs: int) -> dict[str, dict]:
    """Start, sign in, search, and a change by another process, for each side in turn within each
    run; the trivial Textual app (the start-up floor) started in each run too."""
    floor_app = tmux.folder / "floor_app.py"
    floor_app.write_text(FLOOR_APP)
    searches = {}
    for side in sides:
        listed = side.helper(env, side.pristine / side.store, "list")
        haystacks = listed["haystacks"]
        counts = [sum(SEARCH[: i + 1] in h for h in haystacks) for i in range(len(SEARCH))]
        assert len(set(counts)) == len(counts), f"each prefix of {SEARCH!r} must show a different count: {counts}"
        searches[side.label] = haystacks, counts, listed["activated"]
    keys = ("start", "start_floor", "login", "key", "key_floor", "peak")
    out = {side.label: {k: [] for k in keys} for side in sides}
    for i in range(runs + 1):  # the first run is untimed: bytecode, page cache
        started = time.perf_counter()
        session = tmux.start({}, sys.executable, str(floor_app))
        floor = tmux.wait(session, lambda s: LOGIN_MARK in s) - started
        tmux.stop(session)
        for side in sides if i % 2 else reversed(sides):
            d = _dashboard_run(tmux, side, env, *searches[side.label])
            if i:
                for key in keys:
                    out[side.label][key] += d[key] if isinstance(d[key], list) else [d[key]]
                out[side.label]["start_floor"].append(floor)
    return out


def _dashboard_run(tmux: Tmux, side: Side, env: dict[str, str], haystacks: list[str], counts: list[int],
                   activated: int) -> dict:  # fmt: skip
    out: dict = {"key": [], "key_floor": [], "start_floor": []}
    db = side.copy(tmux.folder / "dash")
    started = time.perf_counter()
    session = tmux.start(side.env(env), *side.command(), "--db", str(db), "--key",
                         str(db.with_name("store.key")))
    out["start"] = tmux.wait(session, lambda s: LOGIN_MARK in s) - started
    pid = tmux.pid(session)
    # Each key waits for the last one's echo: keys typed ahead of a focus change land in the old field.
    tmux("send-keys", "-t", session, "-l", ADMIN)
    tmux.wait(session, lambda s: f"▊  {ADMIN} " in s)
    tmux("send-keys", "-t", session, "Enter")
    time.sleep(0.2)
    tmux("send-keys", "-t", session, "-l", ADMIN_PASSWORD)
    tmux.wait(session, lambda s: "•" * len(ADMIN_PASSWORD) in s)
    tmux("send-keys", "-t", session, "Enter")
    tmux.wait(session, lambda s: CODE_MARK in s)
    time.sleep(3.0)  # a person takes seconds to type a code: the store is loaded meanwhile
    tmux("send-keys", "-t", session, "-l", pyotp.TOTP(side.secret).now())
    started = time.perf_counter()
    tmux("send-keys", "-t", session, "Enter")
    out["login"] = tmux.wait(session, lambda s: GRID_MARK in s) - started

    tmux("send-keys", "-t", session, "/")
    tmux.wait(session, lambda s: SEARCH_MARK in s)
    for n, count in enumerate(counts):
        typed = SEARCH[: n + 1]
        shown = f"Showing {count:,} of {len(haystacks):,}"
        started = time.perf_counter()
        tmux("send-keys", "-t", session, "-l", SEARCH[n])
        out["key"].append(tmux.wait(session, lambda s: shown in s and f'"{typed}"' in s) - started)
        started = time.perf_counter()
        assert len([h for h in haystacks if typed in h]) == count
        out["key_floor"].append(time.perf_counter() - started)

    # Another process resets a user: the dashboard re-reads the store (old and new data at once).
    side.helper(env, db, "reset")
    tmux.wait(session, lambda s: f"Activated {activated - 1:,} of" in s)
    out["peak"] = _peak_mb(pid)
    tmux.stop(session)
    return out


# -- the verification service (issue 12) -------------------------------------------------------
SERVICE_LOGINS = 20  # PAM logins of each kind a run, interleaved
HTTP_CLIENTS = 50  # concurrent HTTP clients, keep-alive
HTTP_CHECKS = 3000  # checks a run (each a first use of its user's step), as many floor requests
HTTP_WARM = 300  # untimed checks before the first run (each side)
HTTP_ENUMERATION = 200  # wrong-code and unknown-name checks of each kind a run, one at a time
GA_MODULE = "pam_google_authenticator.so"
RADIUS_TIMEOUT = 10  # pam_radius_auth's seconds before it asks again (sshd setups use 3-10)

# The floor of the HTTP figures: the same library answering a constant JSON, after reading the
# form as any check must. Prints where it listens, as `serve` does.
FLOOR_SERVER = """
import asyncio, signal
from aiohttp import web
BODY = {"id": 1, "jsonrpc": "2.0", "result": {"status": True, "value": True, "authentication": "ACCEPT"}}
async def check(request):
    await request.post()
    return web.json_response(BODY)
async def main():
    app = web.Application()
    app.router.add_post("/validate/check", check)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on http://%s:%d" % site._server.sockets[0].getsockname()[:2], flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main())
"""

# The load: HTTP_CLIENTS tasks on one keep-alive session, each sending its share of the jobs in
# turn; a code is drawn just before its request. Reads {"url", "key", "jobs": [[user, secret]],
# "clients"} on stdin; writes the wall time, each request's latency and answer.
LOAD_CLIENT = """
import asyncio, json, sys, time
import aiohttp, pyotp
spec = json.load(sys.stdin)
async def client(session, jobs, out):
    for user, secret in jobs:
        code = pyotp.TOTP(secret).now()
        started = time.perf_counter()
        async with session.post(spec["url"], data={"user": user, "pass": code},
                                headers={"Authorization": "Bearer " + spec["key"]}) as response:
            body = await response.json()
        out.append((time.perf_counter() - started, response.status,
                    body.get("result", {}).get("authentication")))
async def main():
    n = spec["clients"]
    out = []
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector) as session:
        jobs = spec["jobs"]
        # every connection opened before the clock starts (keep-alive: a login's cost is not a TCP handshake)
        await asyncio.gather(*(client(session, [], []) for _ in range(n)))
        started = time.perf_counter()
        await asyncio.gather(*(client(session, jobs[i::n], out) for i in range(n)))
        wall = time.perf_counter() - started
    json.dump({"wall": wall, "latencies": [o[0] for o in out], "answers": [[o[1], o[2]] for o in out]}, sys.stdout)
asyncio.run(main())
"""


def _serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    """A server process that prints `listening on ...` lines; returns it and the addresses it printed."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=env)
    lines = []
    try:
        for _ in range(2 if "--radius" in args else 1):
            line = proc.stdout.readline()
            if not line.startswith("listening on "):
                raise RuntimeError(f"{args[:4]} did not start: {line}{proc.stderr.read() if proc.poll() is not None else ''}")
            lines.append(line.split()[-1])
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


class Logins:
    """pamtester, as sshd's PAM stack asks, in a private mount namespace (a /etc/pam.d of its own,
    no root needed): through pam_radius_auth to the service ("ours"), or through
    pam_google_authenticator with a secret file of the user's ("libpam"). Both take the code on
    stdin, as a person types it."""

    def __init__(self, folder: Path, radius: str, secret: str):
        self.folder = _mkdir(folder)
        pam_d, self.secrets = _mkdir(folder / "pam.d"), _mkdir(folder / "secrets")
        conf = folder / "pam_radius_auth.conf"
        conf.write_text(f"{radius} {secret} {RADIUS_TIMEOUT}\n")
        conf.chmod(0o600)
        (pam_d / "ours").write_text(f"auth required pam_radius_auth.so conf={conf}\n")
        # libpam's own login, as its README sets it up for users without a home: their files in one
        # folder, read as a dedicated user; each file's TOTP mode and its replay rule (a code's
        # timestamp is spent once), as ours: any code of now ± 1 step, once.
        (pam_d / "libpam").write_text(f"auth required {GA_MODULE} secret={self.secrets}/${{USER}} user=root\n")
        self.script = {side: f"mount --bind {pam_d} /etc/pam.d && exec pamtester {side} \"$0\" authenticate"
                       for side in ("ours", "libpam")}
        self.n = 0

    def libpam_user(self) -> list[str]:
        """A new user of libpam's: a secret file of its own (mode 0400, as google-authenticator writes it)."""
        self.n += 1
        name, secret = f"ga.{self.n:06d}", pyotp.random_base32()
        path = self.secrets / name
        path.write_text(f'{secret}\n" TOTP_AUTH\n" DISALLOW_REUSE\n')
        path.chmod(0o400)
        return [name, secret]

    def start(self, side: str, user: str, secret: str) -> subprocess.Popen:
        code = pyotp.TOTP(secret).now()
        proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", self.script[side], user],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        proc.stdin.write(f"{code}\n".encode())
        proc.stdin.close()
        return proc

    @staticmethod
    def accepted(proc: subprocess.Popen) -> bool:
        out = proc.stdout.read()
        proc.stderr.read()
        return proc.wait() == 0 and b"successfully authenticated" in out

    def one(self, side: str, user: str, secret: str) -> float:
        started = time.perf_counter()
        proc = self.start(side, user, secret)
        proc.wait()
        took = time.perf_counter() - started
        if not self.accepted(proc):
            raise RuntimeError(f"{side}: pamtester did not authenticate {user} (exit {proc.returncode})")
        return took

    def storm(self, side: str, users: list[list[str]]) -> dict:
        """Every login at once; the wall time from the first start to the last exit, and each answer."""
        poller, running, ends = select.poll(), {}, {}

        def reap(timeout: int | None) -> None:
            for fd, _ in poller.poll(timeout):
                ends[fd] = time.perf_counter()
                poller.unregister(fd)

        begun = time.perf_counter()
        for user, secret in users:
            started = time.perf_counter()
            proc = self.start(side, user, secret)
            fd = os.pidfd_open(proc.pid)
            poller.register(fd, select.POLLIN)
            running[fd] = (proc, started)
            reap(0)
        while len(ends) < len(running):
            reap(None)
        wall = max(ends.values()) - begun
        latencies = [ends[fd] - started for fd, (_, started) in running.items()]
        accepted = [self.accepted(proc) for proc, _ in running.values()]
        for fd in running:
            os.close(fd)
        return {"wall": wall, "latencies": latencies, "accepted": accepted}


def _load(url: str, key: str, jobs: list[list[str]], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", LOAD_CLIENT], cwd="/", env=env, capture_output=True, timeout=600,
                          input=json.dumps({"url": url, "key": key, "jobs": jobs, "clients": HTTP_CLIENTS}).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{proc.stderr.decode()}")
    return json.loads(proc.stdout)


def _client(work: Path, env: dict[str, str], name: str, *options: str) -> list[str]:
    """`mfa-console clients add`: its API key and (RADIUS) shared secret, as printed."""
    proc = subprocess.run([sys.executable, "-m", "cli", "--db", str(work / "store.db"), "--key", str(work / "store.key"),
                           "clients", "add", name, "--source", "127.0.0.1/32", *options], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"clients add {name} failed:\n{proc.stderr}")
    return proc.stdout.split()


def service_runs(work: Path, folder: Path, env: dict[str, str], enrolled: dict[str, list], runs: int,
                 groups: set[str]) -> dict:
    """`mfa-console serve` on the store (HTTP and RADIUS), beside libpam's login (groups
    service-pam) and an aiohttp server answering a constant (service-http)."""
    key = _client(work, env, "bench-http")[0]
    secret = _client(work, env, "bench-pam", "--radius-unsigned")[1]
    limits = ["--rate-client", "1000000", "--rate-source", "1000000"]  # no 429 in these figures
    ours, (http, radius) = _serve([sys.executable, "-m", "cli", "--db", str(work / "store.db"), "--key",
                                   str(work / "store.key"), "serve", "--listen", "127.0.0.1:0", "--radius", "0",
                                   *limits], env)
    floor = None
    out: dict = {}
    try:
        if "service-pam" in groups:
            out.update(_pam_runs(Logins(folder / "pam", radius.removeprefix("radius://"), secret),
                                 enrolled["pam"], enrolled["pam-storm"], runs))
        if "service-http" in groups:
            floor, (floor_url,) = _serve([sys.executable, "-c", FLOOR_SERVER], env)
            out.update(_http_runs(http + "/validate/check", floor_url + "/validate/check", key, enrolled["http"], runs,
                                  env))
            out["peak_floor"] = _peak_mb(floor.pid)
            out["enumeration"] = _http_enumeration(http, key, enrolled["http"], HTTP_ENUMERATION * runs)
        out["peak"] = _peak_mb(ours.pid)
        out["rss"] = _rss_mb(ours.pid)
    finally:
        _stop(ours)
        if floor:
            _stop(floor)
    return out


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024


def _pam_runs(logins: Logins, pool: list[list[str]], storm_pool: list[list[str]], runs: int) -> dict:
    out: dict = {k: [] for k in ("login", "login_floor", "storm", "storm_floor", "storm_p99", "storm_floor_p99")}
    out["refused"] = out["refused_floor"] = 0
    users = iter(pool)
    for _ in range(WARMUP):  # untimed: page cache, the service's first packets
        logins.one("ours", *next(users))
        logins.one("libpam", *logins.libpam_user())
    for i in range(runs):
        for j in range(SERVICE_LOGINS):
            pair = [("login", "ours", next(users)), ("login_floor", "libpam", logins.libpam_user())]
            for figure, side, (user, secret) in pair if (i + j) % 2 == 0 else reversed(pair):
                out[figure].append(logins.one(side, user, secret))
    for i in range(runs):
        sides = [("", "ours", storm_pool[i * STORM : (i + 1) * STORM]),
                 ("_floor", "libpam", [logins.libpam_user() for _ in range(STORM)])]
        for suffix, side, users_ in sides if i % 2 == 0 else reversed(sides):
            d = logins.storm(side, users_)
            out[f"storm{suffix}"].append(d["wall"])
            out[f"storm{suffix}_p99"].append(_pct(sorted(d["latencies"]), 0.99))
            out[f"refused{suffix}"] += d["accepted"].count(False)
            if False in d["accepted"]:
                _say(f"  {side} storm run {i + 1}: {d['accepted'].count(False)} of {STORM} not authenticated")
    return out


def _http_runs(ours: str, floor: str, key: str, pool: list[list[str]], runs: int, env: dict[str, str]) -> dict:
    out: dict = {k: [] for k in ("rate", "rate_floor", "p50", "p99", "p50_floor", "p99_floor")}
    out["wrong"] = 0
    _load(ours, key, pool[:HTTP_WARM], env)
    _load(floor, key, pool[:HTTP_WARM], env)
    for i in range(runs):
        jobs = pool[HTTP_WARM + i * HTTP_CHECKS : HTTP_WARM + (i + 1) * HTTP_CHECKS]
        sides = [("", ours), ("_floor", floor)]
        for suffix, url in sides if i % 2 == 0 else reversed(sides):
            d = _load(url, key, jobs, env)
            out[f"rate{suffix}"].append(len(jobs) / d["wall"])
            ordered = sorted(d["latencies"])
            out[f"p50{suffix}"].append(statistics.median(ordered))
            out[f"p99{suffix}"].append(_pct(ordered, 0.99))
            wrong = sum(answer != [200, "ACCEPT"] for answer in d["answers"]) + len(jobs) - len(d["answers"])
            if not suffix:
                out["wrong"] += wrong
                if wrong:
                    _say(f"  HTTP run {i + 1}: {wrong} of {len(jobs)} checks not ACCEPT: "
                         f"{sorted({tuple(a) for a in d['answers'] if a != [200, 'ACCEPT']})[:5]}")
    return out


def _http_enumeration(url: str, key: str, pool: list[list[str]], samples: int) -> dict:
    """One check at a time over one keep-alive connection: a wrong code of an enrolled user (a
    user at most 4 times: the fifth would lock) and an unknown name, interleaved in random order;
    each answer must be the same REJECT."""
    import http.client

    host, port = url.removeprefix("http://").split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-www-form-urlencoded"}
    rng = random.Random(12)
    out: dict[str, list[float]] = {"wrong": [], "unknown": []}

    def timed(user: str, code: str) -> float:
        started = time.perf_counter()
        conn.request("POST", "/validate/check", f"user={user}&pass={code}", headers)
        body = json.loads(conn.getresponse().read())
        took = time.perf_counter() - started
        assert body["result"]["authentication"] == "REJECT" and body["detail"]["message"] == "wrong code", body
        return took

    users = [user for user, _ in pool for _ in range(4)]
    for i in range(samples + 20):  # the first 20 untimed
        secret = dict(pool).get(users[i])
        near = {pyotp.TOTP(secret).at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
        code = next(c for c in (f"{rng.randrange(10**6):06d}" for _ in range(99)) if c not in near)
        unknown = f"{rng.choice(FIRST)}.{rng.choice(LAST)}.{rng.randrange(10**9)}".lower()
        kinds = [("wrong", users[i]), ("unknown", unknown)]
        rng.shuffle(kinds)
        for kind, user in kinds:
            took = timed(user, code)
            if i >= 20:
                out[kind].append(took)
    conn.close()
    return out


def service_figures(figures: Figures, users: int, d: dict, groups: set[str]) -> None:
    if "service-pam" in groups:
        figures.add("service: SSH-style login, pamtester → pam_radius_auth → RADIUS", users, d["login"],
                    d["login_floor"], target="ratio ≤ 1", max_ratio=1,
                    note="each login a fresh enrolled user and a code of now (pyotp); floor: pamtester → "
                         "pam_google_authenticator, a fresh user's secret file (TOTP_AUTH, DISALLOW_REUSE), "
                         f"interleaved; both in a private mount namespace (unshare), {SERVICE_LOGINS} each a run")
        figures.add(f"service: {STORM} concurrent pamtester logins, wall", users, d["storm"], d["storm_floor"],
                    target="ratio ≤ 1", max_ratio=1,
                    note=f"floor: {STORM} concurrent libpam logins, in the same runs (the order alternating)")
        figures.add(f"service: {STORM} concurrent logins, latency p99", users, d["storm_p99"], d["storm_floor_p99"])
        figures.add("service: logins not authenticated", users, [d["refused"]], unit="count", target="0",
                    max_value=0, note=f"every pamtester's exit and output checked; libpam's not authenticated in the "
                                      f"same runs: {d['refused_floor']}")
    if "service-http" in groups:
        figures.add(f"service: checks per second, {HTTP_CLIENTS} HTTP clients (keep-alive)", users, d["rate"],
                    d["rate_floor"], unit="count", target="ratio ≥ 0.5", ratio_range=(0.5, math.inf),
                    note=f"POST /validate/check, {HTTP_CHECKS:,} a run, each a first use of an enrolled user's code "
                         "(aiohttp client, one process); floor: an aiohttp server reading the form and answering a "
                         "constant JSON, same client, same load, interleaved")
        figures.add("service: one check's latency p99, under that load", users, d["p99"], d["p99_floor"],
                    target="≤ 10 ms", max_value=0.010,
                    note=f"closed loop: {HTTP_CLIENTS} clients each waiting for its answer, so latency ≈ "
                         f"{HTTP_CLIENTS} ÷ rate; floor column: the constant server's p99 under the same load")
        figures.add("service: one check's latency p50, under that load", users, d["p50"], d["p50_floor"])
        figures.add("service: checks not ACCEPT (HTTP)", users, [d["wrong"]], unit="count", target="0", max_value=0,
                    note="every answer's status and result.authentication checked")
        e = d["enumeration"]
        figures.add("service: an unknown name's REJECT vs a wrong code's (HTTP)", users, e["unknown"], e["wrong"],
                    target="≈ 1 (0.9–1.1)", ratio_range=(0.9, 1.1),
                    note=f"one check at a time, keep-alive, {len(e['wrong'])} of each interleaved in random order; "
                         "the same answer each time (checked)")
    figures.add("service: peak memory (RSS) of `serve`", users, [d["peak"]],
                [d["peak_floor"]] if "peak_floor" in d else None, unit="MB",
                note=f"VmHWM after every figure above (RSS then: {d['rss']:.0f} MB); floor: the constant aiohttp "
                     "server's peak after the same load")


# -- main --------------------------------------------------------------------------------------
PG_GROUPS = {"pg-verify", "pg-storm", "pg-durable"}
SERVICE_GROUPS = {"service-pam", "service-http"}
GROUPS = ("verify", "storm", "durable", "import", "enumeration", "dashboard", *sorted(PG_GROUPS),
          *sorted(SERVICE_GROUPS))


def measure(users: int, runs: int, groups: set[str], figures: Figures, base: Path, env: dict[str, str],
            before: str | None, pg: str | None) -> dict:
    folder = _mkdir(base / f"u{users}")
    pristine, work = folder / "pristine", folder / "work"
    pools = {
        # PostgreSQL's copy is of the pristine store: its users are new to it too.
        "discover": 1 if groups & {"verify", "storm", "pg-verify", "pg-storm"} else 0,
        "verify": WARMUP + runs if groups & {"verify", "pg-verify"} else 0,
        "across": WARMUP + runs if "verify" in groups else 0,  # the sizes compared, once all are built
        "storm": 1 + STORM * runs if groups & {"storm", "pg-storm"} else 0,
        "durable": 1 + DURABLE_EACH * runs if groups & {"durable", "pg-durable"} else 0,
        "enum": ENUM_POOL + 1 if "enumeration" in groups else 0,
        "pam": WARMUP + SERVICE_LOGINS * runs if "service-pam" in groups else 0,
        "pam-storm": STORM * runs if "service-pam" in groups else 0,
        "http": HTTP_WARM + HTTP_CHECKS * runs if "service-http" in groups else 0,
    }
    _say(f"{users:,} users: building the store, enrolling {sum(pools.values()) + 1:,} users ...")
    build_time, enroll_time, enrolled = build_store(pristine, users, pools)
    figures.add("demo store build (once)", users, [build_time], note="build_demo: users added in one transaction")
    figures.add(f"enrolling {sum(map(len, enrolled.values())):,} users in-process (once)", users, [enroll_time],
                note="Service.begin_enrollment + confirm_enrollment each, with codes an hour old")
    figures.add("store file size", users, [(pristine / "store.db").stat().st_size / 1e6], unit="MB")
    _copy_store(pristine, work)
    (work / "pools.json").write_text(json.dumps(enrolled))
    found: dict = {}
    if groups & {"verify", "storm"}:
        v = Verifies(_paths(work), folder, env, enrolled["discover"][0])
        try:
            process_figures(figures, users, runs, v, enrolled, groups)
        finally:
            v.close()
        if "verify" in groups:
            found["across"] = (work, folder, enrolled["across"])  # kept until every size is measured
    if "durable" in groups:
        durable_figures(figures, users, run_worker("durable", work, runs),
                        "floor: BEGIN IMMEDIATE; UPDATE t SET step = ? WHERE key = ? AND step < ?; COMMIT on a bare "
                        f"{users:,}-row table (WAL, synchronous=FULL) in the same folder, interleaved")
    if "enumeration" in groups:
        d = run_worker("enumeration", work, runs)
        w = d["wrong"]
        figures.add("enumeration: wrong code, enrolled user (Service.verify)", users, w,
                    note="in-process, the three kinds interleaved in random order")
        p90 = {k: _pct(sorted(v), 0.9) for k, v in d.items()}
        for a, b, what in (("unknown", "wrong", "unknown username vs wrong code"),
                           ("locked", "wrong", "locked user vs wrong code"),
                           ("unknown", "locked", "unknown username vs locked user")):
            figures.add(f"enumeration: {what}", users, d[a], d[b], target="≈ 1 (0.9–1.1)", ratio_range=(0.9, 1.1),
                        note=f"ratio of the p90s: {p90[a] / p90[b]:.2f}")
        figures.add("enumeration noise: wrong code, odd vs even samples", users, w[1::2], w[0::2],
                    note="one kind split in two: the ratio that noise alone gives; ratio of the p90s: "
                         f"{_pct(sorted(w[1::2]), 0.9) / _pct(sorted(w[0::2]), 0.9):.2f}")
    if "import" in groups:
        d = run_worker("import", work, runs)
        figures.add("import users from CSV (Service.import_users)", users, d["ours"], d["floor"], target="ratio ≤ 2",
                    max_ratio=2, note="into a new store; floor: csv.reader over the same bytes + executemany into a "
                                      "bare 5-column table keyed by username, one transaction (WAL, synchronous=FULL)")
    if "dashboard" in groups:
        sides = [Side("ours", None, pristine, "store.db", enrolled["admin"][0][1])]
        if before:
            _say(f"  building the JSON Lines store of {before[:7]} ...")
            sides.append(before_side(_mkdir(folder / "before"), before, users, env))
        tmux = Tmux(folder, env)
        try:
            d = dashboard_runs(tmux, sides, env, runs)
        finally:
            tmux.close()
        ours, old = d["ours"], d[sides[-1].label] if before else None
        size = (pristine / "store.db").stat().st_size / 1e6
        figures.add("dashboard: start-up to sign-in screen drawn (tmux)", users, ours["start"], ours["start_floor"],
                    target="ratio ≤ 1.3", max_ratio=1.3,
                    note="floor: a trivial Textual app started the same way, in each run (issue 5's target)")
        if old:
            label = sides[-1].label
            figures.add(f"dashboard: start-up, {label}", users, old["start"], old["start_floor"],
                        note=f"{label}: the JSON Lines store's code and a demo store of it, driven the same way in "
                             "the same runs, interleaved with ours")
            figures.add("dashboard: start-up, ours vs before", users, ours["start"], old["start"],
                        target="≤ before", max_ratio=1.0)
        figures.add("dashboard: sign-in code → grid drawn with rows (tmux)", users, ours["login"],
                    old["login"] if old else None, **(dict(target="≤ before", max_ratio=1.0) if old else
                                                      dict(target="≤ 441 ms (README)", max_value=0.441)),
                    note="floor column: the same figure before the move to SQLite, in the same runs" if old else "")
        figures.add("dashboard: search keystroke → grid shows result (tmux)", users, ours["key"], ours["key_floor"],
                    note="floor: a plain Python filter of the same list")
        if old:
            figures.add("dashboard: search keystroke, ours vs before", users, ours["key"], old["key"],
                        target="≤ before", max_ratio=1.0)
        figures.add("dashboard: peak memory (RSS)", users, ours["peak"], [size], unit="MB",
                    note="floor: the store file's size")
        if old:
            figures.add("dashboard: peak memory, ours vs before", users, ours["peak"], old["peak"], unit="MB",
                        target="≤ before", max_ratio=1.0)
    if groups & SERVICE_GROUPS:
        _say("  the service: PAM logins, HTTP load ...")
        service_figures(figures, users, service_runs(work, _mkdir(folder / "service"), env, enrolled, runs, groups),
                        groups)
    if groups & PG_GROUPS:
        measure_pg(users, runs, {g.removeprefix("pg-") for g in groups & PG_GROUPS}, figures, folder, work, pristine,
                   enrolled, env, pg)
    if "across" not in found:
        shutil.rmtree(folder, ignore_errors=True)
    return found


def measure_pg(users: int, runs: int, groups: set[str], figures: Figures, folder: Path, work: Path, pristine: Path,
               enrolled: dict[str, list], env: dict[str, str], server: str) -> None:
    """The figures of `groups` (verify, storm, durable) on a copy of the pristine store, in a
    database of its own on `server`, dropped afterwards."""
    name = f"mfa_bench_{os.getpid()}_{users}"
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    admin = psycopg.connect(server, autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        _say(f"  copying the store to PostgreSQL ({name}) ...")
        source = Service(_paths(pristine))
        started = time.perf_counter()
        migrate(source, url, actor="bench")
        figures.add("PostgreSQL: store copied (once)", users, [time.perf_counter() - started],
                    note="store.migrate.migrate: every table in one transaction, then compared user by user")
        source.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a store in use, and not during the runs
        if groups & {"verify", "storm"}:
            v = Verifies(StorePaths(url, work / "store.key"), _mkdir(folder / "pg"), env, enrolled["discover"][0])
            try:
                process_figures(figures, users, runs, v, enrolled, groups, engine="PostgreSQL")
            finally:
                v.close()
        if "durable" in groups:
            durable_figures(figures, users, run_worker("pg-durable", work, runs, url),
                            "floor: BEGIN; UPDATE t SET step = %s WHERE key = %s AND step < %s; COMMIT on a bare "
                            f"{users:,}-row table in the same database (psycopg, one connection), interleaved",
                            engine="PostgreSQL", max_ratio=3)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def process_figures(figures: Figures, users: int, runs: int, v: Verifies, enrolled: dict[str, list],
                    groups: set[str], engine: str = "") -> None:
    """The verify and storm figures (those in `groups`) of the store `v` starts verify on."""
    on = f"{engine}: " if engine else ""
    if "verify" in groups:
        d = verify_runs(v, enrolled["verify"], runs)
        figures.add(f"{on}`mfa-console verify` process, right code", users, d["ours"], d["floor"],
                    target="ratio ≤ 1.25", max_ratio=1.25,
                    note=f"floor: a Python process importing the {len(v.modules)} modules a verify loads "
                         "(found in this run), doing nothing; both started as pam_exec does")
        figures.add(f"{on}`mfa-console verify` vs bare imports (FACTS.md's floor)", users, d["ours"], d["bare"],
                    note="floor: a Python process importing only hashlib, hmac, sqlite3, pyotp, AESGCM and "
                         "HKDF: what checking a code needs at the least (no target; shows the imports' cost; "
                         "on PostgreSQL, psycopg's too)")
    if "storm" in groups:
        d = storm_runs(v, enrolled["storm"], runs)
        figures.add(f"{on}login storm: {STORM} concurrent verify, wall", users, d["wall"], d["floor"],
                    target="ratio ≤ 1.5", max_ratio=1.5,
                    note=f"floor: {STORM} × the floor process's time (median of 3, each run) ÷ {CORES} cores")
        figures.add(f"{on}login storm: {STORM} floor processes at once, wall", users, d["floor_wall"], d["floor"],
                    note="the same storm of floor processes: how far the machine itself is from the formula")
        figures.add(f"{on}login storm: latency p50", users, d["p50"], d["floor_p50"],
                    note="each process from its start to its exit; floor: the floor processes' storm")
        figures.add(f"{on}login storm: latency p99", users, d["p99"], d["floor_p99"])
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(d["reasons"].items())) or "none"
        figures.add(f"{on}login storm: answers not accepted (exit ≠ 0)", users, [d["wrong"]], unit="count",
                    target="0", max_value=0,
                    note=f"of {d['answers']:,} verify processes, every exit code checked; {d['late']} of the "
                         f"refused exited after their code's window (its step ± 1) had passed; the audit "
                         f"log's reasons: {reasons}")
        figures.add(f"{on}login storm: CPU time of the 200 verify (user + sys)", users, d["cpu"], d["floor_cpu"],
                    note=f"floor: {STORM} × one floor process's CPU time, started alone")
        figures.add(f"{on}login storm: CPU time of the 200 floor processes", users, d["floor_storm_cpu"],
                    d["floor_cpu"])
        figures.add(f"{on}login storm: CPUs the storm got (CPU time ÷ wall)", users,
                    [c / w for c, w in zip(d["cpu"], d["wall"])], unit="x",
                    note=f"of {CORES}: the rest went to other processes on the machine")


def durable_figures(figures: Figures, users: int, d: dict, note: str, engine: str = "", max_ratio: float = 5) -> None:
    on = f"{engine}: " if engine else ""
    figures.add(f"{on}durable change: a code accepted (Service.verify)", users, d["accept"], d["floor"],
                target=f"ratio ≤ {max_ratio}", max_ratio=max_ratio, note=note)
    figures.add(f"{on}durable change: Service.reset_2fa", users, d["reset"], d["floor"],
                target=f"ratio ≤ {max_ratio}", max_ratio=max_ratio)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", default="10000,100000", help="comma-separated store sizes (default 10000,100000)")
    p.add_argument("--runs", type=int, default=5, help="runs of each figure (default 5)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of figures: {', '.join(GROUPS)}")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout (the table on stderr)")
    p.add_argument("--before", default="auto", metavar="REV",
                   help="the revision the dashboard figures are compared with, measured in the same runs (default: "
                        "the last one with the JSON Lines store; 'none': the README's figures instead)")
    p.add_argument("--pg", metavar="URL",
                   help="a PostgreSQL server (libpq URL) where the run may create and drop databases of its own: "
                        "the pg-* figures, skipped without it")
    p.add_argument("--worker", nargs=1, metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("folder", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.folder), args.runs, args.pg)))
        return 0
    groups = set(args.only.split(","))
    unknown = groups - set(GROUPS)
    if unknown:
        p.error(f"unknown groups: {', '.join(sorted(unknown))}")
    if args.pg and not is_url(args.pg):
        p.error(f"--pg takes a postgresql:// URL, not {args.pg!r}")
    server = pg_server(args.pg) if args.pg and groups & PG_GROUPS else None
    if groups & PG_GROUPS and not server:
        _say(f"PostgreSQL figures ({', '.join(sorted(groups & PG_GROUPS))}) skipped: no --pg URL")
        groups -= PG_GROUPS
    if "dashboard" in groups and not shutil.which("tmux"):
        p.error("the dashboard figures need tmux (apt-get install tmux), or leave them out with --only")
    sizes = [int(u) for u in args.users.split(",")]
    before = None
    if "dashboard" in groups and args.before != "none":
        before = _json_store_revision() if args.before == "auto" else args.before
    env = _env()
    _compile()  # installed, the project's modules are compiled once (pip does it), as the libraries' are
    figures = Figures()
    base = Path(tempfile.mkdtemp(prefix="mfa-bench-"))  # 0700
    # The dashboard's preferences of a fresh user (the sign-in lands on Users, the default theme):
    # not the ones of whoever runs this, which a run would also overwrite.
    env["XDG_CONFIG_HOME"] = str(_mkdir(base / "config"))
    stores: dict[int, tuple[Path, Path, list]] = {}
    try:
        for users in sizes:
            found = measure(users, args.runs, groups, figures, base, env, before, args.pg)
            if "across" in found:
                stores[users] = found["across"]
        if len(stores) >= 2:
            _say("verify on every size, interleaved ...")
            d = verify_across(stores, env, args.runs)
            small, large = min(stores), max(stores)
            figures.add(f"`mfa-console verify`: {large:,} vs {small:,} users", large, d[large], d[small],
                        target="within 10% (0.9–1.1)", ratio_range=(0.9, 1.1),
                        note=f"floor column: the same figure at {small:,} users; the two sizes interleaved in "
                             "each run, after every other figure")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    table = figures.table()
    header = f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {CORES} cores, {args.runs} runs"
    if server:
        header += ", PostgreSQL " + ", ".join(f"{k}={v}" if k != "server_version" else v for k, v in server.items())
    if args.json:
        print(header, table, sep="\n", file=sys.stderr)
        print(json.dumps({"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version, "postgresql": server,
                          "cpus": CORES, "runs": args.runs, "figures": figures.rows}, indent=2))
    else:
        print(header, table, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
