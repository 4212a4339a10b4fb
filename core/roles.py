"""Who someone is in the care team, for the bot's permissions and the store's membership rows."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    DOCTOR = "doctor"
    CAREGIVER = "caregiver"


CLINICAL_ROLES = frozenset({Role.ADMIN, Role.DOCTOR})  # whose Acknowledge is a clinical response (admins are staff)
