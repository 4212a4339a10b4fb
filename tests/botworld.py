"""The real bot (`bot.application.build_application`) polling the local Bot API server, with a real store (the
`database` fixture) and a controllable clock; tests play admins, doctors and caregivers through it.
`adopt_card_profile` puts a site profile in use as `hemowatch site commission` would."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from telegram.ext import Application

from bot.application import build_application
from core.roles import Role
from core.settings import DEFAULT_MODEL, Settings
from inference.model import ModelCard
from inference.site_profile import SiteProfile
from localbotapi import JSON, BotApiServer
from stores import store_settings
from store import open_database, patients, people, site_profiles
from store.thread import StoreThread
from store.database import Database
from testsupport.doubles import ManualClock
from testsupport.waiting import eventually

ADMIN = 1
DOCTOR = 10
PATIENT = "ward-1"


def settings_for(bot_api: BotApiServer, database: Path | str, folder: Path, **overrides: object) -> Settings:
    """Settings for a service under test on the store at `database` (files of its own go in `folder`); the DICOM
    node is off unless `overrides` give it a port."""
    values = {"admin_user_ids": frozenset({ADMIN}), "dicom_port": 0} | store_settings(database, folder) | overrides
    return Settings(_env_file=None, telegram_bot_token=bot_api.token, telegram_api_url=bot_api.url, **values)


# Figures as commissioning stores them (`Figures.to_dict`): the shipped model against the adopted profile.
FIGURES = {
    "shipped": {"cases": 60, "positives": 24, "auc": 0.85, "auc_low": 0.75, "auc_high": 0.93, "sensitivity": 0.96,
                "specificity": 0.4, "alerts_per_100": 62.0},
    "candidate": {"cases": 60, "positives": 24, "auc": 0.9, "auc_low": 0.82, "auc_high": 0.96, "sensitivity": 0.96,
                  "specificity": 0.55, "alerts_per_100": 53.0},
    "reason": "the candidate ranks these cases at least as well as the shipped model",
}


def adopt_card_profile(db: Database, n_cases: int, now: float, by: str = "ana (command line)") -> int:
    """Adopt a site profile made of the model card's own head and thresholds (so it judges as the shipped model
    does), said to be fitted on `n_cases` cases; returns its id."""
    card = ModelCard.beside(DEFAULT_MODEL)
    profile = SiteProfile(card.sha256, card.head.weights.astype(float), card.head.bias, card.head.slope,
                          card.head.intercept, card.threshold, card.study)
    return site_profiles.adopt_profile(
        db, profile_json=profile.to_json(), figures=FIGURES, case_ids=list(range(1, n_cases + 1)),
        model_sha256=card.sha256, model_version=card.version, n_patients=30, n_bleeding=12, sensitivity_target=0.95,
        by=by, now=now,
    )


@dataclass
class BotWorld:
    api: BotApiServer
    application: Application
    clock: ManualClock
    db: Database  # the tests' own connection; the bot uses its store thread

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
async def running_bot(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path, **overrides: object
) -> AsyncIterator[BotWorld]:
    clock = ManualClock(time.time())  # from the real time, so records made by `hemowatch admin` fit in
    settings = settings_for(bot_api, database, tmp_path, **overrides)
    store = StoreThread("hemowatch-bot")
    await store.open(settings.database)
    db = open_database(settings.database)
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
async def running_ward(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The running bot with one patient, PATIENT, whose doctor is DOCTOR."""
    async with running_bot(bot_api, database, tmp_path) as world:
        world.add_person(DOCTOR, Role.DOCTOR)
        world.add_patient(PATIENT, doctor=DOCTOR)
        yield world
