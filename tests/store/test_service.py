"""The service's rules: enrollment, sign-in, replay, lockout, roles, policy, audit, import.

Every flow goes through the public API (login, login_code, begin/confirm_enrollment...) with
conftest's fake clock; codes are computed by pyotp from the secret the Enrollment hands out.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest

from store.demo import SeedUser
from store.errors import ImportRejected, InvalidInput, PermissionDenied, PolicyError, UnknownUser
from store.models import AuthResult, NewUser, Outcome, PolicyMode, Role, Scope, Session, Status
from store.service import Service
from tests.support import (
    PERIOD,
    T0,
    code,
    enroll,
    everything_stored,
    first_sign_in,
    last_json_line,
    password,
    query,
    read_store,
    run_python,
    sign_in_again,
    store_state,
    users_csv,
    wrong_code,
)

ON_BOTH_ENGINES = True

RECOVERY = re.compile(r"[a-hj-km-np-z2-9]{5}-[a-hj-km-np-z2-9]{5}")


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@pytest.fixture
def op(service) -> Session:
    return service.operator("tester")


@pytest.fixture
def alice_secret(service, op, clock) -> str:
    """alice (an agent) enrolled by the operator; the clock is one step past the confirming code."""
    secret = enroll(service, op, "alice", clock)
    clock.advance(PERIOD)
    return secret


def status(service, op, username) -> Status:
    return service.get_user(op, username).status


# -- enrollment ------------------------------------------------------------------------------


class TestEnrollment:
    def test_right_code_activates_with_ten_distinct_recovery_codes(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        assert (enrollment.username, enrollment.issuer) == ("alice", "Acme Contact Center")
        assert status(service, op, "alice") is Status.PENDING  # begun is not enrolled
        result = service.confirm_enrollment(op, "alice", code(enrollment.secret, clock))
        assert result.outcome is Outcome.OK and result.ok
        assert len(result.recovery_codes) == 10
        assert len(set(result.recovery_codes)) == 10
        assert all(RECOVERY.fullmatch(c) for c in result.recovery_codes), result.recovery_codes
        assert result.session is None  # the operator was already signed in
        user = service.get_user(op, "alice")
        assert user.status is Status.ACTIVATED
        assert user.activated_at == at(clock.now)
        assert user.recovery_codes_left == 10
        assert user.pending_since is None
        with pytest.raises(PolicyError, match="no enrollment is under way"):  # the pending secret is used up
            service.confirm_enrollment(op, "alice", code(enrollment.secret, clock))

    def test_code_typed_with_a_space_is_accepted(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        typed = code(enrollment.secret, clock)
        assert service.confirm_enrollment(op, "alice", f"{typed[:3]} {typed[3:]}").ok

    def test_activated_secret_verifies_afterwards(self, service, alice_secret, clock):
        assert service.verify("alice", code(alice_secret, clock)).outcome is Outcome.OK

    def test_wrong_code_keeps_pending_and_the_pending_secret(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        result = service.confirm_enrollment(op, "alice", wrong_code(enrollment.secret, clock))
        assert result.outcome is Outcome.INVALID and not result.recovery_codes
        user = service.get_user(op, "alice")
        assert user.status is Status.PENDING and user.failures == 1
        assert service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).ok

    @pytest.mark.parametrize("typed", ["", "abcdef", "12345", "1234567", "١٢٣٤٥٦"])
    def test_malformed_code_is_refused(self, service, op, typed):
        service.begin_enrollment(op, "alice")
        assert service.confirm_enrollment(op, "alice", typed).outcome is Outcome.INVALID
        assert status(service, op, "alice") is Status.PENDING

    def test_abandoned_enrollment_leaves_pending_and_its_secret_is_not_active(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        clock.advance(3600)
        user = service.get_user(op, "alice")
        assert user.status is Status.PENDING and user.pending_since == at(T0)
        assert service.verify("alice", code(enrollment.secret, clock)).outcome is Outcome.NOT_ENROLLED
        assert service.login("alice", password("alice")).outcome is Outcome.ENROLLMENT_REQUIRED

    def test_a_new_begin_replaces_the_old_secret(self, service, op, clock):
        old = service.begin_enrollment(op, "alice")
        new = service.begin_enrollment(op, "alice")
        assert old.secret != new.secret
        assert service.confirm_enrollment(op, "alice", code(old.secret, clock)).outcome is Outcome.INVALID
        assert status(service, op, "alice") is Status.PENDING
        assert service.confirm_enrollment(op, "alice", code(new.secret, clock)).ok

    def test_cancel_drops_the_pending_secret(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        service.cancel_enrollment(op, "alice")
        with pytest.raises(PolicyError, match="no enrollment is under way"):
            service.confirm_enrollment(op, "alice", code(enrollment.secret, clock))
        assert status(service, op, "alice") is Status.PENDING
        assert [e.action for e in service.audit(op, user="alice")][:1] == ["enroll.cancel"]

    def test_confirm_without_begin_is_refused(self, service, op):
        with pytest.raises(PolicyError, match="begin one first"):
            service.confirm_enrollment(op, "alice", "123456")

    def test_unknown_user(self, service, op):
        with pytest.raises(UnknownUser):
            service.begin_enrollment(op, "nobody")

    def test_deactivated_user_cannot_be_enrolled(self, service, op):
        service.set_active(op, "alice", False)
        with pytest.raises(PolicyError, match="deactivated"):
            service.begin_enrollment(op, "alice")

    def test_confirming_code_cannot_be_replayed_to_log_in(self, service, clock):
        challenge = service.login("alice", password("alice"))
        enrollment = service.begin_enrollment(challenge.session, "alice")
        typed = code(enrollment.secret, clock)
        assert service.confirm_enrollment(challenge.session, "alice", typed).ok
        second = service.login("alice", password("alice"))
        assert second.outcome is Outcome.CODE_REQUIRED
        assert service.login_code(second.session, typed).outcome is Outcome.INVALID
        assert service.verify("alice", typed).outcome is Outcome.INVALID
        clock.advance(PERIOD)
        assert service.login_code(second.session, code(enrollment.secret, clock)).ok

    def test_re_enrollment_keeps_the_old_secret_until_confirmed(self, service, op, alice_secret, clock):
        new = service.begin_enrollment(op, "alice")
        assert status(service, op, "alice") is Status.ACTIVATED
        assert service.verify("alice", code(alice_secret, clock)).ok  # old phone still works
        clock.advance(PERIOD)
        assert service.confirm_enrollment(op, "alice", code(new.secret, clock)).ok
        clock.advance(PERIOD)
        assert service.verify("alice", code(alice_secret, clock)).outcome is Outcome.INVALID
        assert service.verify("alice", code(new.secret, clock)).ok

    def test_reset_makes_the_user_pending_and_kills_secret_and_recovery_codes(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        codes = service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).recovery_codes
        clock.advance(PERIOD)
        user = service.reset_2fa(op, "alice")
        assert user.status is Status.PENDING and user.recovery_codes_left == 0 and user.pending_since == at(clock.now)
        assert service.verify("alice", code(enrollment.secret, clock)).outcome is Outcome.NOT_ENROLLED
        assert service.verify("alice", codes[0]).outcome is Outcome.NOT_ENROLLED
        assert service.login("alice", password("alice")).outcome is Outcome.ENROLLMENT_REQUIRED

    def test_a_pending_user_has_nothing_to_reset_but_an_enrollment_begun_is_cancelled(self, service, paths, op, clock):
        since = service.get_user(op, "alice").pending_since
        before = store_state(paths.db)
        with pytest.raises(PolicyError, match="no 2FA to reset"):
            service.reset_2fa(op, "alice")
        assert store_state(paths.db) == before  # nothing written: their days Pending go on counting
        begun = service.begin_enrollment(op, "alice")
        clock.advance(PERIOD)
        user = service.reset_2fa(op, "alice")
        assert user.status is Status.PENDING and user.pending_since == since
        with pytest.raises(PolicyError, match="no enrollment is under way"):  # its key is dead
            service.confirm_enrollment(op, "alice", code(begun.secret, clock))
        assert service.audit(op, action="2fa.reset")[0].detail == "an enrollment begun, cancelled"


# -- sign-in ---------------------------------------------------------------------------------


class TestLogin:
    def test_unknown_user_wrong_password_and_deactivated_get_one_answer(self, service, op):
        service.set_active(op, "bob", False)
        unknown = service.login("nobody", "whatever-password")
        wrong = service.login("alice", "wrong-password")
        deactivated = service.login("bob", password("bob"))  # the right password
        assert unknown == wrong == deactivated == AuthResult(Outcome.INVALID)
        assert unknown.session is None and not unknown.ok

    def test_a_series_of_attempts_gets_the_same_answers_for_an_unknown_name(self, service, paths, clock):
        """A known name is locked after five failures: so is an unknown one, or the answers
        would tell which names exist. The unknown name is written nowhere."""
        answers = {}
        for name in ("alice", "nobody.there"):
            answers[name] = []
            for _ in range(6):
                answers[name].append(service.login(name, "wrong-password").outcome)
                clock.advance(1)
        assert answers["alice"] == answers["nobody.there"] == [Outcome.INVALID] * 4 + [Outcome.LOCKED] * 2
        clock.advance(5 * 60)  # the lock has run out for both
        assert service.login("nobody.there", "wrong-password").outcome is Outcome.INVALID
        assert service.login("alice", "wrong-password").outcome is Outcome.INVALID
        service.close()
        assert b"nobody" not in everything_stored(paths)

    def test_username_is_case_insensitive_and_trimmed(self, service):
        result = service.login("  ALICE ", password("alice"))
        assert result.outcome is Outcome.ENROLLMENT_REQUIRED
        assert result.session.username == "alice"

    def test_pending_user_gets_an_enroll_session_that_only_enrolls_itself(self, service, op, clock):
        result = service.login("alice", password("alice"))
        assert result.outcome is Outcome.ENROLLMENT_REQUIRED
        enroll_session = result.session
        assert enroll_session.scope is Scope.ENROLL and enroll_session.role is Role.AGENT
        with pytest.raises(PermissionDenied, match="finish signing in"):
            service.get_user(enroll_session, "alice")
        with pytest.raises(PermissionDenied):
            service.begin_enrollment(enroll_session, "bob")
        enrollment = service.begin_enrollment(enroll_session, "alice")
        confirmed = service.confirm_enrollment(enroll_session, "alice", code(enrollment.secret, clock))
        assert confirmed.ok and confirmed.session.scope is Scope.FULL
        assert confirmed.session.username == "alice"
        assert service.get_user(confirmed.session, "alice").last_login_at == at(clock.now)
        with pytest.raises(PermissionDenied):  # the enroll session is spent
            service.begin_enrollment(enroll_session, "alice")
        assert status(service, op, "bob") is Status.PENDING

    def test_a_pending_admins_enroll_session_cannot_enroll_someone_else(self, service, op, clock):
        """Password only: no taking over another user's second factor before finishing one's own."""
        enroll_session = service.login("ada", password("ada")).session
        assert enroll_session.scope is Scope.ENROLL and enroll_session.role is Role.ADMIN
        with pytest.raises(PermissionDenied):
            service.begin_enrollment(enroll_session, "bob")
        pending = service.begin_enrollment(op, "bob")
        with pytest.raises(PermissionDenied):
            service.confirm_enrollment(enroll_session, "bob", code(pending.secret, clock))
        with pytest.raises(PermissionDenied):
            service.cancel_enrollment(enroll_session, "bob")
        assert status(service, op, "bob") is Status.PENDING
        assert service.confirm_enrollment(op, "bob", code(pending.secret, clock)).ok  # still under way

    def test_enroll_session_expires(self, service, clock):
        enroll_session = service.login("alice", password("alice")).session
        clock.advance(1801)
        with pytest.raises(PermissionDenied, match="too long"):
            service.begin_enrollment(enroll_session, "alice")

    def test_activated_user_needs_the_code(self, service, op, alice_secret, clock):
        result = service.login("alice", password("alice"))
        assert result.outcome is Outcome.CODE_REQUIRED
        challenge = result.session
        assert challenge.scope is Scope.CODE
        with pytest.raises(PermissionDenied, match="finish signing in"):
            service.get_user(challenge, "alice")
        with pytest.raises(PermissionDenied):
            service.begin_enrollment(challenge, "alice")  # no re-enrolling on a password alone
        done = service.login_code(challenge, code(alice_secret, clock))
        assert done.outcome is Outcome.OK and not done.used_recovery_code
        assert done.session.scope is Scope.FULL and done.session.username == "alice"
        user = service.get_user(done.session, "alice")
        assert user.last_login_at == at(clock.now) and user.failures == 0
        with pytest.raises(PermissionDenied):  # the challenge is spent
            service.login_code(challenge, code(alice_secret, clock, 1))

    def test_wrong_code_leaves_the_challenge_open(self, service, alice_secret, clock):
        challenge = service.login("alice", password("alice")).session
        assert service.login_code(challenge, wrong_code(alice_secret, clock)).outcome is Outcome.INVALID
        assert service.login_code(challenge, code(alice_secret, clock)).ok

    def test_code_challenge_expires(self, service, alice_secret, clock):
        challenge = service.login("alice", password("alice")).session
        clock.advance(301)
        with pytest.raises(PermissionDenied, match="too long"):
            service.login_code(challenge, code(alice_secret, clock))

    def test_full_session_is_not_a_code_challenge(self, service, op, alice_secret, clock):
        with pytest.raises(PermissionDenied):
            service.login_code(op, code(alice_secret, clock))

    def test_recovery_code_works_once(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        codes = service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).recovery_codes
        first = service.login("alice", password("alice"))
        done = service.login_code(first.session, codes[3])
        assert done.outcome is Outcome.OK and done.used_recovery_code and done.recovery_codes_left == 9
        assert done.session.scope is Scope.FULL
        assert service.get_user(op, "alice").recovery_codes_left == 9
        again = service.login("alice", password("alice"))
        assert service.login_code(again.session, codes[3]).outcome is Outcome.INVALID
        assert service.get_user(op, "alice").recovery_codes_left == 9

    def test_recovery_code_typed_without_dash_in_capitals(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        codes = service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).recovery_codes
        result = service.verify("alice", codes[0].replace("-", "").upper())
        assert result.ok and result.recovery_codes_left == 9
        assert service.verify("alice", codes[0]).outcome is Outcome.INVALID

    def test_recovery_codes_of_another_user_are_refused(self, service, op, clock):
        a = service.begin_enrollment(op, "alice")
        b = service.begin_enrollment(op, "bob")
        service.confirm_enrollment(op, "alice", code(a.secret, clock))
        bob_codes = service.confirm_enrollment(op, "bob", code(b.secret, clock)).recovery_codes
        assert service.verify("alice", bob_codes[0]).outcome is Outcome.INVALID
        assert service.get_user(op, "alice").recovery_codes_left == 10

    def test_two_factor_disabled_password_alone_signs_in(self, service, op, alice_secret, clock):
        service.set_mode(op, PolicyMode.OPTIONAL)
        service.set_enabled(op, False)
        for name in ("alice", "bob"):  # Activated and Pending alike
            result = service.login(name, password(name))
            assert result.outcome is Outcome.OK
            assert result.session.scope is Scope.FULL
            assert service.get_user(result.session, name).last_login_at == at(clock.now)
        assert service.login("alice", "wrong-password").outcome is Outcome.INVALID

    def test_an_enrolled_user_signs_in_again_with_each_new_code(self, service, clock):
        first, secret = first_sign_in(service, clock, "sam")
        again = sign_in_again(service, clock, "sam", secret)
        third = sign_in_again(service, clock, "sam", secret)
        assert len({first.token, again.token, third.token}) == 3
        assert all(service.list_users(s) for s in (first, again, third))  # each session is valid

    def test_logout_ends_the_session(self, service, clock):
        session, _ = first_sign_in(service, clock, "sam")
        service.list_users(session)
        service.logout(session)
        with pytest.raises(PermissionDenied, match="not signed in"):
            service.list_users(session)


# -- replay ----------------------------------------------------------------------------------


class TestReplay:
    def test_a_code_is_accepted_once(self, service, alice_secret, clock):
        typed = code(alice_secret, clock)
        assert service.verify("alice", typed).ok
        assert service.verify("alice", typed).outcome is Outcome.INVALID
        challenge = service.login("alice", password("alice")).session
        assert service.login_code(challenge, typed).outcome is Outcome.INVALID

    def test_an_older_step_is_refused_after_a_newer_one(self, service, alice_secret, clock):
        current, ahead = code(alice_secret, clock), code(alice_secret, clock, 1)
        assert current != ahead
        assert service.verify("alice", ahead).ok  # the phone is a step ahead: in the window
        assert service.verify("alice", current).outcome is Outcome.INVALID
        clock.advance(PERIOD)
        assert service.verify("alice", code(alice_secret, clock, -1)).outcome is Outcome.INVALID
        assert service.verify("alice", code(alice_secret, clock, 1)).ok

    def test_across_service_instances(self, service, paths, alice_secret, clock):
        other = Service(paths, clock=clock)
        try:
            typed = code(alice_secret, clock)
            assert other.verify("alice", typed).ok
            assert service.verify("alice", typed).outcome is Outcome.INVALID
            clock.advance(PERIOD)
            typed = code(alice_secret, clock)
            assert service.verify("alice", typed).ok
            assert other.verify("alice", typed).outcome is Outcome.INVALID
        finally:
            other.close()

    def test_across_processes(self, service, paths, alice_secret, clock):
        script = """
import json, sys
from pathlib import Path
from store.paths import resolve
from store.service import Service
db, key, now, typed = sys.argv[1:]
service = Service(resolve(db, key), clock=lambda: float(now))
print(json.dumps(service.verify("alice", typed).outcome.value))
"""
        typed = code(alice_secret, clock)
        assert service.verify("alice", typed).ok
        other = run_python(script, paths.db, paths.key, clock.now, typed)
        assert last_json_line(other) == "invalid"
        clock.advance(PERIOD)
        typed = code(alice_secret, clock)
        assert last_json_line(run_python(script, paths.db, paths.key, clock.now, typed)) == "ok"
        assert service.verify("alice", typed).outcome is Outcome.INVALID


# -- lockout ---------------------------------------------------------------------------------


def fail_five_times(service, username, secret, clock):
    """Five wrong codes; returns the outcomes."""
    return [service.verify(username, wrong_code(secret, clock)) for _ in range(5)]


class TestLockout:
    def test_five_failures_lock_for_five_minutes(self, service, op, alice_secret, clock):
        results = fail_five_times(service, "alice", alice_secret, clock)
        assert [r.outcome for r in results] == [Outcome.INVALID] * 4 + [Outcome.LOCKED]
        assert results[-1].locked_until == at(clock.now + 300)
        assert service.get_user(op, "alice").locked_until == at(clock.now + 300)
        lock_events = service.audit(op, action="lock")
        assert [(e.target, e.outcome) for e in lock_events] == [("alice", "locked")]

    def test_while_locked_even_the_right_code_and_password_are_refused(self, service, alice_secret, clock):
        early = service.login("alice", password("alice")).session  # a challenge opened before the lock
        fail_five_times(service, "alice", alice_secret, clock)
        clock.advance(299)
        locked = service.verify("alice", code(alice_secret, clock))
        assert locked.outcome is Outcome.LOCKED and locked.locked_until == at(clock.now + 1)
        assert service.login_code(early, code(alice_secret, clock)).outcome is Outcome.LOCKED
        with pytest.raises(PermissionDenied):  # a locked-out challenge is dropped
            service.login_code(early, code(alice_secret, clock))
        assert service.login("alice", password("alice")).outcome is Outcome.LOCKED
        clock.advance(1)
        assert service.verify("alice", code(alice_secret, clock)).ok

    def test_each_further_lock_doubles_up_to_an_hour(self, service, alice_secret, clock):
        minutes = []
        for _ in range(7):
            result = fail_five_times(service, "alice", alice_secret, clock)[-1]
            assert result.outcome is Outcome.LOCKED
            minutes.append((result.locked_until - at(clock.now)) / timedelta(minutes=1))
            clock.advance((result.locked_until - at(clock.now)).total_seconds())
        assert minutes == [5, 10, 20, 40, 60, 60, 60]

    def test_a_success_resets_the_count(self, service, op, alice_secret, clock):
        for _ in range(4):
            service.verify("alice", wrong_code(alice_secret, clock))
        assert service.get_user(op, "alice").failures == 4
        assert service.verify("alice", code(alice_secret, clock)).ok
        assert service.get_user(op, "alice").failures == 0
        for _ in range(4):
            assert service.verify("alice", wrong_code(alice_secret, clock)).outcome is Outcome.INVALID

    def test_a_success_resets_the_doubling(self, service, alice_secret, clock):
        fail_five_times(service, "alice", alice_secret, clock)
        clock.advance(300)
        assert service.verify("alice", code(alice_secret, clock)).ok
        result = fail_five_times(service, "alice", alice_secret, clock)[-1]
        assert result.locked_until == at(clock.now + 300)

    def test_the_lock_is_persisted(self, service, paths, alice_secret, clock):
        fail_five_times(service, "alice", alice_secret, clock)
        service.close()
        fresh = Service(paths, clock=clock)
        try:
            assert fresh.verify("alice", code(alice_secret, clock)).outcome is Outcome.LOCKED
            assert fresh.login("alice", password("alice")).outcome is Outcome.LOCKED
        finally:
            fresh.close()

    def test_admin_unlock_lifts_it(self, service, op, alice_secret, clock):
        fail_five_times(service, "alice", alice_secret, clock)
        clock.advance(300)
        second = fail_five_times(service, "alice", alice_secret, clock)[-1]
        assert second.locked_until == at(clock.now + 600)
        user = service.unlock(op, "alice")
        assert user.locked_until is None and user.failures == 0
        assert service.verify("alice", code(alice_secret, clock)).ok
        assert fail_five_times(service, "alice", alice_secret, clock)[-1].locked_until == at(clock.now + 300)
        assert [e.target for e in service.audit(op, action="user.unlock")] == ["alice"]

    def test_unlocking_a_user_who_is_not_locked_says_so_and_records_nothing(self, service, op):
        with pytest.raises(PolicyError, match="bob is not locked"):
            service.unlock(op, "bob")
        assert service.audit(op, action="user.unlock") == []
        service.login("bob", "wrong-password")  # one failure counted: unlock forgets it
        assert service.unlock(op, "bob").failures == 0

    def test_wrong_passwords_count(self, service, op):
        outcomes = [service.login("bob", "wrong-password").outcome for _ in range(5)]
        assert outcomes == [Outcome.INVALID] * 4 + [Outcome.LOCKED]
        assert service.login("bob", password("bob")).outcome is Outcome.LOCKED
        assert service.get_user(op, "bob").locked_until is not None

    def test_password_and_code_failures_add_up(self, service, alice_secret, clock):
        for _ in range(3):
            assert service.login("alice", "wrong-password").outcome is Outcome.INVALID
        challenge = service.login("alice", password("alice")).session
        assert service.login_code(challenge, wrong_code(alice_secret, clock)).outcome is Outcome.INVALID
        assert service.login_code(challenge, wrong_code(alice_secret, clock)).outcome is Outcome.LOCKED

    def test_wrong_enrollment_codes_count(self, service, op, clock):
        enrollment = service.begin_enrollment(op, "alice")
        wrong = wrong_code(enrollment.secret, clock)
        outcomes = [service.confirm_enrollment(op, "alice", wrong).outcome for _ in range(5)]
        assert outcomes[-1] is Outcome.LOCKED
        assert service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).outcome is Outcome.LOCKED

    def test_user_list_shows_the_lock_end_once_it_has_passed(self, service, op, alice_secret, clock):
        fail_five_times(service, "alice", alice_secret, clock)
        alice = {u.username: u for u in service.list_users(op)}["alice"]
        assert alice.locked_until == at(clock.now + 300)
        clock.advance(300)  # nothing in the store changed, only time passed
        alice = {u.username: u for u in service.list_users(op)}["alice"]
        assert alice.locked_until is None


# -- roles -----------------------------------------------------------------------------------


@pytest.fixture
def staged(service, op, clock):
    """A state in which every admin call below changes the store when an admin makes it.

    2FA is optional and on; alice has an enrollment under way (with one wrong try); the rest
    are Pending. Returns the pending secret of alice.
    """
    service.set_mode(op, PolicyMode.OPTIONAL)
    pending = service.begin_enrollment(op, "alice")
    service.confirm_enrollment(op, "alice", wrong_code(pending.secret, clock))
    return pending.secret


def admin_calls(clock, alice_pending_secret):
    """Every administration call, in an order in which each one changes the store for an admin."""
    return [
        ("add_user", lambda s, a: s.add_user(a, NewUser("eve", "Eve", Role.ADMIN))),
        ("add_user+password", lambda s, a: s.add_user(a, NewUser("mal", "Mal", Role.ADMIN), password="mal-password")),
        ("import_users", lambda s, a: s.import_users(a, users_csv(["frank"], role="admin"))),
        ("edit_user", lambda s, a: s.edit_user(a, "sam", role=Role.ADMIN)),
        ("set_password", lambda s, a: s.set_password(a, "ada", "taken-over-password")),
        ("set_active", lambda s, a: s.set_active(a, "bob", False)),
        ("unlock", lambda s, a: s.unlock(a, "alice")),
        ("confirm_enrollment(other)", lambda s, a: s.confirm_enrollment(a, "alice", code(alice_pending_secret, clock))),
        ("begin_enrollment(other)", lambda s, a: s.begin_enrollment(a, "alice")),
        ("cancel_enrollment(other)", lambda s, a: s.cancel_enrollment(a, "alice")),
        ("reset_2fa", lambda s, a: s.reset_2fa(a, "alice")),  # Activated by the calls above
        ("seed_users", lambda s, a: s.seed_users(a, [SeedUser(NewUser("gus", "Gus", Role.ADMIN), T0, T0, None)])),
        ("set_enabled", lambda s, a: s.set_enabled(a, False)),
        ("set_mode", lambda s, a: s.set_mode(a, PolicyMode.MANDATORY)),
        ("set_issuer", lambda s, a: s.set_issuer(a, "Evil Corp")),
    ]


class TestRoles:
    def test_the_operator_changes_the_store_with_each_admin_call(self, service, paths, op, staged, clock):
        """The control for the test below: each call, when allowed, does write something."""
        unchanged = []
        for name, call in admin_calls(clock, staged):
            before = store_state(paths.db)
            call(service, op)
            if store_state(paths.db) == before:
                unchanged.append(name)
        assert unchanged == []

    @pytest.mark.parametrize("username", ["sam", "bob"])
    def test_staff_and_agents_cannot_administer(self, service, paths, op, staged, clock, username):
        session, _ = first_sign_in(service, clock, username)
        assert session.scope is Scope.FULL
        before = store_state(paths.db)
        allowed = []
        for name, call in admin_calls(clock, staged):
            try:
                call(service, session)
            except PermissionDenied:
                pass
            else:
                allowed.append(name)
        assert allowed == []
        assert store_state(paths.db) == before
        denied = service.audit(op, user=username, action="permission")
        assert len(denied) == len(admin_calls(clock, staged))
        assert {(e.actor, e.outcome) for e in denied} == {(username, "denied")}

    def test_a_dashboard_admin_administers_but_cannot_set_mode_or_issuer(self, service, paths, op, clock):
        ada, _ = first_sign_in(service, clock, "ada")
        service.add_user(ada, NewUser("eve", "Eve", Role.AGENT))
        service.set_enabled(ada, True)
        before = store_state(paths.db)
        with pytest.raises(PermissionDenied, match="command line"):
            service.set_mode(ada, PolicyMode.OPTIONAL)
        with pytest.raises(PermissionDenied, match="command line"):
            service.set_issuer(ada, "Elsewhere")
        assert store_state(paths.db) == before
        assert service.policy().mode is PolicyMode.MANDATORY
        assert service.policy().issuer == "Acme Contact Center"
        denied = service.audit(op, action="permission")
        assert [(e.actor, e.outcome) for e in denied] == [("ada", "denied")] * 2

    def test_an_agent_sees_only_itself(self, service, clock):
        alice, _ = first_sign_in(service, clock, "alice")
        assert service.get_user(alice, "ALICE").username == "alice"
        for call in (
            lambda: service.list_users(alice),
            lambda: service.get_user(alice, "bob"),
            lambda: service.rollout(alice),
            lambda: service.audit(alice),
        ):
            with pytest.raises(PermissionDenied):
                call()

    def test_a_supervisor_reads_everyone(self, service, clock):
        sam, _ = first_sign_in(service, clock, "sam")
        assert {u.username for u in service.list_users(sam)} == {"ada", "sam", "alice", "bob"}
        assert service.get_user(sam, "bob").role is Role.AGENT
        assert service.rollout(sam).total == 4
        assert service.audit(sam)

    def test_a_user_enrolls_only_itself_with_a_full_session(self, service, op, clock):
        sam, _ = first_sign_in(service, clock, "sam")
        enrollment = service.begin_enrollment(sam, "sam")  # a new phone
        assert service.confirm_enrollment(sam, "sam", code(enrollment.secret, clock)).ok

    def test_forged_sessions_are_refused(self, service, paths, op, clock):
        sam, _ = first_sign_in(service, clock, "sam")
        other = Service(paths, clock=clock)
        try:
            foreign = other.operator("tester")  # issued, but by another Service
            forged = [
                Session("ada", Role.ADMIN, Scope.FULL),
                Session("root", Role.ADMIN, Scope.FULL, operator=True),
                Session("sam", Role.ADMIN, Scope.FULL, token=sam.token),  # a stolen token
                dataclasses.replace(sam, role=Role.ADMIN),
                dataclasses.replace(op),
                foreign,
            ]
            for session in forged:
                with pytest.raises(PermissionDenied, match="not signed in"):
                    service.add_user(session, NewUser("eve", "Eve", Role.ADMIN))
                with pytest.raises(PermissionDenied, match="not signed in"):
                    service.list_users(session)
        finally:
            other.close()
        assert "eve" not in {u.username for u in service.list_users(op)}

    def test_a_demoted_supervisor_loses_rights_at_once(self, service, op, clock):
        sam, _ = first_sign_in(service, clock, "sam")
        service.list_users(sam)
        service.edit_user(op, "sam", role=Role.AGENT)
        with pytest.raises(PermissionDenied):
            service.list_users(sam)
        assert service.get_user(sam, "sam").role is Role.AGENT

    def test_a_demoted_admin_loses_rights_at_once(self, service, op, clock):
        ada, _ = first_sign_in(service, clock, "ada")
        service.add_user(ada, NewUser("eve", "Eve", Role.ADMIN))
        service.edit_user(op, "ada", role=Role.SUPERVISOR)
        with pytest.raises(PermissionDenied, match="administrators only"):
            service.add_user(ada, NewUser("mal", "Mal", Role.ADMIN))
        assert service.list_users(ada)  # still a supervisor

    def test_a_change_made_by_another_process_counts_at_once(self, service, paths, clock):
        ada, _ = first_sign_in(service, clock, "ada")
        other = Service(paths, clock=clock)
        try:
            other_op = other.operator("tester")
            other.add_user(other_op, NewUser("eve", "Eve", Role.ADMIN))
            other.edit_user(other_op, "ada", role=Role.AGENT)
        finally:
            other.close()
        with pytest.raises(PermissionDenied):
            service.list_users(ada)

    def test_a_deactivated_users_session_dies(self, service, op, clock):
        sam, _ = first_sign_in(service, clock, "sam")
        service.set_active(op, "sam", False)
        with pytest.raises(PermissionDenied, match="deactivated"):
            service.get_user(sam, "sam")
        service.set_active(op, "sam", True)
        with pytest.raises(PermissionDenied, match="not signed in"):  # no coming back to life
            service.get_user(sam, "sam")

    def test_the_last_admin_cannot_be_demoted_or_deactivated(self, service, op):
        with pytest.raises(PolicyError, match="last active administrator"):
            service.edit_user(op, "ada", role=Role.AGENT)
        with pytest.raises(PolicyError, match="last active administrator"):
            service.set_active(op, "ada", False)
        assert service.get_user(op, "ada").role is Role.ADMIN and service.get_user(op, "ada").active


# -- policy ----------------------------------------------------------------------------------


def statuses(service, op) -> dict[str, Status]:
    return {u.username: u.status for u in service.list_users(op)}


class TestPolicy:
    def test_cannot_be_turned_off_while_mandatory(self, service, paths, op):
        before = store_state(paths.db)
        with pytest.raises(PolicyError, match="mandatory"):
            service.set_enabled(op, False)
        assert store_state(paths.db) == before
        assert service.policy().enabled
        refused = service.audit(op, action="policy.disable")
        assert [(e.actor, e.outcome) for e in refused] == [("os:tester", "refused")]

    def test_off_and_on_again_keeps_every_enrollment(self, service, op, alice_secret, clock):
        service.set_mode(op, PolicyMode.OPTIONAL)
        assert service.policy().may_disable
        service.set_enabled(op, False)
        assert set(statuses(service, op).values()) == {Status.DISABLED}
        assert service.rollout(op).disabled == 4
        assert service.verify("alice", code(alice_secret, clock)).outcome is Outcome.NOT_ENROLLED
        with pytest.raises(PolicyError, match="turned off"):
            service.begin_enrollment(op, "bob")
        clock.advance(PERIOD)
        service.set_enabled(op, True)
        assert statuses(service, op) == {
            "ada": Status.PENDING,
            "sam": Status.PENDING,
            "alice": Status.ACTIVATED,
            "bob": Status.PENDING,
        }
        assert service.verify("alice", code(alice_secret, clock)).ok  # the same phone entry
        rollout = service.rollout(op)
        assert (rollout.total, rollout.activated, rollout.pending, rollout.percent) == (4, 1, 3, 25.0)

    def test_mandatory_turns_it_back_on(self, service, op, alice_secret):
        service.set_mode(op, PolicyMode.OPTIONAL)
        service.set_enabled(op, False)
        policy = service.set_mode(op, PolicyMode.MANDATORY)
        assert policy.mode is PolicyMode.MANDATORY and policy.enabled
        assert statuses(service, op)["alice"] is Status.ACTIVATED

    def test_optional_does_not_turn_it_off_by_itself(self, service, op):
        policy = service.set_mode(op, PolicyMode.OPTIONAL)
        assert policy.enabled and policy.mode is PolicyMode.OPTIONAL

    def test_status_is_derived_never_stored(self, service, paths, op, alice_secret):
        columns = set(query(paths.db, "SELECT * FROM users WHERE key = ?", ("",))[0])
        assert "secret" in columns and not {"status", "pending", "activated", "disabled"} & columns
        service.set_mode(op, PolicyMode.OPTIONAL)
        service.set_enabled(op, False)
        assert read_store(paths.db)["users"]["alice"]["secret"] is not None  # kept while 2FA is off
        assert status(service, op, "alice") is Status.DISABLED

    def test_issuer_applies_to_new_enrollments(self, service, op):
        service.set_issuer(op, "Acme Night Shift")
        assert service.begin_enrollment(op, "bob").issuer == "Acme Night Shift"
        with pytest.raises(InvalidInput, match="':'"):
            service.set_issuer(op, "Acme:Evil")
        assert service.policy().issuer == "Acme Night Shift"


# -- audit -----------------------------------------------------------------------------------


class TestAudit:
    def test_events_carry_actor_target_and_outcome(self, service, op, clock):
        """One of each event the service records, as (actor, action, target, outcome)."""
        ada, secret = first_sign_in(service, clock, "ada")
        service.login("ada", "wrong-password")
        service.login("nobody", "wrong-password")
        challenge = service.login("ada", password("ada")).session
        service.login_code(challenge, wrong_code(secret, clock))
        service.login_code(challenge, code(secret, clock))
        pending = service.begin_enrollment(ada, "alice")
        service.confirm_enrollment(ada, "alice", wrong_code(pending.secret, clock))
        for _ in range(5):
            service.verify("ada", wrong_code(secret, clock))  # the 5th locks
        service.unlock(ada, "ada")
        service.reset_2fa(ada, "alice")  # her enrollment begun above: cancelled
        service.add_user(ada, NewUser("eve", "Eve", Role.AGENT))
        service.edit_user(ada, "eve", team="Sales")
        service.import_users(ada, users_csv(["frank", "gina"]))
        service.set_mode(op, PolicyMode.OPTIONAL)
        service.set_enabled(ada, False)
        service.set_enabled(ada, True)
        got = [(e.actor, e.action, e.target, e.outcome) for e in reversed(service.audit(op))]
        expected = [
            ("ada", "login.password", "ada", "ok"),
            ("ada", "enroll.begin", "ada", "ok"),
            ("ada", "enroll.confirm", "ada", "ok"),
            ("ada", "login", "ada", "ok"),
            ("ada", "login.password", "ada", "failed"),
            ("(unknown)", "login.password", None, "failed"),
            ("ada", "login.password", "ada", "ok"),
            ("ada", "login", "ada", "failed"),
            ("ada", "login", "ada", "ok"),
            ("ada", "enroll.begin", "alice", "ok"),
            ("ada", "enroll.confirm", "alice", "failed"),
            ("verify", "verify", "ada", "failed"),
            ("verify", "verify", "ada", "failed"),
            ("verify", "verify", "ada", "failed"),
            ("verify", "verify", "ada", "failed"),
            ("ada", "lock", "ada", "locked"),
            ("verify", "verify", "ada", "failed"),
            ("ada", "user.unlock", "ada", "ok"),
            ("ada", "2fa.reset", "alice", "ok"),
            ("ada", "user.add", "eve", "ok"),
            ("ada", "user.edit", "eve", "ok"),
            ("ada", "user.import", None, "ok"),
            ("os:tester", "policy.mode", None, "ok"),
            ("ada", "policy.disable", None, "ok"),
            ("ada", "policy.enable", None, "ok"),
        ]
        # The fixture's own events (store.created, user.add x4) come first.
        assert got[:5] == [("os:tester", "store.created", None, "ok")] + [
            ("os:tester", "user.add", name, "ok") for name in ("ada", "sam", "alice", "bob")
        ]
        assert got[5:] == expected

    def test_events_are_timestamped_newest_first(self, service, op, clock):
        for name in ("alice", "bob"):
            enroll(service, op, name, clock)
        service.reset_2fa(op, "alice")
        clock.advance(60)
        service.reset_2fa(op, "bob")
        events = service.audit(op, action="2fa.reset")
        assert [(e.target, e.at) for e in events] == [("bob", at(clock.now)), ("alice", at(clock.now - 60))]

    def test_filters(self, service, op, clock):
        service.login("alice", "wrong-password")
        clock.advance(60)
        since = at(clock.now)
        service.edit_user(op, "bob", team="Sales")
        service.login("bob", "wrong-password")
        assert {e.target for e in service.audit(op, user="BOB")} == {"bob"}
        assert {(e.action, e.target) for e in service.audit(op, user="alice")} == {
            ("user.add", "alice"),
            ("login.password", "alice"),
        }
        assert {e.action for e in service.audit(op, action="login")} == {"login.password"}
        assert [e.action for e in service.audit(op, action="user.")] == ["user.edit"] + ["user.add"] * 4
        assert [(e.action, e.target) for e in service.audit(op, since=since)] == [
            ("login.password", "bob"),
            ("user.edit", "bob"),
        ]
        assert [e.action for e in service.audit(op, user="bob", action="user", since=since)] == ["user.edit"]
        # user matches the actor as well as the target
        sam, _ = first_sign_in(service, clock, "sam")
        service.list_users(sam)
        assert {e.actor for e in service.audit(op, user="sam")} == {"sam", "os:tester"}


# -- adding and importing users --------------------------------------------------------------


class TestUsers:
    def test_add_and_edit(self, service, op):
        user = service.add_user(op, NewUser(" Eve.Ng ", " Eve Ng ", Role.SUPERVISOR, email="eve@acme.example"))
        assert (user.username, user.name, user.role, user.status) == ("Eve.Ng", "Eve Ng", Role.SUPERVISOR, Status.PENDING)
        with pytest.raises(InvalidInput, match="already exists"):
            service.add_user(op, NewUser("EVE.NG", "Other", Role.AGENT))
        user = service.edit_user(op, "eve.ng", email="", team="Sales", name="Eve N.")
        assert (user.email, user.team, user.name) == (None, "Sales", "Eve N.")
        with pytest.raises(InvalidInput, match="nothing to change"):
            service.edit_user(op, "eve.ng")
        with pytest.raises(UnknownUser):
            service.edit_user(op, "nobody", name="X")

    def test_password_rules_and_change(self, service, op):
        with pytest.raises(InvalidInput, match="at least 8"):
            service.set_password(op, "alice", "short")
        service.set_password(op, "alice", "a-new-password")
        assert service.login("alice", password("alice")).outcome is Outcome.INVALID
        assert service.login("alice", "a-new-password").outcome is Outcome.ENROLLMENT_REQUIRED

    def test_import_adds_pending_users_without_password(self, service, op):
        assert service.import_users(op, users_csv(["frank", "gina"])) == 2
        assert statuses(service, op) == {
            "ada": Status.PENDING,
            "sam": Status.PENDING,
            "alice": Status.PENDING,
            "bob": Status.PENDING,
            "frank": Status.PENDING,
            "gina": Status.PENDING,
        }
        assert service.login("frank", "") == AuthResult(Outcome.INVALID)

    @pytest.mark.parametrize(
        "rows",
        [
            b"frank,Frank,,agent,\ngina,Gina,,boss,\nhugo,Hugo,,agent,\n",  # a bad role
            b"frank,Frank,,agent,\nALICE,Alice Again,,agent,\n",  # already in the store
            b"frank,Frank,,agent,\nFRANK,Frank Twice,,agent,\n",  # twice in the file
        ],
    )
    def test_import_is_all_or_nothing(self, service, paths, op, rows):
        before = store_state(paths.db)
        with pytest.raises(ImportRejected) as rejected:
            service.import_users(op, b"username,name,email,role,team\n" + rows)
        assert [e.line for e in rejected.value.errors] == [3]
        assert store_state(paths.db) == before
        assert {u.username for u in service.list_users(op)} == {"ada", "sam", "alice", "bob"}
        assert service.import_users(op, users_csv(["frank"])) == 1  # the store is still usable

    def test_seeded_users(self, service, op):
        seeds = [
            SeedUser(NewUser("gus", "Gus", Role.AGENT), T0 - 86400, T0 - 3600, T0 - 60),
            SeedUser(NewUser("hal", "Hal", Role.AGENT), T0 - 86400, None, None),
        ]
        assert service.seed_users(op, seeds) == 2
        users = {u.username: u for u in service.list_users(op)}
        assert users["gus"].status is Status.ACTIVATED and users["gus"].recovery_codes_left == 10
        assert users["gus"].activated_at == at(T0 - 3600)
        assert users["hal"].status is Status.PENDING


def test_cross_process_sanity(paths, service):
    """run_python sees the same files (guards the other cross-process tests against a false pass)."""
    proc = run_python(
        "import sys, json; from pathlib import Path; from store.paths import resolve;"
        "from store.service import Service; s = Service(resolve(sys.argv[1], sys.argv[2]));"
        "print(json.dumps(sorted(u.username for u in s.list_users(s.operator('x')))))",
        paths.db,
        paths.key,
    )
    assert last_json_line(proc) == ["ada", "alice", "bob", "sam"]


# -- the verification service's clients ----------------------------------------------------------
def test_a_key_refused_again_and_again_is_audited_once_a_minute_with_a_count(service, clock):
    op = service.operator("tester")
    _, key = service.add_client(op, "intranet", ("10.1.0.0/16",))

    def refused() -> list[tuple[str, str]]:
        return [(e.actor, e.detail) for e in reversed(service.audit(op)) if e.action == "client.refused"]

    for guess in range(50):  # a scan of keys from one address
        assert service.client_for_key(f"mfak_guess{guess}", "192.0.2.7") is None
    assert service.client_for_key(key, "192.0.2.7") is None  # the right key, from the wrong place
    assert service.client_for_key("mfak_guess", "192.0.2.8") is None  # another address
    assert service.client_for_key(key, "10.1.2.3").name == "intranet"
    assert refused() == [("client:(unknown)", "no such key, from 192.0.2.7"),
                         ("client:intranet", "not allowed, from 192.0.2.7"),
                         ("client:(unknown)", "no such key, from 192.0.2.8")]  # fmt: skip
    clock.advance(59)
    assert service.client_for_key("mfak_again", "192.0.2.7") is None  # still in the minute: counted
    clock.advance(2)
    assert service.client_for_key("mfak_later", "192.0.2.7") is None
    assert refused()[-1] == ("client:(unknown)", "no such key, from 192.0.2.7; 50 more the same way since "
                             f"{datetime.fromtimestamp(clock() - 61, UTC):%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
