"""Inline buttons: callback data is short (`ack:<alert_id>`) and parsed only here."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.notifications import STUDY_CONDITION


def alert_markup(alert_id: int, condition: str) -> InlineKeyboardMarkup:
    """The button under an alert; under a head CT from a scanner it says the doctor is reading it."""
    label = "I am reading it" if condition == STUDY_CONDITION else "Acknowledge"
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"ack:{alert_id}")]])


def parse_ack(data: str | None) -> int | None:
    """The alert id of an `ack:` button, or None for anything else."""
    prefix, _, number = (data or "").partition(":")
    if prefix != "ack" or not number.isdigit() or len(number) > 12:
        return None
    return int(number)
