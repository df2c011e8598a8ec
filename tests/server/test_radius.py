"""RADIUS, asked by real clients: FreeRADIUS's `radclient` (as a VPN concentrator asks), and
sshd's way, `pamtester` through Debian's `pam_radius_auth`."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest

from store import crypto
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from tests.support import Served, password, query, start_service

REAL_SCRYPT_N = crypto.SCRYPT_N  # read at import, before conftest's fast_scrypt lowers it for a test


@dataclass
class Radius:
    paths: StorePaths
    served: Served
    secret: str  # the RADIUS client's shared secret
    totp: dict[str, str]  # each enrolled user's TOTP secret


def serve_radius(paths: StorePaths, **options) -> Radius:
    """alice and bob enrolled an hour ago (any code of now is new), with passwords; one RADIUS
    client "nas" from 127.0.0.1 (where radclient and pam_radius_auth send from), made with
    `options`; the service started with RADIUS on an ephemeral port."""
    hour_ago = time.time() - 3600
    service = Service.create(paths, issuer="Acme", actor="tester", clock=lambda: hour_ago)
    op = service.operator("tester")
    totp = {}
    for name in ("alice", "bob"):
        service.add_user(op, NewUser(name, name.title(), Role.AGENT), password=password(name))
        enrollment = service.begin_enrollment(op, name)
        service.confirm_enrollment(op, name, pyotp.TOTP(enrollment.secret).at(hour_ago))
        totp[name] = enrollment.secret
    service.add_client(op, "nas", ("127.0.0.1",), radius=True, **options)
    secret = service.radius_secret(op, "nas")
    service.close()
    return Radius(paths, start_service(paths, "--radius", "0"), secret, totp)


@pytest.fixture(autouse=True)
def real_password_cost(monkeypatch):
    """The service's process refuses hashes cheaper than the real cost: the store's are made so."""
    monkeypatch.setattr(crypto, "SCRYPT_N", REAL_SCRYPT_N)


@pytest.fixture
def radius(paths) -> Iterator[Radius]:
    served = serve_radius(paths)
    yield served
    served.served.stop()


def radclient(radius: Radius, attributes: str, *, secret: str | None = None, signed: bool = True,
              count: int = 1, dropped: bool = False) -> list[str]:  # fmt: skip
    """The answers radclient received ("Access-Accept", "Access-Reject"); none: dropped. A request
    expected to be answered is sent again after 3 s unanswered, up to 4 times (a NAS's way: the
    service answers a retransmission from its cache, so a busy machine cannot turn it into a
    second check); one expected `dropped` waits 1 s, once."""
    if signed:
        attributes += ",Message-Authenticator=0x00"  # radclient computes it
    wait, tries = ("1", "1") if dropped else ("3", "4")
    proc = subprocess.run(["radclient", "-t", wait, "-r", tries, "-c", str(count), "-x",
                           f"127.0.0.1:{radius.served.radius_port}", "auth", secret or radius.secret],
                          input=attributes, capture_output=True, text=True, timeout=60)  # fmt: skip
    answers = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("Received Access-")]
    assert answers or dropped, proc.stderr
    return answers


def verifies(paths: StorePaths) -> list[tuple]:
    return query(paths.db, "SELECT actor, target, outcome, detail FROM audit WHERE action IN ('verify', 'login') "
                           "ORDER BY id")[1]  # fmt: skip


def test_a_code_is_accepted_once_a_wrong_one_rejected(radius):
    code = pyotp.TOTP(radius.totp["alice"]).now()
    assert radclient(radius, f"User-Name=alice,User-Password={code}") == ["Access-Accept"]
    assert radclient(radius, f"User-Name=alice,User-Password={code}") == ["Access-Reject"]  # replayed
    assert radclient(radius, "User-Name=nobody.here,User-Password=123456") == ["Access-Reject"]
    assert [(a, t, o) for a, t, o, _ in verifies(radius.paths)] == [
        ("client:nas", "alice", "ok"), ("client:nas", "alice", "failed"), ("client:nas", None, "failed")]


def test_a_retransmission_gets_the_first_answer_again(radius):
    """The very same Access-Request sent twice, as a NAS does when an answer is lost: the code is
    checked once, and both get its Accept (not a Reject for a code now spent). Built with pyrad's
    client: radclient sends each copy with a new identifier, which makes it a new request."""
    from pyrad.client import Client
    from pyrad.dictionary import Dictionary

    from server.radius import DICTIONARY

    nas = Client("127.0.0.1", secret=radius.secret.encode(), dict=Dictionary(str(DICTIONARY)))
    request = nas.CreateAuthPacket(User_Name="bob")
    request["User-Password"] = request.PwCrypt(pyotp.TOTP(radius.totp["bob"]).now())
    request.add_message_authenticator()
    data = request.RequestPacket()
    answers = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        for _ in range(2):
            udp.sendto(data, ("127.0.0.1", radius.served.radius_port))
            raw = udp.recv(4096)
            reply = request.CreateReply(packet=raw)
            assert request.VerifyReply(reply, raw, enforce_ma=True)  # signed with the shared secret, for this request
            answers.append(reply.code)
    assert answers == [2, 2]  # Access-Accept, twice
    assert [o for _, _, o, _ in verifies(radius.paths)] == ["ok"]


def test_a_name_that_is_not_utf8_or_a_password_of_a_wrong_length_is_rejected(radius):
    """Signed requests whose attributes cannot be read get a Reject, not silence and a traceback."""
    from pyrad.client import Client
    from pyrad.dictionary import Dictionary

    from server.radius import DICTIONARY

    nas = Client("127.0.0.1", secret=radius.secret.encode(), dict=Dictionary(str(DICTIONARY)))
    code = pyotp.TOTP(radius.totp["alice"]).now()
    for name, hidden in ((b"al\xffice", None), (b"alice", b"x" * 17)):
        request = nas.CreateAuthPacket()
        request[1] = [name]  # User-Name, raw
        request[2] = [hidden if hidden is not None else request.PwCrypt(code)]
        request.add_message_authenticator()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            udp.sendto(request.RequestPacket(), ("127.0.0.1", radius.served.radius_port))
            raw = udp.recv(4096)
        assert request.CreateReply(packet=raw).code == 3  # Access-Reject
    assert "Traceback" not in radius.served.stop()


def test_a_wrong_secret_or_a_missing_message_authenticator_is_dropped_silently(radius):
    code = pyotp.TOTP(radius.totp["alice"]).now()
    assert radclient(radius, f"User-Name=alice,User-Password={code}", secret="not-the-secret", dropped=True) == []
    assert radclient(radius, f"User-Name=alice,User-Password={code}", signed=False, dropped=True) == []
    assert verifies(radius.paths) == []  # nothing reached the store
    assert radclient(radius, f"User-Name=alice,User-Password={code}") == ["Access-Accept"]


def test_a_password_and_code_client(paths):
    radius = serve_radius(paths, radius_password=True)
    try:
        code = pyotp.TOTP(radius.totp["alice"]).now()
        assert radclient(radius, f"User-Name=alice,User-Password={code}") == ["Access-Reject"]  # the code alone
        assert radclient(radius, f"User-Name=alice,User-Password=wrong{code}") == ["Access-Reject"]
        assert radclient(radius, f"User-Name=alice,User-Password={password('alice')}{code}") == ["Access-Accept"]
    finally:
        radius.served.stop()


def pamtester(radius: Radius, tmp_path, user: str, typed: str) -> subprocess.CompletedProcess:
    """`pamtester` -> Debian's pam_radius_auth -> the service, as sshd's PAM stack would ask. The
    PAM service file lives in a private /etc/pam.d (a mount namespace of this process's own, so
    the machine's stays untouched and no root is needed)."""
    pam_d, conf = tmp_path / "pam.d", tmp_path / "pam_radius_auth.conf"
    pam_d.mkdir(exist_ok=True)
    conf.write_text(f"127.0.0.1:{radius.served.radius_port} {radius.secret} 3\n")
    conf.chmod(0o600)
    (pam_d / "mfa-test").write_text(f"auth required pam_radius_auth.so conf={conf}\n")
    script = f"mount --bind {pam_d} /etc/pam.d && exec pamtester mfa-test {user} authenticate"
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], input=f"{typed}\n",
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_ssh_through_pam_radius_auth(paths, tmp_path):
    radius = serve_radius(paths, radius_unsigned=True)  # pam_radius_auth 2.0 signs no request
    try:
        code = pyotp.TOTP(radius.totp["alice"]).now()
        accepted = pamtester(radius, tmp_path, "alice", code)
        assert accepted.returncode == 0 and "successfully authenticated" in accepted.stdout, accepted.stderr
        replayed = pamtester(radius, tmp_path, "alice", code)
        assert replayed.returncode != 0 and "Authentication failure" in replayed.stderr
    finally:
        radius.served.stop()
    assert [(a, t, o) for a, t, o, _ in verifies(paths)] == [("client:nas", "alice", "ok"),
                                                            ("client:nas", "alice", "failed")]
