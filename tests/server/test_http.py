"""The verification service over real HTTP: `mfa-console serve` started as a process on an
ephemeral port, asked the way privacyIDEA's clients ask, with codes from pyotp (what a phone
computes from the secret). The HTTP side is the same whatever the store: the tests of what the
store decides (once, across services) run on both engines, the rest on SQLite."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest

from store.models import NewUser, PolicyMode, Role
from store.paths import StorePaths
from store.service import Service
from tests.support import Served, everything_stored, query, read_store, run_forked, start_service



@dataclass
class Answer:
    status: int
    body: dict
    headers: dict


def ask(url: str, path: str, *, key: str | None, data: dict | bytes | None = None, json_body: bool = False,
        content_type: str | None = None) -> Answer:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = None
    if isinstance(data, bytes):
        body, headers["Content-Type"] = data, content_type or "application/json"
    elif data is not None and json_body:
        body, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
    elif data is not None:
        body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url + path, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read()), dict(error.headers))


def check(served: Served, key: str, user: str, code: str, **kwargs) -> Answer:
    return ask(served.url, "/validate/check", key=key, data={"user": user, "pass": code}, **kwargs)


def verdict(answer: Answer) -> str:
    assert answer.status == 200 and answer.body["result"]["status"] is True, answer.body
    return answer.body["result"]["authentication"]


@dataclass
class Setup:
    paths: StorePaths
    secrets: dict[str, str]
    recovery: list[str]
    keys: dict[str, str]


@pytest.fixture
def setup(paths) -> Iterator[Setup]:
    """alice, carol and dave enrolled (an hour ago: any code of now is new to them), bob Pending;
    clients: app (from anywhere), bound (from 10.9.9.9 only), gone (revoked)."""
    hour_ago = time.time() - 3600
    service = Service.create(paths, issuer="Acme", actor="tester", clock=lambda: hour_ago)
    op = service.operator("tester")
    secrets, recovery = {}, []
    for name in ("alice", "bob", "carol", "dave"):
        service.add_user(op, NewUser(name, name.title(), Role.AGENT))
    for name in ("alice", "carol", "dave"):
        enrollment = service.begin_enrollment(op, name)
        confirmed = service.confirm_enrollment(op, name, pyotp.TOTP(enrollment.secret).at(hour_ago))
        secrets[name] = enrollment.secret
        recovery = list(confirmed.recovery_codes) if name == "dave" else recovery
    keys = {name: service.add_client(op, name, sources)[1] for name, sources in
            (("app", ()), ("bound", ("10.9.9.9",)), ("gone", ()))}  # fmt: skip
    service.revoke_client(op, "gone")
    service.close()
    yield Setup(paths, secrets, recovery, keys)


@pytest.fixture
def served(setup) -> Iterator[Served]:
    served = start_service(setup.paths, "--rate-source", "1000", "--rate-client", "1000")
    yield served
    served.stop()


def now_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def audit(paths: StorePaths) -> list[tuple]:
    return query(paths.db, "SELECT actor, action, target, outcome, detail FROM audit ORDER BY id")[1]


@pytest.mark.both_engines
def test_a_right_code_is_accepted_once_and_audited_under_the_clients_name(setup, served):
    code = now_code(setup.secrets["alice"])
    first = check(served, setup.keys["app"], "alice", code)
    assert verdict(first) == "ACCEPT" and first.body["result"]["value"] is True
    assert verdict(check(served, setup.keys["app"], "alice", code)) == "REJECT"  # replayed
    events = [e for e in audit(setup.paths) if e[1] == "verify"]
    assert [(e[0], e[2], e[3]) for e in events] == [("client:app", "alice", "ok"), ("client:app", "alice", "failed")]


def test_json_bodies_are_taken_like_forms(setup, served):
    code = now_code(setup.secrets["alice"])
    assert verdict(check(served, setup.keys["app"], "alice", code, json_body=True)) == "ACCEPT"


@pytest.mark.both_engines
def test_wrong_locked_and_unknown_get_one_answer(setup, served):
    key = setup.keys["app"]
    wrong = f"{(int(now_code(setup.secrets['carol'])) + 1) % 1_000_000:06d}"
    answers = [check(served, key, "carol", wrong) for _ in range(6)]  # the fifth locks, the sixth finds it locked
    answers.append(check(served, key, "carol", now_code(setup.secrets["carol"])))  # right, but locked
    answers.append(check(served, key, "nobody.here", "123456"))
    assert {json.dumps({k: v for k, v in a.body.items() if k != "time"}) for a in answers} == {
        json.dumps({k: v for k, v in answers[0].body.items() if k != "time"})
    }  # the same REJECT for all: the reason is the audit log's
    outcomes = [e[3] for e in audit(setup.paths) if e[1] == "verify"]
    assert outcomes == ["failed"] * 5 + ["locked", "locked", "failed"]


def test_a_recovery_code_is_accepted_where_a_code_is_once(setup, served):
    assert verdict(check(served, setup.keys["app"], "dave", setup.recovery[0])) == "ACCEPT"
    assert verdict(check(served, setup.keys["app"], "dave", setup.recovery[0])) == "REJECT"


def test_preauth_says_enroll_code_or_off_and_tells_no_one_who_exists(setup, served):
    key = setup.keys["app"]
    value = lambda user: ask(served.url, f"/validate/preauth?user={user}", key=key).body["result"]["value"]  # noqa: E731
    assert (value("bob"), value("alice"), value("nobody.here")) == ("enroll", "code", "code")
    assert verdict(check(served, key, "bob", "123456")) == "REJECT"  # Pending: no code to check
    service = Service(setup.paths)
    op = service.operator("tester")
    service.set_mode(op, PolicyMode.OPTIONAL)
    service.set_enabled(op, False)
    service.close()
    assert value("alice") == value("nobody.here") == "off"


@pytest.mark.parametrize("client, expected", [(None, 401), ("wrong", 403), ("gone", 403), ("bound", 403)])
def test_a_missing_wrong_revoked_or_misplaced_key_is_refused(setup, served, client, expected):
    key = {None: None, "wrong": "mfak_" + "x" * 43}.get(client, setup.keys.get(client))
    before = read_store(setup.paths.db)["users"]
    answer = check(served, key, "alice", now_code(setup.secrets["alice"]))
    assert answer.status == expected and answer.body["result"]["status"] is False
    assert read_store(setup.paths.db)["users"] == before  # the code was not even looked at
    if client is not None:
        assert audit(setup.paths)[-1][1:4] == ("client.refused", None, "refused")


@pytest.mark.parametrize("body, content_type, expected", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'{"user": "alice"}', "application/json", 400),
    (b'{"user": "alice", "pass": 123456}', "application/json", 400),
    (b"user=" + b"a" * 20_000 + b"&pass=1", "application/x-www-form-urlencoded", 413),
    pytest.param(b"[" * 4000 + b"]" * 4000, "application/json", 400, id="nested-deeper-than-the-recursion-limit"),
    (b"user=al\xffice&pass=123456", "application/x-www-form-urlencoded", 400),  # not UTF-8
])  # fmt: skip
def test_malformed_and_oversized_bodies_get_clear_errors_and_write_nothing(setup, served, body, content_type, expected):
    before = read_store(setup.paths.db)["users"], len(audit(setup.paths))
    answer = ask(served.url, "/validate/check", key=setup.keys["app"], data=body, content_type=content_type)
    assert answer.status == expected and answer.body["result"]["error"]["message"]
    assert (read_store(setup.paths.db)["users"], len(audit(setup.paths))) == before


def test_rate_limits_answer_429_with_retry_after(setup):
    served = start_service(setup.paths, "--rate-client", "2")
    try:
        answers = [check(served, setup.keys["app"], "nobody.here", "123456") for _ in range(6)]
    finally:
        served.stop()
    assert [a.status for a in answers][:4] == [200] * 4  # a burst of twice the rate
    assert answers[-1].status == 429 and int(answers[-1].headers["Retry-After"]) >= 1


def test_a_client_gone_mid_request_changes_nothing_half(setup, served):
    """A request cut off in its body never reaches the store; the service goes on answering."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /validate/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + setup.keys["app"].encode()
                    + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=ali")
    assert verdict(check(served, setup.keys["app"], "alice", now_code(setup.secrets["alice"]))) == "ACCEPT"
    assert [e[3] for e in audit(setup.paths) if e[1] == "verify"] == ["ok"]


def test_health(setup, served):
    answer = ask(served.url, "/healthz", key=None)
    assert answer.status == 200 and answer.body == {"status": "ok"}


@pytest.mark.both_engines
def test_two_services_on_one_store_accept_a_code_once(setup):
    """Two nodes, one store (SQLite or PostgreSQL): the same code sent to both at once."""
    nodes = [start_service(setup.paths, "--rate-source", "1000") for _ in range(2)]
    code, answers = now_code(setup.secrets["alice"]), []
    try:
        ask_node = lambda node: answers.append(verdict(check(node, setup.keys["app"], "alice", code)))  # noqa: E731
        threads = [threading.Thread(target=ask_node, args=(n,)) for n in nodes for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for node in nodes:
            node.stop()
    assert sorted(answers) == ["ACCEPT"] + ["REJECT"] * 9


@pytest.mark.both_engines
def test_sigterm_under_load_finishes_every_check_under_way(setup):
    served = start_service(setup.paths, "--rate-source", "1000", "--rate-client", "1000")
    results: list[int] = []

    def hammer() -> None:
        for _ in range(15):
            try:
                results.append(check(served, setup.keys["app"], "nobody.here", "123456").status)
            except (urllib.error.URLError, ConnectionError):
                return  # the service stopped listening: not an answer, not a check
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    err = served.stop()
    for t in threads:
        t.join()
    assert served.proc.returncode == 0 and "Traceback" not in err, err
    answered = sum(1 for status in results if status == 200)
    checked = [e for e in audit(setup.paths) if e[1] == "verify"]
    assert answered > 0 and len(checked) == answered  # every answered check recorded, none half-done


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files (made with cryptography, as a CA would)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    key_file.chmod(0o600)
    return str(cert_file), str(key_file)


def test_a_tls_key_others_could_read_or_swap_is_refused(tmp_path):
    cert, key = self_signed(tmp_path)
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo, 0o600)

    def serve(key_file) -> str:
        proc = run_forked(["--db", str(tmp_path / "store.db"), "serve", "--listen", "127.0.0.1:0", "--tls-cert", cert,
                           "--tls-key", str(key_file)], env=dict(os.environ), cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        return proc.stderr

    os.chmod(key, 0o644)
    assert "is open to other users (mode 0644)" in serve(key)
    os.chmod(key, 0o620)
    assert "is open to other users (mode 0620)" in serve(key)
    assert "is not a regular file" in serve(fifo)  # refused, not waited on
    assert "No such file" in serve(tmp_path / "missing.pem")


def test_https_with_a_certificate_and_a_unix_socket(setup, tmp_path):
    import http.client
    import ssl

    cert, key = self_signed(tmp_path)
    served = start_service(setup.paths, "--tls-cert", cert, "--tls-key", key)
    try:
        assert served.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=cert)
        host, port = served.url.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=trusted, timeout=30)
        headers = {"Authorization": f"Bearer {setup.keys['app']}", "Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/validate/check", "user=alice&pass=" + now_code(setup.secrets["alice"]), headers)
        assert json.loads(conn.getresponse().read())["result"]["authentication"] == "ACCEPT"
    finally:
        served.stop()

    path = tmp_path / "verify.sock"
    served = start_service(setup.paths, "--socket", str(path))
    try:
        assert served.url == f"http://{path}"
        with socket.socket(socket.AF_UNIX) as unix:
            unix.connect(str(path))
            unix.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert unix.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        served.stop()


def test_a_hostile_name_gets_the_same_reject_and_is_written_nowhere(setup, served):
    for name in ("\x1b[31mzebra-root\x1b[0m", "[bold]zebra-admin[/bold]", "zebra" * 1000, "zebra\r\nforged line"):
        assert verdict(check(served, setup.keys["app"], name, "123456")) == "REJECT"
    assert b"zebra" not in everything_stored(setup.paths)  # no name that is no user's is written down
    assert all(e[2] is None and e[4].startswith("unknown name #") for e in audit(setup.paths) if e[1] == "verify")
