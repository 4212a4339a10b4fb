"""The users and their private chats with the bot as Telegram keeps them: who the bot may write to, every
message as it is now, and every version of the bot's messages."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from typing import Any

from localbotapi.changes import Changes
from localbotapi.protocol import JSON, ApiError


class Chats:
    def __init__(self, bot_user: JSON, changes: Changes) -> None:
        self.bot_user = bot_user
        self.blocked: set[int] = set()
        self.current: dict[tuple[int, int], JSON] = {}  # the bot's messages as they are now
        self._changes = changes
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._timeline: dict[int, list[JSON]] = defaultdict(list)  # every version the bot sent, per chat
        self._users: dict[int, JSON] = {}  # users who wrote to the bot, so it may write to them
        self._names: dict[int, str] = {}  # first names given by `introduce`
        self._chats: dict[int, dict[int, JSON]] = defaultdict(dict)  # every message of a chat as it is now

    def introduce(self, user_id: int, first_name: str) -> None:
        self._names[user_id] = first_name
        self._users[user_id] = self.user(user_id)

    def user(self, user_id: int) -> JSON:
        first_name = self._names.get(user_id, f"User {user_id}")
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def user_message(self, user_id: int, **content: Any) -> JSON:
        """A new message from the user in their chat (from now on the bot may write to them)."""
        self._users[user_id] = self.user(user_id)
        message = {
            "message_id": next(self._message_ids[user_id]), "from": self._users[user_id],
            "chat": {"id": user_id, "type": "private", "first_name": self._users[user_id]["first_name"]},
            "date": int(time.time()),
        }
        message.update({key: value for key, value in content.items() if value is not None})
        self._chats[user_id][message["message_id"]] = message
        return message

    def chat(self, params: JSON) -> JSON:
        """The private chat `params` addresses, checked as Telegram checks it."""
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._users:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return {"id": chat_id, "type": "private", "first_name": self._users[chat_id]["first_name"]}

    def bot_message(self, params: JSON, **content: Any) -> JSON:
        """A new message from the bot in the chat `params` addresses, with its inline keyboard if any."""
        chat = self.chat(params)
        message = {"message_id": next(self._message_ids[chat["id"]]), "from": self.bot_user, "chat": chat,
                   "date": int(time.time())}
        message.update({key: value for key, value in content.items() if value is not None})
        keyboard = params.get("reply_markup")
        if isinstance(keyboard, dict) and "inline_keyboard" in keyboard:
            message["reply_markup"] = keyboard
        return self.record(message)

    def editable(self, params: JSON) -> JSON:
        """The bot's message `params` names, as it is now."""
        chat = self.chat(params)
        message = self.current.get((chat["id"], int(params.get("message_id") or 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    def record(self, message: JSON) -> JSON:
        """A new version of a bot message."""
        self.current[(message["chat"]["id"], message["message_id"])] = message
        self._timeline[message["chat"]["id"]].append(message)
        self._chats[message["chat"]["id"]][message["message_id"]] = message
        self._changes.count()
        return message

    def history(self, chat_id: int) -> list[JSON]:
        """Every version of every message the bot sent to `chat_id`, oldest first."""
        return list(self._timeline[chat_id])

    def conversation(self, chat_id: int) -> list[JSON]:
        """The chat as its user sees it: their messages and the bot's, each as it is now, oldest first."""
        return [self._chats[chat_id][message_id] for message_id in sorted(self._chats[chat_id])]
