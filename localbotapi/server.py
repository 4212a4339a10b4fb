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
import hashlib
import html
import html.parser
import io
import itertools
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

JSON = dict[str, Any]
Predicate = Callable[[JSON], bool]

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files on api.telegram.org
PHOTO_SIDES = (90, 320, 800, 1280)  # the PhotoSize variants Telegram keeps of a photo
MAX_TEXT = 4096
MAX_CAPTION = 1024
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as secret_token
WEBHOOK_RETRY_S = 0.1  # Telegram retries a failed webhook delivery later; here soon, to keep tests quick
HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "span", "tg-spoiler", "tg-emoji", "blockquote",
}
STRING_FIELDS = {"text", "caption", "parse_mode", "callback_query_id", "file_id", "action", "photo", "document",
                 "url", "secret_token"}
STATUS_TEXT = {
    400: "Bad Request", 403: "Forbidden", 409: "Conflict", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP status, Telegram's description and optional retry_after."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


@dataclass
class ApiCall:
    """One request the bot made, as received (`at` is `time.perf_counter()`)."""

    method: str
    params: JSON
    status: int
    at: float


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    width: int = 0  # photos only
    height: int = 0


@dataclass
class Failure:
    status: int
    retry_after: int | None
    remaining: int  # calls still to fail


@dataclass
class Webhook:
    """The webhook set by `setWebhook`, and how its last delivery failed (for `getWebhookInfo`)."""

    url: str
    secret_token: str | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _Poll:
    """Wakes waiters whenever updates or bot messages change."""

    event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()

    async def until(self, ready: Callable[[], Any], timeout: float) -> Any:
        """Return the first truthy `ready()`, or None after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := ready()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                return None
        return result


class _HtmlText(html.parser.HTMLParser):
    """Telegram's HTML parse mode: the supported tags only, properly closed; collects the plain text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unmatched end tag "{tag}"')

    def handle_data(self, data: str) -> None:
        if "<" in data:  # a bare "<" that is not a tag: Telegram wants it written as &lt;
            raise ApiError(400, f"Bad Request: can't parse entities: Unsupported start tag at \"{data}\"")
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.text.append(html.unescape(f"&#{name};"))


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text a user sees; HTML markup is checked as Telegram does. Markdown is passed through."""
    if (parse_mode or "").upper() != "HTML":
        return text
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    if parser.open:
        raise ApiError(400, f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag {parser.open[-1]}")
    return "".join(parser.text)


def _decode(name: str, value: str) -> Any:
    """Form fields arrive as strings; python-telegram-bot JSON-encodes every non-string value."""
    if name in STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _photo_variants(data: bytes) -> list[tuple[bytes, int, int]]:
    """Re-encode a photo the way Telegram does: JPEG copies up to 1280 px on the long side."""
    with Image.open(io.BytesIO(data)) as image:
        original = image.convert("RGB")
    longest = max(original.size)
    sides = [side for side in PHOTO_SIDES if side < longest] + [min(longest, PHOTO_SIDES[-1])]
    variants = []
    for side in dict.fromkeys(sides):
        copy = original.copy()
        copy.thumbnail((side, side))
        buffer = io.BytesIO()
        copy.save(buffer, "JPEG", quality=87)
        variants.append((buffer.getvalue(), copy.width, copy.height))
    return variants


class BotApiServer:
    """The local Bot API server on a free loopback port. Use `url` as TELEGRAM_API_URL."""

    def __init__(self, token: str = "123456:TEST-token", download_limit: int | None = CLOUD_DOWNLOAD_LIMIT,
                 username: str = "hemowatch_test_bot") -> None:
        self.token = token
        self.download_limit = download_limit
        self.bot_user: JSON = {
            "id": int(token.split(":")[0]), "is_bot": True, "first_name": "HemoWatch",
            "username": username, "can_join_groups": False,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
        }
        self.calls: list[ApiCall] = []
        self.commands: list[JSON] = []
        self.callback_answers: dict[str, JSON] = {}
        self.files: dict[str, StoredFile] = {}
        self.blocked: set[int] = set()
        self.webhook: Webhook | None = None
        self.url = ""
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._messages: dict[tuple[int, int], JSON] = {}  # the bot's messages as they are now
        self._timeline: dict[int, list[JSON]] = defaultdict(list)  # every version the bot sent, per chat
        self._users: dict[int, JSON] = {}  # users who wrote to the bot, so it may write to them
        self._names: dict[int, str] = {}  # first names given by `introduce`
        self._chats: dict[int, dict[int, JSON]] = defaultdict(dict)  # every message of a chat as it is now
        self.version = 0  # counts every change to a conversation or a callback answer
        self._failures: dict[str, Failure] = {}
        self._poll = _Poll()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_delivery: asyncio.Task[None] | None = None
        self._methods: dict[str, Callable[[JSON, dict[str, bytes]], Any]] = {
            "getme": lambda params, files: self.bot_user,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
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

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=2 * 1024**3)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._webhook_delivery = asyncio.create_task(self._deliver_to_webhook())

    async def stop(self) -> None:
        self._closing = True
        self._poll.notify()  # let pending long polls and the webhook delivery return at once
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
        self._names[user_id] = first_name
        self._users[user_id] = self._user(user_id)

    def send_text(self, user_id: int, text: str) -> JSON:
        """User `user_id` writes `text` (a leading /command gets its entity); returns the message."""
        message = self._user_message(user_id, text=text)
        command = text.split(maxsplit=1)[0] if text.startswith("/") else ""
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return self._queue_message(message)

    def send_photo(self, user_id: int, image: bytes, caption: str | None = None) -> JSON:
        """User `user_id` sends a picture as a photo (Telegram re-encodes it to JPEG sizes)."""
        return self._queue_message(self._user_message(user_id, photo=self._store_photo(image), caption=caption))

    def send_document(self, user_id: int, data: bytes, filename: str, mime_type: str | None = None,
                      caption: str | None = None) -> JSON:
        """User `user_id` sends a file as a document, unchanged."""
        stored = self._store(data, "documents", filename.rpartition(".")[2] if "." in filename else "")
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_name": filename, "file_size": len(data)}
        if mime_type:
            document["mime_type"] = mime_type
        return self._queue_message(self._user_message(user_id, document=document, caption=caption))

    def press_button(self, user_id: int, message: JSON, callback_data: str) -> JSON:
        """User `user_id` presses a button of `message` (a bot message in their chat) carrying `callback_data`.

        The data is not checked against the current keyboard, so tests can replay stale or forged buttons.
        """
        if message["chat"]["id"] != user_id:
            raise ValueError(f"message {message['message_id']} is not in the chat of user {user_id}")
        query = {
            "id": str(next(self._callback_ids)), "from": self._user(user_id),
            "message": self._messages.get((user_id, message["message_id"]), message),
            "chat_instance": str(user_id), "data": callback_data,
        }
        self._queue({"callback_query": query})
        return query

    def block(self, user_id: int) -> None:
        """User `user_id` blocks the bot: every message to them answers 403 from now on."""
        self.blocked.add(user_id)

    # --- observation and failure injection ------------------------------------------------------

    async def wait_for_message(self, chat_id: int, predicate: Predicate = lambda message: True,
                               timeout: float = 10.0, after: JSON | int | None = None) -> JSON:
        """The first message the bot sent or edited in `chat_id` that satisfies `predicate`.

        Every version of every message counts, in order. `after` (a message or message id) skips
        messages up to that id, e.g. `after=` the user's own message to see only the replies to it.
        """
        after_id = after["message_id"] if isinstance(after, dict) else (after or 0)

        def found() -> JSON | None:
            return next((m for m in self._timeline[chat_id] if m["message_id"] > after_id and predicate(m)), None)

        message = await self._poll.until(found, timeout)
        if message is None:
            seen = [m.get("text") or m.get("caption") or "<media>" for m in self._timeline[chat_id]]
            raise TimeoutError(f"no matching bot message in chat {chat_id} within {timeout} s; it saw: {seen}")
        return message

    def conversation(self, chat_id: int) -> list[JSON]:
        """The chat as its user sees it: their messages and the bot's, each as it is now, oldest first."""
        return [self._chats[chat_id][message_id] for message_id in sorted(self._chats[chat_id])]

    async def wait_for_change(self, version: int, timeout: float) -> int:
        """The current `version`, once it differs from `version` or after `timeout` seconds."""
        await self._poll.until(lambda: self.version != version or self._closing, timeout)
        return self.version

    def history(self, chat_id: int) -> list[JSON]:
        """Every version of every message the bot sent to `chat_id`, oldest first."""
        return list(self._timeline[chat_id])

    def message(self, chat_id: int, message_id: int) -> JSON:
        """The bot's message as it is now (after any edits)."""
        return self._messages[(chat_id, message_id)]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def file_bytes(self, file_id: str) -> bytes:
        return self.files[file_id].data

    def fail_next(self, method: str, status: int, retry_after: int | None = None, count: int = 1) -> None:
        """Answer the next `count` calls of `method` with HTTP `status` (429 carries `retry_after`)."""
        self._failures[method.lower()] = Failure(status, retry_after, count)

    def recover(self, method: str) -> None:
        """End an injected failure of `method` now."""
        self._failures.pop(method.lower(), None)

    # --- HTTP -----------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._read_params(request)
        try:
            handler = self._methods.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            self._inject_failure(method)
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
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[JSON, dict[str, bytes]]:
        if request.content_type == "application/json":
            return await request.json(), {}
        params: JSON = {name: _decode(name, value) for name, value in request.query.items()}
        files: dict[str, bytes] = {}
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            else:
                params[name] = _decode(name, str(value))
        return params, files

    def _inject_failure(self, method: str) -> None:
        failure = self._failures.get(method.lower())
        if failure is None:
            return
        failure.remaining -= 1
        if failure.remaining <= 0:
            del self._failures[method.lower()]
        reason = STATUS_TEXT.get(failure.status, "Error")
        if failure.retry_after is not None:
            raise ApiError(failure.status, f"{reason}: retry after {failure.retry_after}", failure.retry_after)
        raise ApiError(failure.status, reason)

    # --- methods --------------------------------------------------------------------------------

    async def _get_updates(self, params: JSON, files: dict[str, bytes]) -> list[JSON]:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        pending = await self._poll.until(lambda: self._closing or self.webhook or self._updates,
                                         float(params.get("timeout") or 0))
        if self.webhook is not None:
            raise ApiError(409, "Conflict: terminated by setWebhook request")
        return self._updates[:limit] if pending else []

    def _set_webhook(self, params: JSON, files: dict[str, bytes]) -> bool:
        if not params.get("url"):  # an empty url removes the webhook
            return self._delete_webhook(params, files)
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = Webhook(params["url"], secret, int(params.get("max_connections") or 40))
        self._poll.notify()
        return True

    def _delete_webhook(self, params: JSON, files: dict[str, bytes]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: JSON, files: dict[str, bytes]) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}
        if self.webhook is not None:
            info.update(url=self.webhook.url, max_connections=self.webhook.max_connections)
            if self.webhook.last_error_date is not None:
                info.update(last_error_date=self.webhook.last_error_date,
                            last_error_message=self.webhook.last_error_message)
        return info

    def _set_my_commands(self, params: JSON, files: dict[str, bytes]) -> bool:
        self.commands = params["commands"]
        return True

    def _send_message(self, params: JSON, files: dict[str, bytes]) -> JSON:
        text = plain_text(params.get("text", ""), params.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(params, text=text)

    def _send_photo(self, params: JSON, files: dict[str, bytes]) -> JSON:
        caption = self._caption(params)
        upload = files.get("photo")
        sizes = [self._photo_size(self._known_file(params.get("photo")))] if upload is None else self._store_photo(upload)
        return self._bot_message(params, photo=sizes, caption=caption)

    def _send_document(self, params: JSON, files: dict[str, bytes]) -> JSON:
        caption = self._caption(params)
        upload = files.get("document")
        stored = self._known_file(params.get("document")) if upload is None else self._store(upload, "documents", "")
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.data)}
        return self._bot_message(params, document=document, caption=caption)

    def _send_chat_action(self, params: JSON, files: dict[str, bytes]) -> bool:
        self._chat(params)
        return True

    def _edit_message_text(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._editable(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = plain_text(params.get("text", ""), params.get("parse_mode"))
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._edit(message, text=text, reply_markup=params.get("reply_markup"))

    def _edit_message_caption(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._editable(params)
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
        return self._record(edited)

    def _edit_message_reply_markup(self, params: JSON, files: dict[str, bytes]) -> JSON:
        message = self._editable(params)
        return self._edit(message, text=message.get("text"), reply_markup=params.get("reply_markup"))

    def _answer_callback_query(self, params: JSON, files: dict[str, bytes]) -> bool:
        query_id = str(params["callback_query_id"])
        if query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers[query_id] = params
        self._changed()
        return True

    def _get_file(self, params: JSON, files: dict[str, bytes]) -> JSON:
        stored = self._known_file(params.get("file_id"))
        if self.download_limit is not None and len(stored.data) > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}

    # --- webhook delivery -----------------------------------------------------------------------

    async def _deliver_to_webhook(self) -> None:
        """While a webhook is set, send it the oldest pending update until it accepts, then the next."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self._closing:
                webhook = self.webhook
                if webhook is None or not self._updates:
                    await self._poll.event.wait()
                    continue
                update = self._updates[0]
                error = await self._post_update(session, webhook, update)
                if error is None:
                    if self._updates and self._updates[0] is update:  # not dropped meanwhile
                        self._updates.pop(0)
                else:
                    webhook.last_error_date, webhook.last_error_message = int(time.time()), error
                    await asyncio.sleep(WEBHOOK_RETRY_S)

    @staticmethod
    async def _post_update(session: aiohttp.ClientSession, webhook: Webhook, update: JSON) -> str | None:
        """POST `update` to the webhook; None if it was accepted, else the error getWebhookInfo reports."""
        headers = {} if webhook.secret_token is None else {"X-Telegram-Bot-Api-Secret-Token": webhook.secret_token}
        try:
            async with session.post(webhook.url, json=update, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"Connection failed: {error}"

    # --- helpers --------------------------------------------------------------------------------

    def _user(self, user_id: int) -> JSON:
        first_name = self._names.get(user_id, f"User {user_id}")
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def _user_message(self, user_id: int, **content: Any) -> JSON:
        self._users[user_id] = self._user(user_id)
        message = {
            "message_id": next(self._message_ids[user_id]), "from": self._users[user_id],
            "chat": {"id": user_id, "type": "private", "first_name": self._users[user_id]["first_name"]},
            "date": int(time.time()),
        }
        message.update({key: value for key, value in content.items() if value is not None})
        return message

    def _queue_message(self, message: JSON) -> JSON:
        self._chats[message["chat"]["id"]][message["message_id"]] = message
        self._queue({"message": message})
        return message

    def _queue(self, update: JSON) -> None:
        self._updates.append({"update_id": next(self._update_ids), **update})
        self._changed()

    def _chat(self, params: JSON) -> JSON:
        """The private chat `params` addresses, checked as Telegram checks it."""
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._users:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return {"id": chat_id, "type": "private", "first_name": self._users[chat_id]["first_name"]}

    def _caption(self, params: JSON) -> str | None:
        if params.get("caption") is None:
            return None
        caption = plain_text(params["caption"], params.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return caption

    def _bot_message(self, params: JSON, **content: Any) -> JSON:
        chat = self._chat(params)
        message = {"message_id": next(self._message_ids[chat["id"]]), "from": self.bot_user, "chat": chat,
                   "date": int(time.time())}
        message.update({key: value for key, value in content.items() if value is not None})
        keyboard = params.get("reply_markup")
        if isinstance(keyboard, dict) and "inline_keyboard" in keyboard:
            message["reply_markup"] = keyboard
        return self._record(message)

    def _editable(self, params: JSON) -> JSON:
        chat = self._chat(params)
        message = self._messages.get((chat["id"], int(params.get("message_id") or 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

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
        return self._record(edited)

    def _record(self, message: JSON) -> JSON:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        self._timeline[message["chat"]["id"]].append(message)
        self._chats[message["chat"]["id"]][message["message_id"]] = message
        self._changed()
        return message

    def _changed(self) -> None:
        self.version += 1
        self._poll.notify()

    def _store_photo(self, image: bytes) -> list[JSON]:
        return [self._photo_size(self._store(data, "photos", "jpg", width, height))
                for data, width, height in _photo_variants(image)]

    def _store(self, data: bytes, folder: str, extension: str, width: int = 0, height: int = 0) -> StoredFile:
        number = next(self._file_ids)
        stored = StoredFile(
            file_id=f"file-{number}", file_unique_id=hashlib.sha256(data).hexdigest()[:16],
            file_path=f"{folder}/file_{number}" + (f".{extension}" if extension else ""), data=data,
            width=width, height=height,
        )
        self.files[stored.file_id] = stored
        return stored

    def _known_file(self, file_id: Any) -> StoredFile:
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return self.files[file_id]

    @staticmethod
    def _photo_size(stored: StoredFile) -> JSON:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "width": stored.width, "height": stored.height, "file_size": len(stored.data)}
