"""Inline buttons: callback data is short (`ack:<alert_id>`) and parsed only here."""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.notifications import STUDY_CONDITION

ACK_DATA = re.compile(r"ack:([0-9]{1,12})")  # ASCII digits: int() refuses "²", which str.isdigit() accepts


def alert_markup(alert_id: int, condition: str) -> InlineKeyboardMarkup:
    """The button under an alert; under a head CT from a scanner it says the doctor is reading it."""
    label = "I am reading it" if condition == STUDY_CONDITION else "Acknowledge"
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"ack:{alert_id}")]])


def parse_ack(data: str | None) -> int | None:
    """The alert id of an `ack:` button, or None for anything else."""
    found = ACK_DATA.fullmatch(data or "")
    return int(found[1]) if found else None
