"""Who may use the bot: users, one-time invitations, links between people and patients, and mutes.

Admins are not stored here: they come from settings. A revoked user keeps their row (for the audit trail)
but loses every patient link and counts as unknown.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


from core.roles import Role
from store.database import Database, atomic

SERVER = 0  # `created_by` of invitations made with `hemowatch admin` when no admin id is configured


@dataclass(frozen=True, slots=True)
class Person:
    """An active (not revoked) user."""

    telegram_id: int
    role: Role
    display_name: str
    chat_id: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class Member:
    """A person linked to one patient, with their role for that patient."""

    person: Person
    role: Role


class InvitationError(Exception):
    """An invitation that cannot be used; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Invitation:
    code: str
    role: Role
    patient_id: str | None
    created_by: int
    expires_at: float


def _person(row: dict) -> Person:
    return Person(
        telegram_id=row["telegram_id"],
        role=Role(row["role"]),
        display_name=row["display_name"] or str(row["telegram_id"]),
        chat_id=row["chat_id"],
        blocked=row["blocked_at"] is not None,
    )


def get_person(db: Database, telegram_id: int) -> Person | None:
    """The active user with this id, or None when unknown or revoked."""
    rows = list(db.query("select * from users where telegram_id = ? and revoked_at is null", [telegram_id]))
    return _person(rows[0]) if rows else None


def doctors(db: Database) -> list[Person]:
    """Every active doctor, in the order they joined."""
    rows = db.query("select * from users where role = 'doctor' and revoked_at is null order by joined_at")
    return [_person(row) for row in rows]


def create_invitation(
    db: Database, role: Role, patient_id: str | None, created_by: int, now: float, ttl_s: float
) -> Invitation:
    """A new single-use invitation; the code is safe in a `t.me/<bot>?start=<code>` deep link."""
    invitation = Invitation(secrets.token_urlsafe(16), role, patient_id, created_by, now + ttl_s)
    db.execute(
        "insert into invitations (code, role, patient_id, created_by, created_at, expires_at) values (?, ?, ?, ?, ?, ?)",
        [invitation.code, role.value, patient_id, created_by, now, invitation.expires_at],
    )
    return invitation


def redeem_invitation(
    db: Database, code: str, telegram_id: int, display_name: str, chat_id: int, now: float
) -> Invitation:
    """Use an invitation: the user joins (or rejoins) with its role and, for a patient invitation, that link.

    A doctor who redeems a caregiver invitation stays a doctor. Raises InvitationError when the code is
    unknown, used or expired; the claim is a single conditional UPDATE, so two people cannot both use it.
    """
    with atomic(db):
        rows = list(db.query("select * from invitations where code = ?", [code]))
        if not rows:
            raise InvitationError("This invitation link is not valid.")
        row = rows[0]
        if row["used_by"] is not None:
            raise InvitationError("This invitation link has already been used. Ask for a new one.")
        if row["expires_at"] <= now:
            raise InvitationError("This invitation link has expired. Ask for a new one.")
        claimed = db.execute(
            "update invitations set used_by = ?, used_at = ? where code = ? and used_by is null",
            [telegram_id, now, code],
        ).rowcount
        if claimed != 1:
            raise InvitationError("This invitation link has already been used. Ask for a new one.")
        role = Role(row["role"])
        current = get_person(db, telegram_id)
        if current is not None and current.role is Role.DOCTOR:
            role_kept = Role.DOCTOR
        else:
            role_kept = role
        db.execute(
            "insert into users (telegram_id, role, display_name, chat_id, joined_at) values (?, ?, ?, ?, ?) "
            "on conflict (telegram_id) do update set role = excluded.role, display_name = excluded.display_name, "
            "chat_id = excluded.chat_id, joined_at = excluded.joined_at, revoked_at = null, blocked_at = null",
            [telegram_id, role_kept.value, display_name, chat_id, now],
        )
        if row["patient_id"] is not None:
            _link(db, row["patient_id"], telegram_id, role, now)
    return Invitation(code, role, row["patient_id"], row["created_by"], row["expires_at"])


def revoke_user(db: Database, telegram_id: int, now: float) -> bool:
    """Revoke an active user and drop their patient links and mutes; False when there was nobody to revoke."""
    with atomic(db):
        revoked = db.execute(
            "update users set revoked_at = ? where telegram_id = ? and revoked_at is null", [now, telegram_id]
        ).rowcount
        db.execute("delete from patient_members where telegram_id = ?", [telegram_id])
        db.execute("delete from mutes where telegram_id = ?", [telegram_id])
    return revoked == 1


def record_blocked(db: Database, telegram_id: int, now: float) -> None:
    """The user blocked the bot: stop trying their chat until they write again."""
    with atomic(db):
        db.execute("update users set blocked_at = ? where telegram_id = ?", [now, telegram_id])


def record_seen(db: Database, telegram_id: int, chat_id: int) -> None:
    """The user wrote to the bot, so their chat works (again). Writes only when something changed."""
    person = get_person(db, telegram_id)
    if person is None or (not person.blocked and person.chat_id == chat_id):
        return
    with atomic(db):
        db.execute(
            "update users set blocked_at = null, chat_id = ? where telegram_id = ? and revoked_at is null",
            [chat_id, telegram_id],
        )


def add_member(db: Database, patient_id: str, telegram_id: int, role: Role, now: float) -> None:
    """Link a person to a patient; a doctor link is never downgraded to a caregiver one."""
    with atomic(db):
        _link(db, patient_id, telegram_id, role, now)


def _link(db: Database, patient_id: str, telegram_id: int, role: Role, now: float) -> None:
    db.execute(
        "insert into patient_members (patient_id, telegram_id, role, added_at) values (?, ?, ?, ?) "
        "on conflict (patient_id, telegram_id) do update set role = "
        "case when patient_members.role = 'doctor' then 'doctor' else excluded.role end",
        [patient_id, telegram_id, role.value, now],
    )


def member_role(db: Database, patient_id: str, telegram_id: int) -> Role | None:
    """The person's role for this patient, or None when they are not linked to it."""
    rows = list(
        db.query(
            "select m.role from patient_members m join users u using (telegram_id) "
            "where m.patient_id = ? and m.telegram_id = ? and u.revoked_at is null",
            [patient_id, telegram_id],
        )
    )
    return Role(rows[0]["role"]) if rows else None


def patient_ids_of(db: Database, telegram_id: int) -> list[str]:
    """The patients this person is linked to."""
    return [
        row["patient_id"]
        for row in db.query(
            "select patient_id from patient_members where telegram_id = ? order by patient_id", [telegram_id]
        )
    ]


def people_with_role(db: Database, role: Role) -> list[Person]:
    """Every active user holding `role`, by id."""
    rows = db.query("select * from users where role = ? and revoked_at is null order by telegram_id", [role.value])
    return [_person(row) for row in rows]


def members_of(db: Database, patient_id: str) -> list[Member]:
    """The active people linked to a patient, doctors first."""
    rows = db.query(
        "select u.*, m.role as member_role from patient_members m join users u using (telegram_id) "
        "where m.patient_id = ? and u.revoked_at is null order by m.role desc, u.telegram_id",
        [patient_id],
    )
    return [Member(_person(row), Role(row["member_role"])) for row in rows]


def mute(db: Database, patient_id: str, telegram_id: int, until: float) -> None:
    """Silence non-emergency alerts about this patient for this person until `until`."""
    db.upsert("mutes", {"patient_id": patient_id, "telegram_id": telegram_id, "until": until},
              key=["patient_id", "telegram_id"])


def muted_until(db: Database, patient_id: str, telegram_id: int, now: float) -> float | None:
    """When this person's mute for the patient ends, or None when they are not muted."""
    rows = list(
        db.query(
            "select until from mutes where patient_id = ? and telegram_id = ? and until > ?",
            [patient_id, telegram_id, now],
        )
    )
    return rows[0]["until"] if rows else None
