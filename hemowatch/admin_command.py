"""`hemowatch admin`: create a doctor invitation or register a patient from the server's shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import sqlite_utils
from telegram import Bot
from telegram.error import TelegramError
from telegram.helpers import create_deep_linked_url

from core.roles import Role
from core.settings import Settings
from store import open_database, patients, people


def run_admin(args: argparse.Namespace, settings: Settings) -> int:
    db = open_database(settings.hemowatch_db)
    try:
        if args.admin_command == "invite":
            return _invite_doctor(db, settings)
        return _add_patient(db, args.patient_id, args.name)
    finally:
        db.close()


def _invite_doctor(db: sqlite_utils.Database, settings: Settings) -> int:
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


def _add_patient(db: sqlite_utils.Database, patient_id: str, name: str) -> int:
    try:
        patient = patients.add_patient(db, patient_id, name, time.time())
    except ValueError as error:
        print(f"Cannot add the patient: {error}.", file=sys.stderr)
        return 1
    print(f"Patient {patient.id} ({patient.name}) registered. An admin links a doctor to them "
          f"with /invite doctor {patient.id} in the bot.")
    return 0
