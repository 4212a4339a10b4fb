"""Inline buttons: callback data is short (`ack:<alert_id>`, `read:<casebook key>:<0|1>`) and parsed only here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.notifications import STUDY_CONDITION
from store.site_profiles import SCAN_PREFIX, STUDY_PREFIX, study_ref

READ_LABELS = {1: "Bleed confirmed", 0: "No bleed"}
_READ = re.compile(rf"read:({re.escape(SCAN_PREFIX)}[0-9]{{1,12}}|{re.escape(STUDY_PREFIX)}[0-9a-f]{{32}}):([01])")

ACK_DATA = re.compile(r"ack:([0-9]{1,12})")  # ASCII digits: int() refuses "²", which str.isdigit() accepts


def alert_markup(
    alert_id: int, condition: str, values: Mapping[str, Any], acknowledged: bool
) -> InlineKeyboardMarkup | None:
    """The buttons under an alert: Acknowledge until a clinician has; under a head CT from a scanner, "I am
    reading it" until then, and the doctor's read buttons for good."""
    rows = []
    if not acknowledged:
        label = "I am reading it" if condition == STUDY_CONDITION else "Acknowledge"
        rows.append([InlineKeyboardButton(label, callback_data=f"ack:{alert_id}")])
    if condition == STUDY_CONDITION and values.get("study"):
        rows.extend(read_markup(study_ref(values["study"])).inline_keyboard)
    return InlineKeyboardMarkup(rows) if rows else None


def read_markup(scan_ref: str) -> InlineKeyboardMarkup:
    """The doctor's read of a scan or study, under its verdict."""
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(text, callback_data=f"read:{scan_ref}:{label}") for label, text in READ_LABELS.items()
    ]])


def parse_ack(data: str | None) -> int | None:
    """The alert id of an `ack:` button, or None for anything else."""
    found = ACK_DATA.fullmatch(data or "")
    return int(found[1]) if found else None


def parse_read(data: str | None) -> tuple[str, int] | None:
    """The casebook key and the read (1: bleed confirmed) of a `read:` button, or None for anything else."""
    match = _READ.fullmatch(data or "")
    return None if match is None else (match[1], int(match[2]))
