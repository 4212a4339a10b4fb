"""A local stand-in for the Telegram Bot API, for the demo and for tests and benchmarks that drive the real bot.

It speaks the HTTP protocol python-telegram-bot uses (form, multipart or JSON POST to
`/bot<token>/<method>`, answers `{"ok": true, "result": ...}` or `{"ok": false, "error_code": ...,
"description": ..., "parameters": {"retry_after": N}}`, file downloads under `/file/bot<token>/<path>`)
and mimics the behaviour a bot meets in production:

- message ids count per chat; updates carry increasing `update_id`s and are confirmed by `offset`;
  `getUpdates` long-polls;
- while a webhook is set (`setWebhook`), updates are POSTed to it as JSON one at a time, in order, with
  the `X-Telegram-Bot-Api-Secret-Token` header when a secret was given; an update stays pending (and is
  sent again) until the webhook answers 2xx; `getUpdates` is a 409 Conflict meanwhile. As with a
  `telegram-bot-api --local` server, the webhook may be plain HTTP on any port;
- commands carry a `bot_command` entity; photos arrive as a list of JPEG `PhotoSize`s no larger than
  1280 pixels (as the apps send them); documents carry file_id, file_name, mime_type and file_size;
- `getFile` refuses files over the cloud server's 20 MB download cap ("file is too big");
- HTML `parse_mode` is parsed (the stored text is the plain text, bad markup is a 400), text longer than
  4096 characters and captions longer than 1024 are refused, editing a message to the same content is a
  400 "message is not modified";
- the bot cannot write first to a user who never wrote to it, and gets 403 from a user who blocked it.

Tests and the demo's chat page play the users (`introduce`, `send_text`, `send_photo`, `send_document`,
`press_button`), observe the bot (`wait_for_message`, `calls`, `conversation`, `wait_for_change`) and tests inject
failures (`fail_next`, `block`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from aiohttp import web

from localbotapi.changes import Changes
from localbotapi.chats import Chats
from localbotapi.failures import InjectedFailures
from localbotapi.files import CLOUD_DOWNLOAD_LIMIT, FileStore, StoredFile
from localbotapi.form import read_params
from localbotapi.methods import BotMethods
from localbotapi.protocol import JSON, ApiCall, ApiError
from localbotapi.updates import Updates

Predicate = Callable[[JSON], bool]


class BotApiServer:
    """The local Bot API server on a free loopback port. Use `url` as TELEGRAM_API_URL."""

    def __init__(self, token: str = "123456:TEST-token", download_limit: int | None = CLOUD_DOWNLOAD_LIMIT,
                 username: str = "hemowatch_test_bot") -> None:
        self.token = token
        self.url = ""
        self.calls: list[ApiCall] = []
        bot_user: JSON = {
            "id": int(token.split(":")[0]), "is_bot": True, "first_name": "HemoWatch",
            "username": username, "can_join_groups": False,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
        }
        self._changes = Changes()
        self._chats = Chats(bot_user, self._changes)
        self._updates = Updates(self._changes)
        self._files = FileStore()
        self._methods = BotMethods(self._chats, self._updates, self._files, self._changes, download_limit)
        self._failures = InjectedFailures()
        self._callback_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._webhook_delivery: asyncio.Task[None] | None = None

    @property
    def version(self) -> int:
        """Counts every change to a conversation or a callback answer."""
        return self._changes.version

    @property
    def commands(self) -> list[JSON]:
        """The command menu the bot set."""
        return self._methods.commands

    @property
    def callback_answers(self) -> dict[str, JSON]:
        """The bot's answers to button presses, by callback query id."""
        return self._methods.callback_answers

    @property
    def files(self) -> dict[str, StoredFile]:
        return self._files.by_id

    @property
    def blocked(self) -> set[int]:
        """Users who blocked the bot."""
        return self._chats.blocked

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=2 * 1024**3)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._webhook_delivery = asyncio.create_task(self._updates.deliver_to_webhook())

    async def stop(self) -> None:
        self._updates.close()
        if self._webhook_delivery is not None:
            await self._webhook_delivery
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> BotApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- users ----------------------------------------------------------------------------------

    def introduce(self, user_id: int, first_name: str) -> None:
        """User `user_id`, called `first_name`, has opened the bot (so the bot may write to them first)."""
        self._chats.introduce(user_id, first_name)

    def send_text(self, user_id: int, text: str) -> JSON:
        """User `user_id` writes `text` (a leading /command gets its entity); returns the message."""
        command = text.split(maxsplit=1)[0] if text.startswith("/") else ""
        entities = [{"type": "bot_command", "offset": 0, "length": len(command)}] if command else None
        return self._queue_message(self._chats.user_message(user_id, text=text, entities=entities))

    def send_photo(self, user_id: int, image: bytes, caption: str | None = None) -> JSON:
        """User `user_id` sends a picture as a photo (Telegram re-encodes it to JPEG sizes)."""
        return self._queue_message(self._chats.user_message(user_id, photo=self._files.store_photo(image),
                                                            caption=caption))

    def send_document(self, user_id: int, data: bytes, filename: str, mime_type: str | None = None,
                      caption: str | None = None) -> JSON:
        """User `user_id` sends a file as a document, unchanged."""
        stored = self._files.store(data, "documents", filename.rpartition(".")[2] if "." in filename else "")
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_name": filename, "file_size": len(data)}
        if mime_type:
            document["mime_type"] = mime_type
        return self._queue_message(self._chats.user_message(user_id, document=document, caption=caption))

    def press_button(self, user_id: int, message: JSON, callback_data: str) -> JSON:
        """User `user_id` presses a button of `message` (a bot message in their chat) carrying `callback_data`.

        The data is not checked against the current keyboard, so tests can replay stale or forged buttons.
        """
        if message["chat"]["id"] != user_id:
            raise ValueError(f"message {message['message_id']} is not in the chat of user {user_id}")
        query = {
            "id": str(next(self._callback_ids)), "from": self._chats.user(user_id),
            "message": self._chats.current.get((user_id, message["message_id"]), message),
            "chat_instance": str(user_id), "data": callback_data,
        }
        self._updates.queue({"callback_query": query})
        return query

    def block(self, user_id: int) -> None:
        """User `user_id` blocks the bot: every message to them answers 403 from now on."""
        self._chats.blocked.add(user_id)

    def _queue_message(self, message: JSON) -> JSON:
        self._updates.queue({"message": message})
        return message

    # --- observation and failure injection ------------------------------------------------------

    async def wait_for_message(self, chat_id: int, predicate: Predicate = lambda message: True,
                               timeout: float = 10.0, after: JSON | int | None = None) -> JSON:
        """The first message the bot sent or edited in `chat_id` that satisfies `predicate`.

        Every version of every message counts, in order. `after` (a message or message id) skips
        messages up to that id, e.g. `after=` the user's own message to see only the replies to it.
        """
        after_id = after["message_id"] if isinstance(after, dict) else (after or 0)

        def found() -> JSON | None:
            return next((m for m in self._chats.history(chat_id) if m["message_id"] > after_id and predicate(m)),
                        None)

        message = await self._changes.until(found, timeout)
        if message is None:
            seen = [m.get("text") or m.get("caption") or "<media>" for m in self._chats.history(chat_id)]
            raise TimeoutError(f"no matching bot message in chat {chat_id} within {timeout} s; it saw: {seen}")
        return message

    def conversation(self, chat_id: int) -> list[JSON]:
        """The chat as its user sees it: their messages and the bot's, each as it is now, oldest first."""
        return self._chats.conversation(chat_id)

    async def wait_for_change(self, version: int, timeout: float) -> int:
        """The current `version`, once it differs from `version` or after `timeout` seconds."""
        await self._changes.until(lambda: self.version != version or self._updates.closing, timeout)
        return self.version

    def history(self, chat_id: int) -> list[JSON]:
        """Every version of every message the bot sent to `chat_id`, oldest first."""
        return self._chats.history(chat_id)

    def message(self, chat_id: int, message_id: int) -> JSON:
        """The bot's message as it is now (after any edits)."""
        return self._chats.current[(chat_id, message_id)]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def file_bytes(self, file_id: str) -> bytes:
        return self._files.by_id[file_id].data

    def fail_next(self, method: str, status: int, retry_after: int | None = None, count: int = 1) -> None:
        """Answer the next `count` calls of `method` with HTTP `status` (429 carries `retry_after`)."""
        self._failures.add(method, status, retry_after, count)

    # --- HTTP -----------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await read_params(request)
        try:
            handler = self._methods.by_name.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            self._failures.raise_if_due(method)
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as error:
            self.calls.append(ApiCall(method, params, error.status, time.perf_counter()))
            body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
            if error.retry_after is not None:
                body["parameters"] = {"retry_after": error.retry_after}
            return web.json_response(body, status=error.status)
        self.calls.append(ApiCall(method, params, 200, time.perf_counter()))
        return web.json_response({"ok": True, "result": result})

    async def _handle_download(self, request: web.Request) -> web.Response:
        stored = self._files.at_path(request.match_info["path"])
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")
