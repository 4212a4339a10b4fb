"""Refusals Telegram will not change its mind about (a 400) are not retried, and one met while answering a
command is logged with its traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botworld import ADMIN, DOCTOR, BotWorld, running_ward
from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.application import register_menu
from bot.telegram_calls import is_passing, keep_trying
from localbotapi import BotApiServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def ward(bot_api: BotApiServer, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The ward-1 patient with its doctor; the admin and the doctor have opened the bot."""
    async with running_ward(bot_api, tmp_path) as world:
        for user in (ADMIN, DOCTOR):
            await world.say(user, "/start")
        yield world


async def test_a_400_is_not_passing_and_not_retried(bot_api: BotApiServer) -> None:
    """python-telegram-bot makes BadRequest a NetworkError; it is still a refusal, not a failure of Telegram."""
    bot_api.fail_next("setMyCommands", 400, count=50)
    errors = []
    async with Bot(bot_api.token, base_url=f"{bot_api.url}/bot") as bot:
        assert not await keep_trying("the command menu (setMyCommands)", lambda: register_menu(bot), first_s=0.01)
        for status, retry_after in ((400, None), (500, None), (429, 1)):
            bot_api.fail_next("sendMessage", status, retry_after)
            with pytest.raises(TelegramError) as failed:
                await bot.send_message(ADMIN, "hello")
            errors.append(failed.value)
    assert len(bot_api.calls_to("setMyCommands")) == 1
    assert isinstance(errors[0], BadRequest)
    assert [is_passing(error) for error in errors] == [False, True, True]


async def test_a_400_from_a_command_reply_is_logged_with_its_traceback(
    ward: BotWorld, caplog: pytest.LogCaptureFixture
) -> None:
    ward.api.fail_next("sendMessage", 400)
    reply = await ward.say(DOCTOR, "/help")
    assert reply["text"] == "Sorry, something went wrong on my side. Please try again in a moment."
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and "while handling update" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and logged[0].exc_info[0] is BadRequest
