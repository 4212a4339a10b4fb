"""The Bot API methods the bot calls, each checked as Telegram checks it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from localbotapi.changes import Changes
from localbotapi.chats import Chats
from localbotapi.files import FileStore, photo_size
from localbotapi.markup import plain_text
from localbotapi.protocol import JSON, ApiError
from localbotapi.updates import Updates

MAX_TEXT = 4096
MAX_CAPTION = 1024

Method = Callable[[JSON, dict[str, bytes]], Any]  # (parameters, uploaded files) -> result, or its coroutine


class BotMethods:
    def __init__(self, chats: Chats, updates: Updates, files: FileStore, changes: Changes,
                 download_limit: int | None) -> None:
        self.commands: list[JSON] = []
        self.callback_answers: dict[str, JSON] = {}
        self._chats = chats
        self._updates = updates
        self._files = files
        self._changes = changes
        self._download_limit = download_limit
        self.by_name: dict[str, Method] = {  # lower-case, as Telegram matches method names
            "getme": lambda params, files: chats.bot_user,
            "getupdates": lambda params, files: updates.get_updates(params),
            "setwebhook": lambda params, files: updates.set_webhook(params),
            "deletewebhook": lambda params, files: updates.delete_webhook(params),
            "getwebhookinfo": lambda params, files: updates.webhook_info(),
            "setmycommands": self._set_my_commands,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "sendchataction": self._send_chat_action,
        }

    def _set_my_commands(self, params: JSON, files: dict[str, bytes]) -> bool:
        self.commands = params["commands"]
        return True

    def _send_message(self, params: JSON, files: dict[str, bytes]) -> JSON:
        text = plain_text(params.get("text", ""), params.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._chats.bot_message(params, text=text)

    def _send_photo(self, params: JSON, files: dict[str, bytes]) -> JSON:
        caption = self._caption(params)
        upload = files.get("photo")
        sizes = ([photo_size(self._files.known(params.get("photo")))] if upload is None
                 else self._files.store_photo(upload))
        return self._chats.bot_message(params, photo=sizes, caption=caption)

    def _send_document(self, params: JSON, files: dict[str, bytes]) -> JSON:
        caption = self._caption(params)
        upload = files.get("document")
        stored = (self._files.known(params.get("document")) if upload is None
                  else self._files.store(upload, "documents", ""))
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.data)}
        return self._chats.bot_message(params, document=document, caption=caption)

    def _send_chat_action(self, params: JSON, files: dict[str, bytes]) -> bool:
        self._chats.chat(params)
        return True

    def _edit_message_text(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._chats.editable(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = plain_text(params.get("text", ""), params.get("parse_mode"))
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._edit(message, text=text, reply_markup=params.get("reply_markup"))

    def _edit_message_caption(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._chats.editable(params)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._caption(params) or ""
        keyboard = params.get("reply_markup")
        keyboard = keyboard if isinstance(keyboard, dict) and keyboard.get("inline_keyboard") else None
        if caption == message.get("caption") and keyboard == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified")
        edited = {key: value for key, value in message.items() if key not in ("caption", "reply_markup")}
        edited.update(edit_date=int(time.time()), caption=caption)
        if keyboard is not None:
            edited["reply_markup"] = keyboard
        return self._chats.record(edited)

    def _edit_message_reply_markup(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._chats.editable(params)
        return self._edit(message, text=message.get("text"), reply_markup=params.get("reply_markup"))

    def _answer_callback_query(self, params: JSON, files: dict[str, bytes]) -> bool:
        query_id = str(params["callback_query_id"])
        if query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers[query_id] = params
        self._changes.count()
        return True

    def _get_file(self, params: JSON, files: dict[str, bytes]) -> JSON:
        stored = self._files.known(params.get("file_id"))
        if self._download_limit is not None and len(stored.data) > self._download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}

    @staticmethod
    def _caption(params: JSON) -> str | None:
        if params.get("caption") is None:
            return None
        caption = plain_text(params["caption"], params.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return caption

    def _edit(self, message: JSON, text: str | None, reply_markup: JSON | None) -> JSON:
        keyboard = reply_markup if isinstance(reply_markup, dict) and reply_markup.get("inline_keyboard") else None
        if text == message.get("text") and keyboard == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        edited = {key: value for key, value in message.items() if key not in ("text", "reply_markup")}
        edited["edit_date"] = int(time.time())
        if text is not None:
            edited["text"] = text
        if keyboard is not None:
            edited["reply_markup"] = keyboard
        return self._chats.record(edited)
