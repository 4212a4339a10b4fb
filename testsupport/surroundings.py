"""What the whole service runs against in a benchmark: a mosquitto broker, a local Bot API server, and the
settings that point the service at both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from localbotapi import BotApiServer
from testsupport.broker import Mosquitto, free_port


@dataclass(frozen=True)
class Surroundings:
    broker: Mosquitto
    api: BotApiServer
    settings: Settings


@asynccontextmanager
async def surroundings(workdir: Path, **settings: Any) -> AsyncIterator[Surroundings]:
    """A broker and a Bot API server running; the settings use them and a database in `workdir`, with
    `settings` on top (no .env file is read)."""
    broker = Mosquitto(free_port(), workdir)
    broker.start()
    try:
        async with BotApiServer() as api:
            yield Surroundings(broker, api, Settings(
                _env_file=None, telegram_bot_token=api.token, telegram_api_url=api.url,
                hemowatch_db=workdir / "hemowatch.db", mqtt_url=broker.url, **settings,
            ))
    finally:
        broker.stop()
