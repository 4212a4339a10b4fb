"""The demo's web chat page: plays the demo's people through the local Bot API server and shows the bot's answers.

The page never calls the service: it posts updates as a user would (text, photo, document, a button press) and
reads the chat back as the Bot API server holds it (messages as they are now after edits, photos, inline
keyboards, answers to button presses).

It acts as the demo's people, so only the page itself may use it: another web site open in the same browser
could otherwise post `/invite doctor` as the admin. A request with an `Origin` other than the page's own, or a
`Sec-Fetch-Site` other than `same-origin`, is refused, and so is one naming any host but this machine (a DNS
name rebound to 127.0.0.1 makes another site look same-origin); the JSON routes take only `application/json`,
which a cross-site form or simple request cannot send.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from hemowatch.demo.bedside import BedsideDevice
from hemowatch.demo.cast import EXAMPLES, EXAMPLES_DIR, PATIENT_ID, PATIENT_NAME, PEOPLE
from localbotapi import JSON, BotApiServer

PAGE_DIR = Path(__file__).resolve().parent / "page"
LONG_POLL_S = 15.0
BUTTON_ANSWER_S = 10.0
PICTURES = (".png", ".jpg", ".jpeg")
MAX_REQUEST_BYTES = 200 * 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def chat_message(message: JSON) -> JSON:
    """What the page shows of one message."""
    shown: JSON = {
        "id": message["message_id"],
        "from_bot": bool(message["from"].get("is_bot")),
        "text": message.get("text") or message.get("caption") or "",
        "date": message["date"],
        "edited": message.get("edit_date"),  # when it was last edited, if it was
    }
    if message.get("photo"):
        shown["photo"] = max(message["photo"], key=lambda size: size["width"] * size["height"])["file_id"]
    if message.get("document"):
        shown["document"] = message["document"].get("file_name") or "file"
    keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    shown["buttons"] = [[{"text": b["text"], "data": b.get("callback_data", "")} for b in row] for row in keyboard]
    return shown


class ChatPage:
    """The page's HTTP routes; `app` is served by the demo command."""

    def __init__(
        self, api: BotApiServer, bedside: BedsideDevice, rule_hold_s: float, escalate_after_s: float,
        examples_trained_on: bool,
    ) -> None:
        self._api = api
        self._bedside = bedside
        self._setup = {
            "people": [{"id": p.telegram_id, "name": p.name, "role": p.role.value} for p in PEOPLE],
            "patient": {"id": PATIENT_ID, "name": PATIENT_NAME},
            "examples": [{"file": e.file, "title": e.title} for e in EXAMPLES],
            "examples_trained_on": examples_trained_on,  # the model was trained on the examples' collection
            "rule_hold_s": rule_hold_s,
            "escalate_after_s": escalate_after_s,
        }
        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_only_this_page])
        self.app.router.add_get("/", self._index)
        self.app.router.add_static("/page", PAGE_DIR)
        self.app.router.add_static("/examples", EXAMPLES_DIR)
        self.app.router.add_get("/api/setup", self._get_setup)
        self.app.router.add_get("/api/chat", self._get_chat)
        self.app.router.add_get("/api/file/{file_id}", self._get_file)
        self.app.router.add_post("/api/send", self._send_text)
        self.app.router.add_post("/api/example", self._send_example)
        self.app.router.add_post("/api/upload", self._upload)
        self.app.router.add_post("/api/press", self._press)
        self.app.router.add_post("/api/scenario", self._scenario)

    # --- reading -----------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def _get_setup(self, request: web.Request) -> web.Response:
        return web.json_response(self._setup | {"scenario": self._bedside.scenario})

    async def _get_chat(self, request: web.Request) -> web.Response:
        """One person's chat; with `version`, waits until something changed since that version."""
        user = self._person(request.query.get("user"))
        if "version" in request.query:
            await self._api.wait_for_change(_int(request.query["version"]), LONG_POLL_S)
        counts = {p["id"]: sum(m["from"].get("is_bot", False) for m in self._api.conversation(p["id"]))
                  for p in self._setup["people"]}
        return web.json_response({
            "version": self._api.version,
            "messages": [chat_message(m) for m in self._api.conversation(user)],
            "bot_messages": counts,
            "scenario": self._bedside.scenario,
        })

    async def _get_file(self, request: web.Request) -> web.Response:
        stored = self._api.files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        kind = "image/png" if stored.data.startswith(b"\x89PNG") else (
            "image/jpeg" if stored.data.startswith(b"\xff\xd8") else "application/octet-stream")
        return web.Response(body=stored.data, content_type=kind, headers={"Cache-Control": "max-age=3600"})

    # --- acting as a user -------------------------------------------------------------------------

    async def _send_text(self, request: web.Request) -> web.Response:
        body = await _json(request)
        text = str(body.get("text", "")).strip()
        if not text:
            raise web.HTTPBadRequest(text="empty message")
        message = self._api.send_text(self._person(body.get("user")), text)
        return web.json_response({"id": message["message_id"]})

    async def _send_example(self, request: web.Request) -> web.Response:
        body = await _json(request)
        names = {example.file for example in EXAMPLES}
        if body.get("file") not in names:
            raise web.HTTPBadRequest(text="unknown example")
        data = (EXAMPLES_DIR / body["file"]).read_bytes()
        message = self._api.send_photo(self._person(body.get("user")), data)
        return web.json_response({"id": message["message_id"]})

    async def _upload(self, request: web.Request) -> web.Response:
        """A file of the user's own: a picture goes as a photo (as the apps send it), anything else as a document."""
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise web.HTTPBadRequest(text="no file")
        user = self._person(form.get("user"))
        data = upload.file.read()
        name = Path(upload.filename or "upload").name
        if name.lower().endswith(PICTURES):
            try:
                message = self._api.send_photo(user, data)
            except OSError:  # not a picture after all: send it as it is, the bot will say what it makes of it
                message = self._api.send_document(user, data, name, upload.content_type)
        else:
            message = self._api.send_document(user, data, name, upload.content_type)
        return web.json_response({"id": message["message_id"]})

    async def _press(self, request: web.Request) -> web.Response:
        """Press an inline button; answers with what the bot said to the press (a toast or an alert box)."""
        body = await _json(request)
        user = self._person(body.get("user"))
        shown = {m["message_id"]: m for m in self._api.conversation(user)}
        message = shown.get(_int(body.get("message_id")))
        if message is None or not message["from"].get("is_bot"):
            raise web.HTTPBadRequest(text="no such message")
        query = self._api.press_button(user, message, str(body.get("data", "")))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUTTON_ANSWER_S
        version = self._api.version
        while query["id"] not in self._api.callback_answers and loop.time() < deadline:
            version = await self._api.wait_for_change(version, deadline - loop.time())
        answer = self._api.callback_answers.get(query["id"], {})
        return web.json_response({"text": answer.get("text", ""), "show_alert": bool(answer.get("show_alert"))})

    async def _scenario(self, request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            await self._bedside.switch(str(body.get("scenario")))
        except ValueError as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        return web.json_response({"scenario": self._bedside.scenario})

    def _person(self, value: Any) -> int:
        user = _int(value)
        if user not in {p["id"] for p in self._setup["people"]}:
            raise web.HTTPBadRequest(text="unknown person")
        return user


@web.middleware
async def _only_this_page(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests another web site makes the browser send (see the module's docstring). Reading is left to
    the browser's same-origin policy, and opening the page from a link or the address bar must work."""
    if request.url.host not in LOOPBACK_HOSTS:
        raise web.HTTPForbidden(text="this page answers only at 127.0.0.1 or localhost")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        fetched_from = request.headers.get("Sec-Fetch-Site")
        if origin not in (None, f"{request.scheme}://{request.host}") or fetched_from not in (None, "same-origin"):
            raise web.HTTPForbidden(text="only the demo's own page may do this")
    return await handler(request)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text=f"not a number: {value!r}") from None


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="expected application/json")
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="expected JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body
