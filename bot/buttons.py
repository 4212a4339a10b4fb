"""Inline buttons: callback data is short (`ack:<alert_id>`) and parsed only here."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup


def acknowledge_markup(alert_id: int, label: str = "Acknowledge") -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"ack:{alert_id}")]])


def parse_ack(data: str | None) -> int | None:
    """The alert id of an `ack:` button, or None for anything else."""
    prefix, _, number = (data or "").partition(":")
    if prefix != "ack" or not number.isdigit() or len(number) > 12:
        return None
    return int(number)
