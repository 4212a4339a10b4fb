"""The DICOM node as a service: the SCP, the spool, and the analysis of each series once it falls idle.

Instances arrive on pynetdicom's threads and are spooled there; the node (on the event loop) only notes when
each series last grew. A series idle for `DICOM_SERIES_IDLE_S` is analysed in a worker thread with the site
profile in use, its result recorded on the node's own store thread (raising the study's alert in the outbox when
flagged, and keeping the study's case for a doctor's read), and only then are its spool files deleted. At
start-up whatever a crash left in the spool is analysed; a series already recorded (the crash came after
recording, before deleting) is only deleted, so it is alerted exactly once; one that grew after it was recorded
is judged again (its study is still alerted once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

import sqlite_utils

from core.backoff import Backoff
from core.durations import Durations
from core.settings import Settings
from dicomnode.echo import NodeAddress, parse_address
from dicomnode.results import TriageResult, secondary_capture, send
from dicomnode.scp import ScpConfig, StorageScp
from dicomnode.spool import Spool, SpooledSeries
from dicomnode.triage import analyse_series, record_outcome
from inference.analyzer import Judging, ScanAnalyzer
from inference.site_profile import SiteProfile
from store.studies import series_analysed_at
from store.thread import StoreThread

log = logging.getLogger(__name__)


class DicomNode:
    def __init__(
        self, settings: Settings, analyzer: ScanAnalyzer, on_alert: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time, result_retry_s: tuple[float, float, int] = (2.0, 300.0, 10),
        site_profile: Callable[[sqlite_utils.Database], SiteProfile | None] = lambda _: None,
    ) -> None:
        """`result_retry_s`: the first and the longest pause between tries of a result to PACS, and how many tries.
        `site_profile`: the site profile in use for the analyzer's model, looked up in the store for each series."""
        self._settings = settings
        self._destination: NodeAddress | None = (
            parse_address(settings.dicom_result_destination) if settings.dicom_result_destination else None
        )
        self._result_retry_s = result_retry_s
        self._sending: set[asyncio.Task[None]] = set()
        self._analyzer = analyzer
        self._on_alert = on_alert
        self._site_profile = site_profile
        self._clock = clock
        self._store = StoreThread("hemowatch-dicom-store")
        self._workers = ThreadPoolExecutor(max_workers=settings.scan_concurrency, thread_name_prefix="hemowatch-dicom")
        self._waiting: dict[str, tuple[SpooledSeries, float]] = {}  # series hash -> (series, loop time last grew)
        self._analysing: dict[str, asyncio.Task[None]] = {}
        self._spool: Spool | None = None
        self._scp: StorageScp | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.scans = Durations()  # analyses of series, skipped ones (not a head CT, unreadable) included

    @property
    def port(self) -> int:
        assert self._scp is not None
        return self._scp.port

    @property
    def idle(self) -> bool:
        """Nothing waiting or being analysed (for tests and benchmarks)."""
        return not self._waiting and not self._analysing

    @property
    def series_pending(self) -> int:
        """Series received and not yet recorded: still arriving, waiting to fall idle, or being analysed."""
        return len(self._waiting.keys() | self._analysing.keys())  # one may grow again while analysed

    @property
    def spool_bytes(self) -> int:
        return 0 if self._spool is None else self._spool.used_bytes

    async def start(self) -> None:
        settings = self._settings
        self._loop = asyncio.get_running_loop()
        await self._store.open(settings.hemowatch_db)
        self._spool = await asyncio.to_thread(
            Spool, settings.spool_dir, int(settings.dicom_spool_max_gb * 2**30),
            "accession" in settings.dicom_notify_fields,
        )
        for spooled in await asyncio.to_thread(self._spool.pending):  # left by a crash or a stop
            self._waiting[spooled.series_hash] = (spooled, float("-inf"))
        config = ScpConfig(
            settings.dicom_ae_title, settings.dicom_host, settings.dicom_port, settings.dicom_allowed_aes,
            int(settings.dicom_max_instance_mb * 2**20), settings.dicom_tls_cert, settings.dicom_tls_key,
            settings.dicom_tls_ca,
        )
        self._scp = StorageScp(config, self._spool, self._stored, self._clock)
        await asyncio.to_thread(self._scp.start)
        self._watcher = asyncio.create_task(self._watch(), name="dicom-series-watch")

    async def stop(self) -> None:
        """Stop listening and let running analyses finish; what waits stays spooled for the next start."""
        if self._scp is not None:
            await asyncio.to_thread(self._scp.stop)
            self._scp = None
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await asyncio.gather(*self._analysing.values(), return_exceptions=True)
        for task in self._sending:  # results not yet accepted by PACS are given up
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self._store.close()
        self._workers.shutdown(wait=True)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:  # a taken port, say: let go of the store and the threads already started
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _stored(self, spooled: SpooledSeries) -> None:
        """From an association thread: an instance of `spooled` is safe on disk."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._grew, spooled)

    def _grew(self, spooled: SpooledSeries) -> None:
        waiting = self._waiting.get(spooled.series_hash)
        if waiting is not None and waiting[0].received_at > spooled.received_at:  # threads may report out of order
            spooled = waiting[0]
        self._waiting[spooled.series_hash] = (spooled, asyncio.get_running_loop().time())

    async def _watch(self) -> None:
        """Start the analysis of each series once it has been idle long enough, waking at the first deadline
        (a new series' deadline is at least `idle_s` away, so sleeping until the earliest known one misses none)."""
        idle_s = self._settings.dicom_series_idle_s
        poll_s = min(0.2, idle_s / 4)
        while True:
            now = asyncio.get_running_loop().time()
            next_due = now + poll_s
            for series_hash, (spooled, grew_at) in list(self._waiting.items()):
                if series_hash in self._analysing:
                    continue
                if now - grew_at < idle_s:
                    next_due = min(next_due, grew_at + idle_s)
                    continue
                del self._waiting[series_hash]
                task = asyncio.create_task(self._analyse(spooled, recovered=grew_at == float("-inf")))
                self._analysing[series_hash] = task
                task.add_done_callback(lambda _, key=series_hash: self._analysing.pop(key, None))
            await asyncio.sleep(max(0.0, next_due - now))

    async def _send_back(self, result: TriageResult, study_hash: str) -> None:
        """The result to PACS as a Secondary Capture, tried again with growing pauses while it fails."""
        assert self._destination is not None
        first_s, longest_s, tries = self._result_retry_s
        loop = asyncio.get_running_loop()
        capture = await loop.run_in_executor(self._workers, secondary_capture, result)
        backoff = Backoff(first_s, longest_s, jitter=False)
        for attempt in range(tries):
            try:
                problem = await asyncio.to_thread(send, capture, self._settings.dicom_ae_title, self._destination)
            except Exception as error:  # a refused TLS handshake, a reset connection: try again
                problem = f"{type(error).__name__}: {error}"
            if problem is None:
                log.info("result of study %s sent to %s", study_hash[:12], self._destination)
                return
            pause_s = backoff.next_delay()
            log.warning("result of study %s not taken by %s (%s); try %d of %d, next in %.1f s",
                        study_hash[:12], self._destination, problem, attempt + 1, tries, pause_s)
            if attempt + 1 < tries:
                await asyncio.sleep(pause_s)
        log.error("result of study %s given up after %d tries to %s", study_hash[:12], tries, self._destination)

    async def _analyse(self, spooled: SpooledSeries, recovered: bool) -> None:
        assert self._spool is not None
        loop = asyncio.get_running_loop()
        try:
            analysed_at = await self._store.call(series_analysed_at, spooled.series_hash) if recovered else None
            if analysed_at is not None and spooled.received_at <= analysed_at:  # nothing came after the record
                log.info("series %s was recorded before the restart; clearing its spool", spooled.series_hash[:12])
                files = await asyncio.to_thread(lambda: sorted(spooled.folder.glob("*.dcm")))
                await asyncio.to_thread(self._spool.remove, spooled, files)
                return
            show_accession = "accession" in self._settings.dicom_notify_fields
            judging = Judging(await self._store.call(self._site_profile), with_features=True)
            with self.scans.timing():
                outcome = await loop.run_in_executor(
                    self._workers, analyse_series, self._analyzer, spooled, show_accession, self._clock, judging
                )
            record = outcome.record
            alert_id = await self._store.call(record_outcome, outcome, self._clock())
            log.info("series %s of study %s from %s: %s%s", record.series_hash[:12], record.study_hash[:12],
                     record.ae_title, record.verdict, f" ({record.skipped_reason})" if record.skipped_reason else "")
            await asyncio.to_thread(self._spool.remove, spooled, outcome.files)
            if alert_id is not None:
                self._on_alert()
            if self._destination is not None and outcome.for_pacs is not None:
                task = asyncio.create_task(self._send_back(outcome.for_pacs, record.study_hash))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        except Exception:  # the files stay in the spool and are tried again at the next start
            log.exception("could not analyse series %s", spooled.series_hash[:12])
