"""`hemowatch run`: the bot and the vitals monitor until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from telegram.error import InvalidToken

from core.ports import PortTaken
from core.settings import Settings, env_files_looked_at
from hemowatch.instance_lock import AlreadyRunning
from hemowatch.signals import stop_on_signals
from hemowatch.wiring import serve

NO_TOKEN = (
    "HemoWatch needs a Telegram bot token to run; TELEGRAM_BOT_TOKEN is set neither in the environment nor in a "
    ".env file (looked for: {env_files}).\n"
    "1. In Telegram, open @BotFather, send /newbot and follow the steps; it answers with a token.\n"
    "2. Copy .env.example to .env and put the token after TELEGRAM_BOT_TOKEN= (or set that environment "
    "variable).\n"
    "Then start HemoWatch again."
)

INVALID_TOKEN = (
    "Telegram refused the bot token in TELEGRAM_BOT_TOKEN. Copy it again from @BotFather (/mybots, API Token)."
)


def run_service(settings: Settings) -> int:
    """`hemowatch run`: serve until SIGINT or SIGTERM."""
    if settings.telegram_bot_token is None:
        print(NO_TOKEN.format(env_files=env_files_looked_at()), file=sys.stderr)
        return 2

    logging.getLogger("transitions").setLevel(logging.WARNING)  # the embedded broker's state machine chatter

    async def main() -> None:
        await serve(settings, stop_on_signals())

    try:
        asyncio.run(main())
    except InvalidToken:
        print(INVALID_TOKEN, file=sys.stderr)
        return 2
    except (PortTaken, AlreadyRunning) as error:
        print(error, file=sys.stderr)
        return 1
    return 0
