"""Scale benchmark: each figure beside its floor, measured in the same run on this machine.

    python benchmarks/run.py                      # 10k and 100k users, 5 runs a figure
    python benchmarks/run.py --users 100000 --runs 7 --json > figures.json

Stores are built in a temporary folder (deleted afterwards). Dashboard figures drive the real
app in tmux (needs `tmux`); the rest run in a fresh worker process each, so one figure's heap
does not slow another's garbage collector. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import pyotp  # noqa: E402

from store.demo import FIRST, LAST, TEAMS, build_demo  # noqa: E402
from store.paths import StorePaths  # noqa: E402
from store.service import Service  # noqa: E402
from store.storage import LineTable, parse_store  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "demo-admin"  # a demo login, enrolled by the benchmark
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

# Python start, one read and one write of the store: what any process that changes it must do.
FLOOR_PROCESS = """
import os, sys, orjson
src, dst = sys.argv[1:]
with open(src, "rb") as f:
    data = orjson.loads(f.read())
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, orjson.dumps(data))
os.fsync(fd)
os.close(fd)
"""


# -- measuring ---------------------------------------------------------------------------------
class Figures:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, figure: str, users: int, ours: list[float], floor: list[float] | None, *, unit: str = "s",
            target: str = "", note: str = "") -> None:
        row = {"figure": figure, "users": users, "unit": unit, "ours": _stats(ours),
               "floor": _stats(floor) if floor else None, "target": target, "note": note}
        row["ratio"] = row["ours"]["median"] / row["floor"]["median"] if floor else None
        self.rows.append(row)
        _say(f"  {figure}: {_fmt(row['ours']['median'], unit)}"
             + (f" (floor {_fmt(row['floor']['median'], unit)}, ratio {row['ratio']:.2f})" if floor else ""))

    def table(self) -> str:
        head = ("figure", "users", "ours: median [min–max]", "floor: median [min–max]", "ratio", "target")
        lines = []
        for r in self.rows:
            lines.append((
                r["figure"], f"{r['users']:,}", _span(r["ours"], r["unit"]),
                _span(r["floor"], r["unit"]) if r["floor"] else "—",
                f"{r['ratio']:.2f}" if r["ratio"] is not None else "—", r["target"],
            ))
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
        out += [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
        return "\n".join(out)


def _stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": len(values)}


def _fmt(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:.0f} MB"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _span(s: dict, unit: str) -> str:
    return f"{_fmt(s['median'], unit)} [{_fmt(s['min'], unit)}–{_fmt(s['max'], unit)}]"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fsync_write(path: Path, raw: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_store(src: Path, dst: Path) -> StorePaths:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("store.json", "store.key"):
        shutil.copyfile(src / name, dst / name)
    (dst / "store.json.audit.jsonl").unlink(missing_ok=True)
    return StorePaths(dst / "store.json", dst / "store.key")


def plain_data(store: Path) -> dict:
    """The store's data as one JSON document's worth of dicts: what the floors read and write."""
    data = parse_store(store.read_bytes(), store)
    data["users"] = {key: LineTable.parse(line) for key, line in data["users"].lines()}
    return data


def _plain_copy(store: Path) -> Path:
    """The same data as one JSON document, beside the store (not timed)."""
    plain = store.with_name("plain.json")
    if not plain.exists():
        plain.write_bytes(orjson.dumps(plain_data(store)))
    return plain


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, **kwargs)


# -- stores ------------------------------------------------------------------------------------
def build_store(folder: Path, users: int) -> tuple[float, str]:
    """The demo store of `users` users, with the admin enrolled an hour ago; returns (build time, secret)."""
    paths = StorePaths(folder / "store.json", folder / "store.key")
    started = time.perf_counter()
    build_demo(paths, users=users, actor="bench", now=time.time()).close()
    took = time.perf_counter() - started
    past = time.time() - 3600  # the admin's last accepted code is old: any code of now is new
    service = Service(paths, clock=lambda: past)
    op = service.operator("bench")
    enrollment = service.begin_enrollment(op, ADMIN)
    assert service.confirm_enrollment(op, ADMIN, pyotp.TOTP(enrollment.secret).at(past)).ok
    service.close()
    return took, enrollment.secret


def users_csv(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = ["username,name,email,role,team"]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        username = f"{first}.{last}.{i}".lower()
        role = "supervisor" if rng.random() < 0.04 else "agent"
        lines.append(f"{username},{first} {last},{username}@acme.example,{role},{rng.choice(TEAMS)}")
    return ("\n".join(lines) + "\n").encode()


# -- workers: one fresh process for each group of in-process figures -----------------------------
def worker(name: str, folder: Path, runs: int) -> dict:
    return {"durable": _work_durable, "read": _work_read, "import": _work_import, "list": _work_list}[name](
        folder, runs)


def _activated(folder: Path, count: int) -> list[str]:
    data = plain_data(folder / "store.json")
    return [k for k, d in data["users"].items() if d.get("secret") and k != ADMIN][:count]


def _work_durable(pristine: Path, runs: int) -> dict:
    targets = _activated(pristine, runs * 2)
    work, scratch = pristine.parent / "durable", pristine.parent / "scratch.json"
    plain = _plain_copy(pristine / "store.json")
    out: dict[str, list[float]] = {k: [] for k in ("cold", "cold_floor", "warm", "confirm", "warm_floor")}
    for i in range(runs):
        paths = _copy_store(pristine, work)
        shutil.copyfile(plain, scratch)  # as cold in the page cache as the store copy
        started = time.perf_counter()
        raw = scratch.read_bytes()
        data = orjson.loads(raw)
        data["users"][targets[i]]["secret"] = None
        _fsync_write(scratch, orjson.dumps(data))
        out["cold_floor"].append(time.perf_counter() - started)
        del raw

        started = time.perf_counter()
        service = Service(paths)
        op = service.operator("bench")
        service.reset_2fa(op, targets[i])
        out["cold"].append(time.perf_counter() - started)

        started = time.perf_counter()
        data["users"][targets[runs + i]]["secret"] = None
        _fsync_write(scratch, orjson.dumps(data))
        out["warm_floor"].append(time.perf_counter() - started)
        del data

        started = time.perf_counter()
        service.reset_2fa(op, targets[runs + i])
        out["warm"].append(time.perf_counter() - started)

        enrollment = service.begin_enrollment(op, targets[i])
        code = pyotp.TOTP(enrollment.secret).now()
        started = time.perf_counter()
        assert service.confirm_enrollment(op, targets[i], code).ok
        out["confirm"].append(time.perf_counter() - started)
        service.close()
    return out


def _work_read(pristine: Path, runs: int) -> dict:
    service = Service(StorePaths(pristine / "store.json", pristine / "store.key"))
    op = service.operator("bench")
    name = _activated(pristine, 1)[0]
    service.list_users(op)
    out: dict[str, list[float]] = {"get_user": [], "list_users": [], "policy": [], "stat": []}
    for _ in range(runs * 200):
        for key, call in (
            ("get_user", lambda: service.get_user(op, name)),
            ("list_users", lambda: service.list_users(op)),
            ("policy", service.policy),
            ("stat", lambda: os.stat(pristine / "store.json")),
        ):
            started = time.perf_counter()
            call()
            out[key].append(time.perf_counter() - started)
    service.close()
    return out


def _work_list(pristine: Path, runs: int) -> dict:
    """Service.list_users at size: the first build, and again after one change made here."""
    targets = _activated(pristine, runs)
    out: dict[str, list[float]] = {"first": [], "after_change": []}
    for i in range(runs):
        paths = _copy_store(pristine, pristine.parent / "list")
        service = Service(paths)
        op = service.operator("bench")
        started = time.perf_counter()
        service.list_users(op)
        out["first"].append(time.perf_counter() - started)
        service.reset_2fa(op, targets[i])
        started = time.perf_counter()
        service.list_users(op)
        out["after_change"].append(time.perf_counter() - started)
        service.close()
    return out


def _work_import(pristine: Path, runs: int) -> dict:
    users = len(plain_data(pristine / "store.json")["users"])
    data = users_csv(users)
    out: dict[str, list[float]] = {"ours": [], "floor": []}
    for i in range(runs):
        folder = pristine.parent / f"import-{i}"
        paths = StorePaths(folder / "store.json", folder / "store.key")
        service = Service.create(paths, issuer="Bench", actor="bench")
        op = service.operator("bench")
        started = time.perf_counter()
        assert service.import_users(op, data) == users
        out["ours"].append(time.perf_counter() - started)
        service.close()
        result = plain_data(paths.db)
        started = time.perf_counter()
        _fsync_write(folder / "floor.json", orjson.dumps(result))
        out["floor"].append(time.perf_counter() - started)
        del result
        shutil.rmtree(folder)
    return out


def run_worker(name: str, folder: Path, runs: int) -> dict:
    proc = _python(str(Path(__file__).resolve()), "--worker", name, str(folder), "--runs", str(runs), timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{proc.stderr.decode()}")
    return json.loads(proc.stdout)


# -- the dashboard in tmux ---------------------------------------------------------------------
class Tmux:
    """One private tmux server; each run is a new session of it (starting a server is not timed)."""

    def __init__(self, folder: Path):
        self.socket = str(folder / "tmux.sock")
        # Textual believes COLUMNS and LINES over the pane's real size.
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.env["PYTHONPATH"] = str(ROOT)
        # Installed, the project's modules are compiled once (pip does it), as Textual's are: with
        # bytecode forbidden, every start of ours would compile them again and the floor would not.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.n = 0
        self("-f", os.devnull, "new-session", "-d", "-s", "idle", "-x", str(COLS), "-y", str(ROWS), "--", "cat")

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=20).stdout

    def start(self, *command: str) -> str:
        self.n += 1
        name = f"run{self.n}"
        self("new-session", "-d", "-s", name, "-x", str(COLS), "-y", str(ROWS), "-c", str(ROOT), "--", *command)
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


def dashboard_runs(tmux: Tmux, pristine: Path, secret: str, runs: int) -> dict:
    """Start, sign in, search, and a change by another process; the floor app started between runs."""
    service = Service(StorePaths(pristine / "store.json", pristine / "store.key"))
    users = service.list_users(service.operator("bench"))
    service.close()
    haystacks = [f"{u.username}\n{u.name}\n{u.team or ''}".casefold() for u in users]
    counts = [sum(SEARCH[: i + 1] in h for h in haystacks) for i in range(len(SEARCH))]
    assert len(set(counts)) == len(counts), f"each prefix of {SEARCH!r} must show a different count: {counts}"
    floor_app = pristine.parent / "floor_app.py"
    floor_app.write_text(FLOOR_APP)
    for package in ("store", "tui"):
        compileall.compile_dir(ROOT / package, quiet=1)
    out: dict[str, list[float]] = {k: [] for k in ("start", "start_floor", "login", "key", "key_floor", "peak")}
    for i in range(runs):
        started = time.perf_counter()
        session = tmux.start(sys.executable, str(floor_app))
        out["start_floor"].append(tmux.wait(session, lambda s: LOGIN_MARK in s) - started)
        tmux.stop(session)

        paths = _copy_store(pristine, pristine.parent / "dash")
        started = time.perf_counter()
        session = tmux.start(sys.executable, "-m", "tui", "--db", str(paths.db), "--key", str(paths.key))
        out["start"].append(tmux.wait(session, lambda s: LOGIN_MARK in s) - started)
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
        tmux("send-keys", "-t", session, "-l", pyotp.TOTP(secret).now())
        started = time.perf_counter()
        tmux("send-keys", "-t", session, "Enter")
        out["login"].append(tmux.wait(session, lambda s: GRID_MARK in s) - started)

        tmux("send-keys", "-t", session, "/")
        tmux.wait(session, lambda s: SEARCH_MARK in s)
        for n, count in enumerate(counts):
            typed = SEARCH[: n + 1]
            shown = f"Showing {count:,} of {len(users):,}"
            started = time.perf_counter()
            tmux("send-keys", "-t", session, "-l", SEARCH[n])
            out["key"].append(tmux.wait(session, lambda s: shown in s and f'"{typed}"' in s) - started)
            started = time.perf_counter()
            assert len([h for h in haystacks if typed in h]) == count
            out["key_floor"].append(time.perf_counter() - started)

        # Another process resets a user: the dashboard re-reads the store (old and new data at once).
        other = Service(paths)
        op = other.operator("bench")
        activated = sum(u.status.value == "activated" for u in other.list_users(op) if u.active)
        other.reset_2fa(op, _activated(paths.db.parent, 1)[0])
        other.close()
        tmux.wait(session, lambda s: f"Activated {activated - 1:,} of" in s)
        out["peak"].append(_peak_mb(pid))
        tmux.stop(session)
    return out


def verify_runs(pristine: Path, secret: str, runs: int) -> dict:
    out: dict[str, list[float]] = {"ours": [], "floor": []}
    for _ in range(runs):
        started = time.perf_counter()
        proc = _python("-c", FLOOR_PROCESS, str(_plain_copy(pristine / "store.json")), str(pristine.parent / "scratch.json"))
        out["floor"].append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
        paths = _copy_store(pristine, pristine.parent / "verify")  # each run's code is then a new one
        code = pyotp.TOTP(secret).now()
        started = time.perf_counter()
        proc = _python("-m", "tui", "verify", "--db", str(paths.db), "--key", str(paths.key), "-q", ADMIN,
                       input=code.encode())
        out["ours"].append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
    return out


# -- main --------------------------------------------------------------------------------------
GROUPS = ("dashboard", "durable", "read", "list", "import", "verify")


def measure(users: int, runs: int, groups: set[str], figures: Figures, base: Path) -> None:
    folder = base / f"u{users}"
    pristine = folder / "pristine"
    _say(f"{users:,} users: building the store ...")
    build_time, secret = build_store(pristine, users)
    size_mb = (pristine / "store.json").stat().st_size / 1e6
    plain = _plain_copy(pristine / "store.json")
    started = time.perf_counter()
    _fsync_write(folder / "scratch.json", orjson.dumps(orjson.loads(plain.read_bytes())))
    write_floor = time.perf_counter() - started
    figures.add("demo store build (once)", users, [build_time], [write_floor], target="—",
                note="floor: one full read and write of the store")
    figures.add("store file size", users, [size_mb], None, unit="MB")
    if "dashboard" in groups:
        tmux = Tmux(folder)
        try:
            d = dashboard_runs(tmux, pristine, secret, runs)
        finally:
            tmux.close()
        figures.add("start-up to login screen drawn (tmux)", users, d["start"], d["start_floor"], target="ratio ≤ 1.3",
                    note="floor: a trivial Textual app started the same way")
        figures.add("login code → grid drawn with rows (tmux)", users, d["login"], None, target="≤ 0.5 s")
        figures.add("search keystroke → grid shows result (tmux)", users, d["key"], d["key_floor"], target="≤ 50 ms",
                    note="floor: a plain Python filter of the same list")
        figures.add("dashboard peak memory (RSS)", users, d["peak"], [size_mb], unit="MB", target="≤ 250 MB",
                    note="floor: the store file's size")
    if "durable" in groups:
        d = run_worker("durable", pristine, runs)
        figures.add("durable change, store re-read (reset 2FA)", users, d["cold"], d["cold_floor"],
                    target="ratio ≤ 1.3", note="floor: orjson read + change one + write + fsync")
        figures.add("durable change, store cached (reset 2FA)", users, d["warm"], d["warm_floor"],
                    target="ratio ≤ 1.3", note="floor: change one + orjson write + fsync")
        figures.add("durable change, store cached (confirm enrollment)", users, d["confirm"], d["warm_floor"],
                    target="ratio ≤ 1.3", note="floor: change one + orjson write + fsync")
    if "read" in groups:
        d = run_worker("read", pristine, runs)
        figures.add("read, file unchanged (get_user)", users, d["get_user"], d["stat"], target="≤ 1 ms",
                    note="floor: os.stat of the store")
        figures.add("read, file unchanged (list_users)", users, d["list_users"], d["stat"], target="≤ 1 ms")
        figures.add("read, file unchanged (policy)", users, d["policy"], d["stat"], target="≤ 1 ms")
    if "list" in groups:
        d = run_worker("list", pristine, runs)
        figures.add("list_users, first build", users, d["first"], None)
        figures.add("list_users, after one change", users, d["after_change"], None)
    if "import" in groups:
        d = run_worker("import", pristine, runs)
        figures.add("import users from CSV", users, d["ours"], d["floor"], target="ratio ≤ 2",
                    note="floor: one full write of the resulting store")
    if "verify" in groups:
        d = verify_runs(pristine, secret, runs)
        figures.add("`mfa-console verify` process", users, d["ours"], d["floor"], target="ratio ≤ 1.3",
                    note="floor: python start + one read + one write of the same data")
    shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", default="10000,100000", help="comma-separated store sizes (default 10000,100000)")
    p.add_argument("--runs", type=int, default=5, help="runs of each figure (default 5)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of figures: {', '.join(GROUPS)}")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout (the table on stderr)")
    p.add_argument("--worker", nargs=1, metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("folder", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.folder), args.runs)))
        return 0
    groups = set(args.only.split(","))
    unknown = groups - set(GROUPS)
    if unknown:
        p.error(f"unknown groups: {', '.join(sorted(unknown))}")
    if "dashboard" in groups and not shutil.which("tmux"):
        p.error("the dashboard figures need tmux (apt-get install tmux), or leave them out with --only")
    figures = Figures()
    base = Path(tempfile.mkdtemp(prefix="mfa-bench-"))
    try:
        for users in (int(u) for u in args.users.split(",")):
            measure(users, args.runs, groups, figures, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    table = figures.table()
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "figures": figures.rows}, indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
