"""The people store against a real SQLite file: invitations, links, revocation and mutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.database import Database
from store import open_database
from store.people import (
    InvitationError,
    Role,
    add_member,
    create_invitation,
    get_person,
    member_role,
    members_of,
    mute,
    muted_until,
    patient_ids_of,
    record_blocked,
    record_seen,
    redeem_invitation,
    revoke_user,
)

NOW = 1_800_000_000.0
DAY = 86_400.0
ADMIN = 1


@pytest.fixture
def db(store_location: Path | str) -> Database:
    database = open_database(store_location)
    for patient_id in ("p1", "p2"):
        database.execute("insert into patients (id, name, created_at) values (?, ?, ?)", [patient_id, patient_id, NOW])
    return database


def test_doctor_invitation_is_single_use(db: Database) -> None:
    invitation = create_invitation(db, Role.DOCTOR, None, ADMIN, NOW, DAY)
    redeem_invitation(db, invitation.code, 10, "Dr Ada", 10, NOW + 60)
    assert get_person(db, 10).role is Role.DOCTOR
    with pytest.raises(InvitationError, match="already been used"):
        redeem_invitation(db, invitation.code, 11, "Eve", 11, NOW + 120)
    assert get_person(db, 11) is None


def test_expired_and_unknown_invitations_are_refused(db: Database) -> None:
    invitation = create_invitation(db, Role.DOCTOR, None, ADMIN, NOW, DAY)
    with pytest.raises(InvitationError, match="expired"):
        redeem_invitation(db, invitation.code, 10, "Dr Ada", 10, NOW + DAY)
    with pytest.raises(InvitationError, match="not valid"):
        redeem_invitation(db, "no-such-code", 10, "Dr Ada", 10, NOW)
    assert get_person(db, 10) is None


def test_caregiver_invitation_links_one_patient(db: Database) -> None:
    invitation = create_invitation(db, Role.CAREGIVER, "p1", 10, NOW, DAY)
    redeem_invitation(db, invitation.code, 20, "Carl", 20, NOW)
    assert member_role(db, "p1", 20) is Role.CAREGIVER
    assert member_role(db, "p2", 20) is None
    assert patient_ids_of(db, 20) == ["p1"]


def test_doctor_keeps_role_and_link_when_redeeming_caregiver_invitation(db: Database) -> None:
    redeem_invitation(db, create_invitation(db, Role.DOCTOR, None, ADMIN, NOW, DAY).code, 10, "Dr Ada", 10, NOW)
    add_member(db, "p1", 10, Role.DOCTOR, NOW)
    redeem_invitation(db, create_invitation(db, Role.CAREGIVER, "p1", ADMIN, NOW, DAY).code, 10, "Dr Ada", 10, NOW)
    assert get_person(db, 10).role is Role.DOCTOR
    assert member_role(db, "p1", 10) is Role.DOCTOR


def test_revoked_user_is_unknown_and_loses_links(db: Database) -> None:
    redeem_invitation(db, create_invitation(db, Role.CAREGIVER, "p1", 10, NOW, DAY).code, 20, "Carl", 20, NOW)
    mute(db, "p1", 20, NOW + 3600)
    assert revoke_user(db, 20, NOW)
    assert get_person(db, 20) is None
    assert member_role(db, "p1", 20) is None
    assert muted_until(db, "p1", 20, NOW) is None
    assert not revoke_user(db, 20, NOW)
    # a new invitation brings them back, with only the new link
    redeem_invitation(db, create_invitation(db, Role.CAREGIVER, "p2", 10, NOW, DAY).code, 20, "Carl", 20, NOW)
    assert patient_ids_of(db, 20) == ["p2"]


def test_members_doctors_first_and_blocked_flag(db: Database) -> None:
    redeem_invitation(db, create_invitation(db, Role.CAREGIVER, "p1", 10, NOW, DAY).code, 20, "Carl", 20, NOW)
    redeem_invitation(db, create_invitation(db, Role.DOCTOR, "p1", ADMIN, NOW, DAY).code, 30, "Dr Bo", 30, NOW)
    assert [(m.person.telegram_id, m.role) for m in members_of(db, "p1")] == [
        (30, Role.DOCTOR), (20, Role.CAREGIVER)
    ]
    record_blocked(db, 20, NOW)
    assert get_person(db, 20).blocked
    record_seen(db, 20, 20)
    assert not get_person(db, 20).blocked


def test_mute_ends(db: Database) -> None:
    mute(db, "p1", 20, NOW + 600)
    assert muted_until(db, "p1", 20, NOW) == NOW + 600
    assert muted_until(db, "p1", 20, NOW + 600) is None
