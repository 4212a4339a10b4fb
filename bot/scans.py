"""Scan triage for doctors: a head CT in; the verdict, its heat-map and an audit row out.

The analysis is awaited on a worker thread, at most `scan_concurrency` at once, so a large series never holds
up alerts or other users; in the service the analyzer runs it in a worker process with a memory limit
(`inference.worker`), so no upload can take the service down. It judges with the site profile in use. The scan
is read in memory and dropped; only its SHA-256, the verdict and, for the doctor's read (`bot.reads`), the
pooled features of its assessable slices are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass

import sqlite_utils
from telegram import InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import BaseHandler, MessageHandler, filters

from bot import texts
from bot.access import Caller, Context, authorize
from bot.bot_data import bot_data
from bot.buttons import read_markup
from bot.rate_limit import RateLimit
from bot.scan_upload import CLOUD_DOWNLOAD_LIMIT, Upload, refusal
from core.roles import Role
from inference.analyzer import Judging
from inference.errors import InputError
from inference.result import StudyResult
from store.scans import ScanAudit, record_scan
from store.schema import atomic
from store.site_profiles import add_case, scan_ref

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.0  # Telegram throttles bots that edit one message much more often than once a second
DESK_KEY = "scan_desk"  # where the ScanDesk lives in bot_data


def scan_handlers() -> list[BaseHandler]:
    """Photos and documents go to scan triage (doctors only)."""
    return [MessageHandler(filters.PHOTO | filters.Document.ALL, receive_scan)]


@dataclass
class ScanDesk:
    """What every scan shares: the bound on analyses running at once and the per-user rate limit."""

    slots: asyncio.Semaphore
    rate: RateLimit


def _desk(context: Context) -> ScanDesk:
    desk = context.bot_data.get(DESK_KEY)
    if desk is None:
        settings = bot_data(context).settings
        desk = ScanDesk(asyncio.Semaphore(settings.scan_concurrency),
                        RateLimit(settings.scan_rate_limit, settings.scan_rate_window_s))
        context.bot_data[DESK_KEY] = desk
    return desk


@authorize(Role.DOCTOR)
async def receive_scan(update: Update, context: Context, caller: Caller) -> None:
    """A head CT from a doctor: "Analysing…" at once, progress, then the verdict and the heat-map."""
    shared = bot_data(context)
    message = update.effective_message
    upload = Upload.of(message)
    assert upload is not None  # the handler's filter lets only photos and documents through
    problem = refusal(upload, shared.settings) or (texts.SCANS_UNAVAILABLE if shared.analyzer is None else None)
    if problem:
        await message.reply_text(problem)
        return
    desk = _desk(context)
    wait_s = desk.rate.admit(caller.telegram_id, shared.clock())
    if wait_s:
        settings = shared.settings
        await message.reply_text(texts.scan_rate_limited(settings.scan_rate_limit, settings.scan_rate_window_s, wait_s))
        return

    progress = ProgressMessage(await message.reply_text(texts.ANALYSING))
    try:
        data = await (await context.bot.get_file(upload.file_id)).download_as_bytearray()  # one copy, not two
        if desk.slots.locked():
            progress.report(texts.WAITING_FOR_SLOT)
        async with desk.slots:
            judging = Judging(await shared.store.call(shared.site_profile), with_features=True)
            with shared.stats.scans.timing():
                results = await asyncio.to_thread(
                    shared.analyzer.analyze_bytes, data, upload.filename,
                    lambda step: progress.report(texts.analysing(step)), judging,
                )
    except Exception as error:
        await progress.close(_explain(error))
        return

    ref = await shared.store.call(_audit, hashlib.sha256(data).hexdigest(), results, caller.telegram_id, shared.clock())
    markup = None if ref is None else read_markup(ref)
    await progress.close(texts.scan_report(results, readable=ref is not None), markup)
    for result in results:
        if result.overlay_png is not None:
            await message.reply_photo(result.overlay_png, caption=texts.overlay_caption(result))


def _explain(error: Exception) -> str:
    """What to tell the doctor when their scan could not be analysed."""
    if isinstance(error, InputError):
        return texts.scan_unreadable(str(error))
    if isinstance(error, BadRequest) and "too big" in error.message.lower():
        return texts.scan_too_big_for_telegram(CLOUD_DOWNLOAD_LIMIT)
    log.error("scan triage failed", exc_info=error)
    return texts.SCAN_FAILED


def _audit(
    db: sqlite_utils.Database, sha256: str, results: list[StudyResult], telegram_id: int, now: float
) -> str | None:
    """An audit row per series and, for each series with slices assessed, an unread case in the casebook; returns
    the scan's casebook key when it has a case to read."""
    with atomic(db):
        ids = [
            record_scan(db, ScanAudit(
                sha256=sha256, verdict=result.verdict, probability=result.probability, threshold=result.threshold,
                model_version=result.model.version, telegram_id=telegram_id, at=now,
                n_slices=result.n_slices, n_assessable=result.n_assessable,
            ))
            for result in results
        ]
        ref = scan_ref(ids[0])
        assessed = [result for result in results if result.slice_features is not None and len(result.slice_features)]
        for result in assessed:
            add_case(
                db, source="scan", model_sha256=result.model.sha256, group=ref, label=None,
                features=result.slice_features, shipped=result.slice_probabilities, now=now, verdict=result.verdict,
                probability=result.probability, scan_ref=ref,
                profile_id=None if result.site_profile is None else result.site_profile.id,
            )
    return ref if assessed else None


class ProgressMessage:
    """The "Analysing…" message, edited as the analysis reports its steps, at most once a second."""

    def __init__(self, message: Message) -> None:
        self._message = message
        self._loop = asyncio.get_running_loop()
        self._shown = self._latest = message.text
        self._changed = asyncio.Event()
        self._editing = False
        self._closed = False
        self._follower = asyncio.create_task(self._follow())

    def report(self, text: str) -> None:
        """Show `text` soon; safe to call from the analysis thread."""
        self._loop.call_soon_threadsafe(self._update, text)

    def _update(self, text: str) -> None:
        self._latest = text
        self._changed.set()

    async def _follow(self) -> None:
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            if self._latest == self._shown:
                continue
            self._shown, self._editing = self._latest, True
            with contextlib.suppress(TelegramError):  # progress is a courtesy; the verdict follows anyway
                await self._message.edit_text(self._shown)
            self._editing = False
            if not self._closed:
                await asyncio.sleep(EDIT_INTERVAL_S)

    async def close(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Stop following the analysis and show `text` (with `markup`'s buttons), after any edit already on its way."""
        self._closed = True
        if not self._editing:
            self._follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follower
        await self._message.edit_text(text, reply_markup=markup)
