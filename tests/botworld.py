"""The real bot (`bot.application.build_application`) polling the local Bot API server, with a real SQLite file
and a controllable clock; tests play admins, doctors and caregivers through it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from telegram.ext import Application

from bot.application import build_application
from core.roles import Role
from core.settings import Settings
from localbotapi import JSON, BotApiServer
from store import open_database, patients, people
from store.thread import StoreThread
from testsupport.doubles import ManualClock
from testsupport.waiting import eventually

ADMIN = 1
DOCTOR = 10
PATIENT = "ward-1"


def settings_for(bot_api: BotApiServer, db_path: Path, **overrides: object) -> Settings:
    """Settings for a service under test; the DICOM node is off unless `overrides` give it a port."""
    values: dict[str, object] = {"admin_user_ids": frozenset({ADMIN}), "dicom_port": 0} | overrides
    return Settings(
        _env_file=None, telegram_bot_token=bot_api.token, telegram_api_url=bot_api.url, hemowatch_db=db_path, **values,
    )


@dataclass
class BotWorld:
    api: BotApiServer
    application: Application
    clock: ManualClock
    db: sqlite_utils.Database  # the tests' own connection; the bot uses its store thread

    async def say(self, user_id: int, text: str) -> JSON:
        """User `user_id` writes `text`; returns the bot's first reply."""
        sent = self.api.send_text(user_id, text)
        return await self.api.wait_for_message(user_id, after=sent)

    async def press(self, user_id: int, message: JSON, data: str) -> JSON:
        """User `user_id` presses a button with `data` under `message`; returns the callback answer."""
        query = self.api.press_button(user_id, message, data)
        answers = self.api.callback_answers
        await eventually(lambda: query["id"] in answers, 10, f"an answer to button {data!r} of user {user_id}")
        return answers[query["id"]]

    def add_patient(self, patient_id: str, doctor: int | None = None) -> None:
        patients.add_patient(self.db, patient_id, f"Patient {patient_id}", self.clock())
        if doctor is not None:
            people.add_member(self.db, patient_id, doctor, Role.DOCTOR, self.clock())

    def add_person(self, telegram_id: int, role: Role, patient_id: str | None = None) -> None:
        """A person who joined through an invitation (made and redeemed in the store)."""
        invitation = people.create_invitation(self.db, role, patient_id, ADMIN, self.clock(), 3600)
        people.redeem_invitation(self.db, invitation.code, telegram_id, f"User {telegram_id}", telegram_id,
                                 self.clock())


@asynccontextmanager
async def running_bot(bot_api: BotApiServer, tmp_path: Path, **overrides: object) -> AsyncIterator[BotWorld]:
    clock = ManualClock(time.time())  # from the real time, so records made by `hemowatch admin` fit in
    settings = settings_for(bot_api, tmp_path / "hemowatch.db", **overrides)
    store = StoreThread("hemowatch-bot")
    await store.open(settings.hemowatch_db)
    db = open_database(settings.hemowatch_db)
    application = build_application(settings, None, store, clock)
    async with application:
        await application.updater.start_polling(poll_interval=0, timeout=5)
        await application.start()
        try:
            yield BotWorld(bot_api, application, clock, db)
        finally:
            await application.updater.stop()
            await application.stop()
    db.close()
    await store.close()


@asynccontextmanager
async def running_ward(bot_api: BotApiServer, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The running bot with one patient, PATIENT, whose doctor is DOCTOR."""
    async with running_bot(bot_api, tmp_path) as world:
        world.add_person(DOCTOR, Role.DOCTOR)
        world.add_patient(PATIENT, doctor=DOCTOR)
        yield world
