"""`hemowatch demo`: the real service against the local Bot API server, with a web chat page, until a signal.

Nothing is read from or written to the configured service: the demo has its own database in a temporary
folder (removed on exit), its own embedded broker and DICOM node on free ports (never the standard 1883 and 11112)
and a bot token only its Bot API server knows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from core.ports import PortTaken
from core.settings import ScanSettings
from hemowatch.demo.bedside import BedsideDevice
from hemowatch.demo.cast import (
    BOT_TOKEN,
    PATIENT_ID,
    PEOPLE,
    demo_settings,
    examples_in_training_data,
    free_port,
    seed,
)
from hemowatch.demo.chat_page import ChatPage
from hemowatch.signals import stop_on_signals
from hemowatch.wiring import running
from localbotapi import BotApiServer

log = logging.getLogger(__name__)


def run_demo(args: argparse.Namespace, scan: ScanSettings) -> int:
    """Entry point of `hemowatch demo`."""
    logging.getLogger("transitions").setLevel(logging.WARNING)  # the embedded broker's state machine chatter
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per poll of the page
    try:
        asyncio.run(_demo(args.port, scan))
    except PortTaken as error:
        print(error, file=sys.stderr)
        return 1
    return 0


async def _demo(port: int, scan: ScanSettings) -> None:
    stop = stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="hemowatch-demo-") as folder:
        async with BotApiServer(BOT_TOKEN, username="hemowatch_demo_bot") as api:
            for person in PEOPLE:
                api.introduce(person.telegram_id, person.name)
            settings = demo_settings(scan, Path(folder), api.url, broker_port=free_port(), dicom_port=free_port())
            seed(settings.hemowatch_db, time.time())
            bedside = BedsideDevice(settings, PATIENT_ID)
            page = ChatPage(api, bedside, settings.rule_hold_s, settings.escalate_after_s,
                            examples_in_training_data(settings.hemowatch_model))
            runner = web.AppRunner(page.app, shutdown_timeout=1)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            except OSError as error:
                await runner.cleanup()
                raise PortTaken(
                    f"The demo's page cannot listen on 127.0.0.1:{port} ({error.strerror}); "
                    "choose another port with `hemowatch demo --port N`."
                ) from None
            try:
                async with running(settings) as service:
                    for person in PEOPLE:  # each opens the chat as on Telegram, and the bot greets them
                        api.send_text(person.telegram_id, "/start")
                    await bedside.switch("stable")
                    print(f"HemoWatch demo: open http://127.0.0.1:{port} in a browser (Ctrl+C stops it). "
                          f"Its database is {settings.hemowatch_db}, removed on exit; its DICOM node is "
                          f"{settings.dicom_ae_title}@127.0.0.1:{service.dicom.port}.", flush=True)
                    await stop.wait()
                    await bedside.stop()
            finally:
                await runner.cleanup()
