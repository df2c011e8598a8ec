"""store.totp against RFC 6238, and the otpauth URI an enrollment hands out."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from store import totp
from tests.support import code

# RFC 6238 Appendix B: the seed is ASCII "1234567890" repeated to the digest's key length.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# (time, T in hex, {mode: 8-digit TOTP})
RFC6238 = [
    (59, 0x1, {"SHA1": "94287082", "SHA256": "46119246", "SHA512": "90693936"}),
    (1111111109, 0x23523EC, {"SHA1": "07081804", "SHA256": "68084774", "SHA512": "25091201"}),
    (1111111111, 0x23523ED, {"SHA1": "14050471", "SHA256": "67062674", "SHA512": "99943326"}),
    (1234567890, 0x273EF07, {"SHA1": "89005924", "SHA256": "91819424", "SHA512": "93441116"}),
    (2000000000, 0x3F940AA, {"SHA1": "69279037", "SHA256": "90698825", "SHA512": "38618901"}),
    (20000000000, 0x27BC86AA, {"SHA1": "65353130", "SHA256": "77737706", "SHA512": "47863826"}),
]
VECTORS = [
    pytest.param(t, step, mode, expected[mode], id=f"{t}-{mode}")
    for t, step, expected in RFC6238
    for mode in ("SHA1", "SHA256", "SHA512")
]
BASE32 = re.compile(r"[A-Z2-7]+")


def test_rfc_seeds_have_the_digest_lengths():
    assert {mode: len(seed) for mode, seed in SEEDS.items()} == {"SHA1": 20, "SHA256": 32, "SHA512": 64}


@pytest.mark.parametrize("unix_time, step, mode, expected", VECTORS)
def test_rfc6238_appendix_b(unix_time, step, mode, expected):
    secret = totp.seed_to_base32(SEEDS[mode])
    assert totp.time_step(unix_time) == step
    assert totp.code_at_step(secret, step, digits=8, algorithm=mode) == expected


@pytest.mark.parametrize("seed", SEEDS.values(), ids=SEEDS.keys())
def test_seed_to_base32_is_unpadded_and_lossless(seed):
    encoded = totp.seed_to_base32(seed)
    assert "=" not in encoded and BASE32.fullmatch(encoded)
    assert base64.b32decode(encoded + "=" * (-len(encoded) % 8)) == seed


def test_time_step_boundaries():
    assert totp.time_step(0) == 0
    assert totp.time_step(29.999) == 0
    assert totp.time_step(30) == 1
    assert totp.time_step(59, period=60) == 0
    assert totp.time_step(60, period=60) == 1


def test_new_secret_is_160_bits_of_unpadded_base32():
    secrets = {totp.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(secret) == 32 and BASE32.fullmatch(secret)
        assert len(base64.b32decode(secret)) == 20


def test_default_code_is_six_digits_sha1():
    secret = totp.seed_to_base32(SEEDS["SHA1"])
    # RFC 4226 Appendix D (HOTP, counter 1) is the 6-digit truncation of the same HMAC.
    assert totp.code_at_step(secret, 1) == "287082"


class TestMatchingStep:
    SECRET = totp.seed_to_base32(SEEDS["SHA1"])
    NOW = 1_111_111_111.0  # step 0x23523ED, 1 s into it

    def at(self, offset: int) -> str:
        return totp.code_at_step(self.SECRET, totp.time_step(self.NOW) + offset)

    @pytest.mark.parametrize("offset", [-1, 0, 1])
    def test_accepts_one_step_either_side(self, offset):
        assert totp.matching_step(self.SECRET, self.at(offset), self.NOW) == totp.time_step(self.NOW) + offset

    @pytest.mark.parametrize("offset", [-2, 2, -3, 3])
    def test_refuses_two_steps_away(self, offset):
        code_ = self.at(offset)
        assert code_ not in {self.at(o) for o in (-1, 0, 1)}  # else the case says nothing
        assert totp.matching_step(self.SECRET, code_, self.NOW) is None

    def test_window_zero_is_the_current_step_only(self):
        assert totp.matching_step(self.SECRET, self.at(0), self.NOW, window=0) == totp.time_step(self.NOW)
        assert totp.matching_step(self.SECRET, self.at(1), self.NOW, window=0) is None

    def test_wrong_and_malformed_codes_are_refused(self):
        window = {self.at(o) for o in (-1, 0, 1)}
        wrong = next(c for c in ("000000", "111111", "222222") if c not in window)
        assert totp.matching_step(self.SECRET, wrong, self.NOW) is None
        assert totp.matching_step(self.SECRET, self.at(0)[:5], self.NOW) is None
        assert totp.matching_step(self.SECRET, self.at(0) + "0", self.NOW) is None
        assert totp.matching_step(totp.seed_to_base32(SEEDS["SHA256"]), self.at(0), self.NOW) is None

    def test_every_candidate_is_computed(self, monkeypatch):
        """No early exit: the step that matches does not change how much work is done."""
        calls = []
        real = pyotp.TOTP.generate_otp
        base = totp.time_step(self.NOW)
        for offset in (-1, 0, 1):
            code_now = totp.code_at_step(self.SECRET, base + offset)
            with monkeypatch.context() as patch:
                patch.setattr(pyotp.TOTP, "generate_otp", lambda self, step: calls.append(step) or real(self, step))
                calls.clear()
                assert totp.matching_step(self.SECRET, code_now, self.NOW) == base + offset
            assert calls == [base - 1, base, base + 1]

    def test_agrees_with_an_independent_authenticator(self, clock):
        secret = totp.new_secret()
        assert totp.matching_step(secret, code(secret, clock), clock()) == totp.time_step(clock())


def test_normalize_code_drops_spaces():
    assert totp.normalize_code(" 123 456\t") == "123456"


def test_group_secret():
    assert totp.group_secret("ABCDEFGHIJ") == "ABCD EFGH IJ"


# -- the otpauth URI, as begin_enrollment hands it out ---------------------------------------


def parse_otpauth(uri: str) -> tuple[str, str, dict[str, str]]:
    """(issuer from the label, account from the label, query parameters), all URL-decoded."""
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    label = unquote(parts.path.removeprefix("/"))
    issuer, _, account = label.partition(":")
    query = parse_qs(parts.query, strict_parsing=True)
    assert all(len(v) == 1 for v in query.values()), "no parameter repeated"
    return issuer, account, {k: v[0] for k, v in query.items()}


def test_enrollment_uri(service):
    op = service.operator("tester")
    enrollment = service.begin_enrollment(op, "alice")
    issuer, account, params = parse_otpauth(enrollment.uri)
    assert (issuer, account) == ("Acme Contact Center", "alice")
    assert params["issuer"] == issuer == enrollment.issuer
    secret = params["secret"]
    assert secret == enrollment.secret
    assert "=" not in secret and len(secret) == 32 and BASE32.fullmatch(secret)
    assert len(base64.b32decode(secret)) == 20
    assert set(params) == {"secret", "issuer"}  # 6 digits / 30 s / SHA1 are the defaults
    assert " " not in enrollment.uri and "+" not in enrollment.uri
    assert enrollment.label == "Acme Contact Center:alice"
    assert enrollment.grouped_secret.replace(" ", "") == secret


def test_enrollment_uri_round_trips_spaces_at_and_non_ascii(service):
    from store.models import NewUser, Role

    op = service.operator("tester")
    issuer = "Café Zürich @ 客服 & Co?#"
    service.set_issuer(op, issuer)
    service.add_user(op, NewUser("marie.dupont@acme.example", "Marie Dupont", Role.AGENT))
    enrollment = service.begin_enrollment(op, "marie.dupont@acme.example")
    assert enrollment.uri.isascii()
    got_issuer, account, params = parse_otpauth(enrollment.uri)
    assert got_issuer == params["issuer"] == issuer
    assert account == "marie.dupont@acme.example"
    assert params["secret"] == enrollment.secret
