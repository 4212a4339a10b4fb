"""The demo's chat page acts as the demo's people, so only the page itself may make it act: real HTTP requests
to the page's server as `hemowatch demo` runs it (before the service starts), with the headers browsers send."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from core.settings import ScanSettings
from hemowatch.demo.bedside import BedsideDevice
from hemowatch.demo.cast import ADMIN, ESCALATE_AFTER_S, PATIENT_ID, PEOPLE, RULE_HOLD_S, demo_settings
from hemowatch.demo.chat_page import ChatPage
from localbotapi import BotApiServer
from testsupport.broker import free_port

EVIL = "http://evil.example"


@pytest.fixture
async def page(bot_api: BotApiServer, tmp_path: Path) -> AsyncIterator[str]:
    """The chat page on a free loopback port, in front of the local Bot API server; its URL."""
    for person in PEOPLE:
        bot_api.introduce(person.telegram_id, person.name)
    settings = demo_settings(ScanSettings(_env_file=None), tmp_path, bot_api.url, free_port(), free_port())
    chat = ChatPage(bot_api, BedsideDevice(settings, PATIENT_ID), RULE_HOLD_S, ESCALATE_AFTER_S, True)
    runner = web.AppRunner(chat.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


INVITE = json.dumps({"user": ADMIN.telegram_id, "text": "/invite doctor"})


async def _post(url: str, path: str, headers: dict[str, str], body: str | aiohttp.FormData = INVITE) -> int:
    async with aiohttp.ClientSession() as session, session.post(url + path, data=body, headers=headers) as response:
        return response.status


async def test_the_page_itself_acts_as_its_people(page: str, bot_api: BotApiServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(page, headers={"Sec-Fetch-Site": "none"}) as opened:  # from the address bar
            assert opened.status == 200
        async with session.get(page, headers={"Sec-Fetch-Site": "cross-site"}) as linked:  # a link on another site
            assert linked.status == 200
    same_origin = {"Origin": page, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
    assert await _post(page, "/api/send", same_origin) == 200
    without_browser_headers = {"Content-Type": "application/json"}  # a script on this machine, not a browser
    assert await _post(page, "/api/send", without_browser_headers) == 200
    assert [m["text"] for m in bot_api.conversation(ADMIN.telegram_id)] == ["/invite doctor", "/invite doctor"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        # What a form or a no-cors fetch on another site sends: no preflight, so the handler would run.
        ({"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403),
        ({"Origin": EVIL, "Content-Type": "text/plain"}, 403),  # a browser without Sec-Fetch-Site
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403),
        ({"Origin": "null", "Content-Type": "text/plain"}, 403),  # a sandboxed frame or a local file
        ({"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site", "Content-Type": "text/plain"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # no browser headers, and not JSON
    ],
)
async def test_another_site_cannot_make_the_page_act(
    page: str, bot_api: BotApiServer, headers: dict[str, str], status: int
) -> None:
    assert await _post(page, "/api/send", headers) == status
    assert await _post(page, "/api/press", headers, json.dumps({"user": ADMIN.telegram_id, "message_id": 1})) == status
    assert bot_api.conversation(ADMIN.telegram_id) == []


async def test_another_site_cannot_upload(page: str, bot_api: BotApiServer) -> None:
    form = aiohttp.FormData({"user": str(ADMIN.telegram_id)})
    form.add_field("file", b"not a scan", filename="notes.txt", content_type="text/plain")
    assert await _post(page, "/api/upload", {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, form) == 403
    assert bot_api.conversation(ADMIN.telegram_id) == []


async def test_a_name_rebound_to_this_machine_is_refused(page: str, bot_api: BotApiServer) -> None:
    """Another site whose DNS name now points to 127.0.0.1 is same-origin to the browser; its host gives it away."""
    port = page.rpartition(":")[2]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"{EVIL}:{port}", "Sec-Fetch-Site": "same-origin",
               "Content-Type": "application/json"}
    assert await _post(page, "/api/send", rebound) == 403
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{page}/api/setup", headers={"Host": "evil.example"}) as read:
            assert read.status == 403
    assert bot_api.conversation(ADMIN.telegram_id) == []
