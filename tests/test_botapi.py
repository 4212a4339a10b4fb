"""The local Bot API server answers python-telegram-bot the way Telegram does."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from localbotapi import BotApiServer
from testsupport.broker import free_port

USER = 1001


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def bot(bot_api: BotApiServer) -> AsyncIterator[Bot]:
    async with Bot(bot_api.token, base_url=f"{bot_api.url}/bot", base_file_url=f"{bot_api.url}/file/bot") as bot:
        yield bot


async def echo_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f"args={' '.join(context.args)}")


async def describe_upload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    attachment = update.message.effective_attachment
    largest = attachment[-1] if isinstance(attachment, tuple) else attachment
    data = await (await largest.get_file()).download_as_bytearray()
    name = getattr(largest, "file_name", "photo")
    await update.message.reply_text(f"{name} {len(data)} bytes, {largest.file_size} declared")


async def button_pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer("noted")
    await update.callback_query.edit_message_text(f"pressed {update.callback_query.data}")


@pytest.fixture
async def echo_bot(bot_api: BotApiServer) -> AsyncIterator[Application]:
    app = (
        Application.builder().token(bot_api.token)
        .base_url(f"{bot_api.url}/bot").base_file_url(f"{bot_api.url}/file/bot").build()
    )
    app.add_handler(CommandHandler("echo", echo_command))
    app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, describe_upload))
    app.add_handler(CallbackQueryHandler(button_pressed))
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=5)
        await app.start()
        yield app
        await app.updater.stop()
        await app.stop()


async def test_commands_reach_their_handler_with_arguments(bot_api: BotApiServer, echo_bot: Application) -> None:
    sent = bot_api.send_text(USER, "/echo P-17 now")
    reply = await bot_api.wait_for_message(USER, after=sent)
    assert reply["text"] == "args=P-17 now"
    assert reply["message_id"] == sent["message_id"] + 1


async def test_photos_arrive_as_jpeg_sizes_and_download(bot_api: BotApiServer, echo_bot: Application) -> None:
    sent = bot_api.send_photo(USER, png(2000, 1000))
    sizes = sent["photo"]
    assert [max(size["width"], size["height"]) for size in sizes] == [90, 320, 800, 1280]
    largest = bot_api.file_bytes(sizes[-1]["file_id"])
    assert Image.open(io.BytesIO(largest)).format == "JPEG"
    reply = await bot_api.wait_for_message(USER, after=sent)
    assert reply["text"] == f"photo {len(largest)} bytes, {len(largest)} declared"


async def test_documents_keep_name_type_and_bytes(bot_api: BotApiServer, echo_bot: Application) -> None:
    data = b"DICM" * 1000
    sent = bot_api.send_document(USER, data, "slice.dcm", "application/dicom")
    assert sent["document"]["mime_type"] == "application/dicom"
    reply = await bot_api.wait_for_message(USER, after=sent)
    assert reply["text"] == "slice.dcm 4000 bytes, 4000 declared"


async def test_buttons_deliver_callback_queries(bot_api: BotApiServer, echo_bot: Application, bot: Bot) -> None:
    bot_api.send_text(USER, "hello")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Acknowledge", callback_data="ack:7")]])
    message = await bot.send_message(USER, "Alert", reply_markup=keyboard)
    shown = bot_api.message(USER, message.message_id)
    assert shown["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ack:7"
    query = bot_api.press_button(USER, shown, "ack:7")
    edited = await bot_api.wait_for_message(USER, lambda m: m["text"] == "pressed ack:7")
    assert edited["message_id"] == message.message_id and "reply_markup" not in edited
    assert bot_api.callback_answers[query["id"]]["text"] == "noted"


async def test_message_ids_count_per_chat(bot_api: BotApiServer, bot: Bot) -> None:
    bot_api.send_text(USER, "hi")
    bot_api.send_text(USER + 1, "hi")
    first = await bot.send_message(USER, "one")
    second = await bot.send_message(USER, "two")
    other = await bot.send_message(USER + 1, "one")
    assert (first.message_id, second.message_id, other.message_id) == (2, 3, 2)


async def test_html_is_parsed_and_checked(bot_api: BotApiServer, bot: Bot) -> None:
    bot_api.send_text(USER, "hi")
    message = await bot.send_message(USER, "<b>SpO2</b> &lt; 90", parse_mode="HTML")
    assert message.text == "SpO2 < 90"
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await bot.send_message(USER, "SpO2 <90", parse_mode="HTML")


async def test_texts_over_4096_and_captions_over_1024_characters_are_refused(bot_api: BotApiServer, bot: Bot) -> None:
    bot_api.send_text(USER, "hi")
    longest = await bot.send_message(USER, "<b>" + "&lt;" * 4096 + "</b>", parse_mode="HTML")  # counted as shown
    assert longest.text == "<" * 4096
    with pytest.raises(BadRequest, match="^Message is too long$"):
        await bot.send_message(USER, "x" * 4097)
    with pytest.raises(BadRequest, match="^Message is too long$"):
        await bot.edit_message_text("x" * 4097, USER, longest.message_id)
    picture = await bot.send_photo(USER, png(20, 20), caption="<i>" + "y" * 1024 + "</i>", parse_mode="HTML")
    assert picture.caption == "y" * 1024
    with pytest.raises(BadRequest, match="^Message caption is too long$"):
        await bot.send_photo(USER, png(20, 20), caption="y" * 1025)
    with pytest.raises(BadRequest, match="^Message caption is too long$"):
        await bot.edit_message_caption(USER, picture.message_id, caption="y" * 1025)
    refusals = [(call.method, call.status) for call in bot_api.calls if call.status != 200]
    assert refusals == [("sendMessage", 400), ("editMessageText", 400), ("sendPhoto", 400), ("editMessageCaption", 400)]


async def test_edits_to_the_same_content_are_refused(bot_api: BotApiServer, bot: Bot) -> None:
    bot_api.send_text(USER, "hi")
    message = await bot.send_message(USER, "Analysing…")
    await bot.edit_message_text("Analysing… 3 slices read", USER, message.message_id)
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text("Analysing… 3 slices read", USER, message.message_id)
    versions = [m["text"] for m in bot_api.history(USER)]
    assert versions == ["Analysing…", "Analysing… 3 slices read"]


async def test_users_who_never_wrote_or_blocked_the_bot_are_forbidden(bot_api: BotApiServer, bot: Bot) -> None:
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await bot.send_message(USER, "hello")
    bot_api.send_text(USER, "/start")
    await bot.send_message(USER, "welcome")
    bot_api.block(USER)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER, "alert")


async def test_injected_failures_raise_what_telegram_would(bot_api: BotApiServer, bot: Bot) -> None:
    bot_api.send_text(USER, "hi")
    bot_api.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter, match="Retry in 3 seconds"):
        await bot.send_message(USER, "alert")
    bot_api.fail_next("sendMessage", 500, count=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(USER, "alert")
    await bot.send_message(USER, "alert")
    assert [call.status for call in bot_api.calls_to("sendMessage")] == [429, 500, 500, 200]


async def test_files_over_the_cloud_download_cap_cannot_be_fetched() -> None:
    server = BotApiServer(download_limit=1000)
    async with server:
        async with Bot(server.token, base_url=f"{server.url}/bot") as small_cap_bot:
            sent = server.send_document(USER, bytes(1001), "series.zip", "application/zip")
            with pytest.raises(BadRequest, match="(?i)file is too big"):
                await small_cap_bot.get_file(sent["document"]["file_id"])


async def test_a_webhook_replaces_get_updates_until_it_is_deleted(bot_api: BotApiServer, bot: Bot) -> None:
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there: deliveries fail and are retried
    with pytest.raises(BadRequest, match="(?i)secret token contains unallowed characters"):
        await bot.set_webhook(hook, secret_token=bot_api.token)  # ":" is not allowed
    await bot.set_webhook(hook, secret_token="s3cret_-")
    bot_api.send_text(USER, "hi")
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert info.url == hook and info.pending_update_count == 1
    await bot.delete_webhook()
    (update,) = await bot.get_updates()
    assert update.message.text == "hi"
    assert (await bot.get_webhook_info()).url == ""
