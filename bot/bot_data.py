"""What every handler shares (settings, the store, the clock, the analyzer), kept in `application.bot_data`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils
from telegram.ext import ContextTypes

from core.settings import Settings
from inference.analyzer import Analyzer

KEY = "shared"  # where the BotData lives in `application.bot_data`


@dataclass
class BotData:
    settings: Settings
    db: sqlite_utils.Database
    clock: Callable[[], float]  # seconds since the epoch; tests pass a controllable one
    analyzer: Analyzer | None  # None when the bot runs without scan triage


def install(application_bot_data: dict, shared: BotData) -> None:
    application_bot_data[KEY] = shared


def bot_data(context: ContextTypes.DEFAULT_TYPE) -> BotData:
    """The shared objects of the running bot."""
    return context.bot_data[KEY]
