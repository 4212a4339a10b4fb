"""What every handler shares (settings, the store, the clock, the analyzer and where the site profile in use is
found), kept in `application.bot_data`.

Handlers reach SQLite only through `store.call(function, *args)`, which runs the store function on the bot's
store thread, so a slow disk never stalls the event loop (updates, alert delivery, the monitor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils
from telegram.ext import ContextTypes

from bot.stats import BotStats
from core.settings import Settings
from inference.analyzer import ScanAnalyzer
from inference.site_profile import SiteProfile
from store.thread import StoreThread

KEY = "shared"  # where the BotData lives in `application.bot_data`

SiteProfileLookup = Callable[[sqlite_utils.Database], SiteProfile | None]
"""The site profile in use for the analyzer's model, read from the store at each verdict (None: none)."""


def no_site_profile(_: sqlite_utils.Database) -> None:
    return None


@dataclass
class BotData:
    settings: Settings
    store: StoreThread  # the bot's own connection, on a worker thread of its own
    clock: Callable[[], float]  # seconds since the epoch; tests pass a controllable one
    analyzer: ScanAnalyzer | None  # None when the bot runs without scan triage
    site_profile: SiteProfileLookup = no_site_profile
    stats: BotStats = field(default_factory=BotStats)
    alert_edits: asyncio.Lock = field(default_factory=asyncio.Lock)  # one Acknowledge press edits copies at a time
    site_announcing: asyncio.Lock = field(default_factory=asyncio.Lock)  # each profile change is told once


def install(application_bot_data: dict, shared: BotData) -> None:
    application_bot_data[KEY] = shared


def bot_data(context: ContextTypes.DEFAULT_TYPE) -> BotData:
    """The shared objects of the running bot."""
    return context.bot_data[KEY]
