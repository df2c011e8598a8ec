"""A demo contact center: realistic names over several teams, a rollout under way."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .models import NewUser, PolicyMode, Role, Status
from .paths import StorePaths
from .service import Service

ISSUER = "Acme Contact Center"
TEAMS = ("Billing", "Customer Care", "Tech Support", "Sales", "Retention", "Collections", "Onboarding", "Night Shift")
FIRST = (
    "Alice Ana Andre Aisha Ben Bianca Carlos Chloe Daniel Diana Elena Emeka Fatima Felix Grace Hugo Ines "
    "Ivan Jamal Julia Kenji Laura Leo Lucia Mateo Maya Nadia Noah Olga Omar Paula Priya Rafael Rosa Samir "
    "Sofia Tariq Teresa Tomas Uma Victor Wei Yara Yusuf Zoe Hannah Marco Amara Liam Mei"
).split()
LAST = (
    "Smith Garcia Okafor Nguyen Rossi Muller Kowalski Silva Haddad Tanaka Johansson Dubois Costa Novak "
    "Ibrahim Fernandez Petrov Kim Andersen Moreau Santos Schmidt Popescu Yilmaz Cohen Walsh Bauer Ortiz "
    "Mensah Larsen Ricci Horvat Chen Sato Lopez Klein Nowak Brennan Ahmed Varga"
).split()


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    password: str
    role: Role


LOGINS = (
    DemoLogin("admin", "demo-admin", Role.ADMIN),
    DemoLogin("supervisor", "demo-supervisor", Role.SUPERVISOR),
    DemoLogin("agent", "demo-agent", Role.AGENT),
)


def build_demo(paths: StorePaths, *, users: int, actor: str, now: float, seed: int = 2026) -> Service:
    """A store with `users` accounts; the three demo logins are Pending, so they enroll first."""
    rng = random.Random(seed)
    service = Service.create(paths, issuer=ISSUER, mode=PolicyMode.MANDATORY, actor=actor, clock=lambda: now)
    operator = service.operator(actor)
    for login in LOGINS:
        service.add_user(
            operator,
            NewUser(login.username, f"Demo {login.role.value.title()}", login.role, team=TEAMS[0]),
            password=login.password,
        )
    service.seed_users(operator, list(_people(rng, users - len(LOGINS), now)))
    service.close()
    return Service(paths)


def _people(rng: random.Random, count: int, now: float):
    """Accounts created up to 10 weeks ago; activations follow, faster in some teams than others."""
    taken: dict[str, int] = {}  # how many people share a first.last
    pace = {team: rng.uniform(0.35, 0.9) for team in TEAMS}
    day = 86400.0
    for _ in range(max(count, 0)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        base = f"{first}.{last}".lower()
        taken[base] = taken.get(base, 0) + 1
        username = base if taken[base] == 1 else f"{base}{taken[base]}"
        team = rng.choice(TEAMS)
        roll = rng.random()
        role = Role.ADMIN if roll < 0.005 else Role.SUPERVISOR if roll < 0.04 else Role.AGENT
        created = now - rng.uniform(14, 70) * day
        activated = None
        if rng.random() < pace[team]:
            activated = rng.uniform(created, now - 600)
        last_login = rng.uniform(activated, now) if activated else None
        email = f"{username}@acme.example"
        yield SeedUser(NewUser(username, f"{first} {last}", role, email=email, team=team), created, activated, last_login)


@dataclass(frozen=True, slots=True)
class SeedUser:
    user: NewUser
    created_at: float
    activated_at: float | None
    last_login_at: float | None


def login_help(statuses: dict[str, Status]) -> str:
    """The demo's sign-ins, each with its 2FA status now (`statuses` by username)."""
    lines = ["Demo sign-ins (2FA is mandatory: a Pending user enrolls at first sign-in):"]
    for login in LOGINS:
        status = statuses.get(login.username)
        state = "Pending: enrolls at first sign-in" if status is Status.PENDING else status.value.title() if status else "missing"
        lines.append(f"  {login.role.value:<10} {login.username:<11} password {login.password:<16} {state}")
    return "\n".join(lines)
