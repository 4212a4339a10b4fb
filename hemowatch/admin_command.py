"""`hemowatch admin`: doctor invitations, patients and open alerts, from the server's shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

from telegram import Bot
from telegram.error import TelegramError
from telegram.helpers import create_deep_linked_url

from core.roles import Role
from core.settings import Settings
from hemowatch.tables import print_table
from store import alerts, deliveries, open_database, outbox, patients, people
from store.database import Database


def run_admin(args: argparse.Namespace, settings: Settings) -> int:
    db = open_database(settings.database)
    try:
        if args.admin_command == "invite":
            return _invite_doctor(db, settings)
        if args.admin_command == "alerts":
            return _list_alerts(db)
        if args.admin_command == "patients":
            return _list_patients(db)
        return _add_patient(db, args.patient_id, args.name)
    finally:
        db.close()


def _invite_doctor(db: Database, settings: Settings) -> int:
    if settings.telegram_bot_token is None:
        print("Set TELEGRAM_BOT_TOKEN first: the link names the bot, which HemoWatch asks Telegram for.",
              file=sys.stderr)
        return 2
    try:
        username = asyncio.run(_bot_username(settings))
    except TelegramError as error:
        print(f"Could not ask Telegram for the bot's name ({error}). Check TELEGRAM_BOT_TOKEN and the network.",
              file=sys.stderr)
        return 1
    inviter = min(settings.admin_user_ids, default=people.SERVER)  # told when the doctor joins
    invitation = people.create_invitation(
        db, Role.DOCTOR, None, inviter, time.time(), settings.invite_ttl_hours * 3600
    )
    print(f"One-time doctor invitation, valid for {settings.invite_ttl_hours:g} hours:")
    print(create_deep_linked_url(username, invitation.code))
    return 0


async def _bot_username(settings: Settings) -> str:
    api = settings.telegram_api_url.rstrip("/")
    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{api}/bot")
    async with bot:
        return bot.username


def _add_patient(db: Database, patient_id: str, name: str) -> int:
    try:
        patient = patients.add_patient(db, patient_id, name, time.time())
    except ValueError as error:
        print(f"Cannot add the patient: {error}.", file=sys.stderr)
        return 1
    print(f"Patient {patient.id} ({patient.name}) registered. An admin links a doctor to them "
          f"with /invite doctor {patient.id} in the bot.")
    return 0


def _list_alerts(db: Database) -> int:
    """Open alerts, newest first, with who heard each; an alert nobody could receive says so."""
    open_now = sorted(alerts.open_alerts(db), key=lambda alert: alert.id, reverse=True)
    if not open_now:
        print("No open alerts.")
        return 0
    held = outbox.held_alert_ids(db)
    rows = []
    for alert in open_now:
        heard = sorted({message.chat_id for message in deliveries.alert_messages(db, alert.id)})
        values = ", ".join(f"{name} {value}" for name, value in alert.values.items())
        rows.append({
            "id": str(alert.id), "raised (UTC)": _utc(alert.raised_at), "patient": alert.patient_id,
            "severity": alert.severity.value, "state": alert.state.value, "alert": alert.title,
            "values": values + (f"; NEWS2 {alert.news2}" if alert.news2 is not None else ""),
            "heard by": ", ".join(map(str, heard)) if heard else
            ("nobody: kept pending until an admin or member joins" if alert.id in held else "not yet"),
        })
    print_table(("id", "raised (UTC)", "patient", "severity", "state", "alert", "values", "heard by"), rows, sys.stdout)
    return 0


def _list_patients(db: Database) -> int:
    """Registered patients with their doctors, caregivers and open alerts."""
    registered = patients.list_patients(db)
    if not registered:
        print('No patients yet. Register one with: hemowatch admin add-patient bed-12 "Ann Smith"')
        return 0
    rows = []
    for patient in registered:
        members = people.members_of(db, patient.id)
        rows.append({
            "id": patient.id, "name": patient.name,
            "doctors": ", ".join(str(m.person.telegram_id) for m in members if m.role is Role.DOCTOR) or "-",
            "caregivers": ", ".join(str(m.person.telegram_id) for m in members if m.role is Role.CAREGIVER) or "-",
            "open alerts": str(len(alerts.open_alerts(db, patient.id))),
        })
    print_table(("id", "name", "doctors", "caregivers", "open alerts"), rows, sys.stdout)
    return 0


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")
