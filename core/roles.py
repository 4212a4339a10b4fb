"""Who someone is in the care team, for the bot's permissions and the store's membership rows."""

from __future__ import annotations

import re
from enum import StrEnum

# A Telegram user id as people write it: ASCII digits only, since int() refuses digits such as "²" that
# str.isdigit() accepts.
TELEGRAM_ID = re.compile(r"[0-9]{1,16}")


class Role(StrEnum):
    ADMIN = "admin"
    DOCTOR = "doctor"
    CAREGIVER = "caregiver"


CLINICAL_ROLES = frozenset({Role.ADMIN, Role.DOCTOR})  # whose Acknowledge is a clinical response (admins are staff)
