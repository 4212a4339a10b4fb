"""Direct messages to the admins named in ADMIN_USER_IDS (an admin's chat id is their user id), without the store."""

from __future__ import annotations

from functools import partial

from telegram import Bot
from telegram.constants import ParseMode

from bot.telegram_calls import keep_trying


async def tell_admins(bot: Bot, admin_ids: frozenset[int], text: str, what: str) -> None:
    """Send `text` (HTML) to each admin, trying again while Telegram fails; an admin Telegram refuses (one who
    never opened the bot, say) is logged and left out. `what` names the message in the log."""
    for admin_id in sorted(admin_ids):
        send = partial(bot.send_message, admin_id, text, parse_mode=ParseMode.HTML)
        await keep_trying(f"{what} to admin {admin_id}", send)
