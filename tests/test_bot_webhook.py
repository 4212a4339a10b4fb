"""Webhook mode of the whole service (`hemowatch.wiring.running` with WEBHOOK_URL set, real mosquitto, the local
Bot API server): the webhook is registered with a secret, users' updates arrive through it, and calls
without the secret are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from botworld import ADMIN, settings_for

from hemowatch.wiring import RunningService, running
from localbotapi import JSON, BotApiServer
from testsupport.broker import free_port

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def service(
    bot_api: BotApiServer, mosquitto, database: Path | str, tmp_path: Path
) -> AsyncIterator[RunningService]:
    port = free_port()
    settings = settings_for(
        bot_api, database, tmp_path, mqtt_url=mosquitto.url,
        webhook_url=f"http://127.0.0.1:{port}/telegram", webhook_listen="127.0.0.1", webhook_port=port,
    )
    async with running(settings) as service:
        await asyncio.wait_for(service.receiving.wait(), 30)
        yield service


def forged_help(user_id: int) -> JSON:
    """An update as Telegram would send it: `user_id` asks for /help."""
    user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
    message = {"message_id": 1000, "from": user, "chat": {"id": user_id, "type": "private"},
               "date": int(time.time()), "text": "/help",
               "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}
    return {"update_id": 1_000_000, "message": message}


async def test_updates_arrive_by_webhook_and_only_with_the_secret(
    bot_api: BotApiServer, service: RunningService
) -> None:
    webhook_url = service.application.bot_data["shared"].settings.webhook_url
    (registration,) = bot_api.calls_to("setWebhook")
    assert registration.params["url"] == webhook_url
    secret = registration.params["secret_token"]
    assert secret and bot_api.token not in secret
    assert (await service.application.bot.get_webhook_info()).url == webhook_url

    sent = bot_api.send_text(ADMIN, "/help")
    reply = await bot_api.wait_for_message(ADMIN, after=sent)
    assert "For administrators" in reply["text"]
    assert not bot_api.calls_to("getUpdates")  # it came by webhook, not by polling

    async with aiohttp.ClientSession() as session:
        for headers in ({}, {SECRET_HEADER: secret[::-1]}):
            async with session.post(webhook_url, json=forged_help(ADMIN), headers=headers) as response:
                assert response.status == 403

    # a real update after the forged ones: once it is answered, an accepted forgery would have been too
    sent = bot_api.send_text(ADMIN, "/help")
    await bot_api.wait_for_message(ADMIN, after=sent)
    assert len(bot_api.history(ADMIN)) == 2
    info = await service.application.bot.get_webhook_info()
    assert info.pending_update_count == 0 and info.last_error_message is None
