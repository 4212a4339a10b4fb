"""What every handler shares, kept in `application.bot_data` under one key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils
from telegram.ext import ContextTypes

from core.settings import Settings
from inference.analyzer import Analyzer

_KEY = "services"


@dataclass
class Services:
    settings: Settings
    db: sqlite_utils.Database
    clock: Callable[[], float]  # seconds since the epoch; tests pass a controllable one
    analyzer: Analyzer | None  # None when the bot runs without scan triage


def install(bot_data: dict, services: Services) -> None:
    bot_data[_KEY] = services


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    """The shared services of the running bot."""
    return context.bot_data[_KEY]
