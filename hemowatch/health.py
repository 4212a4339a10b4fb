"""/healthz and Prometheus /metrics on METRICS_HOST:METRICS_PORT (off unless METRICS_PORT is set).

/healthz answers 200 with {"ready": true, ...} while the service runs (the monitor, the DICOM node and the bot have
started and it is not stopping) and vitals can be stored; 503 with the same JSON saying why otherwise. It reads
only what is in memory. /metrics reads the store's figures (open alerts, the outbox) on a connection of its own
that waits at most STORE_WAIT_S for a writer, and the parts' counts (`hemowatch.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from bot.stats import BotStats
from core.ports import PortTaken, is_taken
from core.settings import Settings
from dicomnode.node import DicomNode
from hemowatch.metrics import Observed, ServiceMetrics, StoreFigures, read_store_figures
from monitor.vitals_monitor import VitalsMonitor
from store.thread import StoreThread

log = logging.getLogger(__name__)

STORE_WAIT_S = 1.0
# One instance per database (`hemowatch.instance_lock`), so it always leads; failover to another will change this.
LEADER = True


class Phase(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass
class Watched:
    """The parts looked at, and where the service is in its life (`running` sets the phase)."""

    monitor: VitalsMonitor
    bot: BotStats
    dicom: DicomNode | None
    clock: Callable[[], float]
    phase: Phase = Phase.STARTING


@asynccontextmanager
async def serving(settings: Settings, watched: Watched) -> AsyncIterator[None]:
    """Serve /healthz and /metrics on METRICS_HOST:METRICS_PORT while the block runs; PortTaken when taken."""
    store = StoreThread("hemowatch-metrics")
    endpoints = _Endpoints(settings, watched, store)
    app = web.Application()
    app.router.add_get("/healthz", endpoints.health)
    app.router.add_get("/metrics", endpoints.metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    try:
        await store.open(settings.hemowatch_db, settings.sqlite_synchronous, STORE_WAIT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        except OSError as error:
            if not is_taken(error):
                raise
            raise PortTaken(
                f"Port {settings.metrics_port} on {settings.metrics_host} is already taken, so /healthz and /metrics "
                "cannot be served. Set METRICS_PORT to a free port (METRICS_PORT=0 serves neither)."
            ) from None
        log.info("health and metrics on http://%s:%d/healthz and /metrics", settings.metrics_host,
                 settings.metrics_port)
        yield
    finally:
        await runner.cleanup()
        await store.close()


@dataclass(frozen=True, slots=True)
class _Endpoints:
    settings: Settings
    watched: Watched
    store: StoreThread  # its own connection, waiting at most STORE_WAIT_S for a writer

    async def health(self, _: web.Request) -> web.Response:
        watched = self.watched
        failing_since = watched.monitor.stats.store_failing_since
        ready = watched.phase is Phase.RUNNING and failing_since is None
        answer = {
            "ready": ready,
            "leader": LEADER,
            "phase": watched.phase.value,
            "store_failing_for_s": None if failing_since is None else round(watched.clock() - failing_since, 1),
        }
        return web.json_response(answer, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        watched = self.watched
        try:
            store: StoreFigures | None = await self.store.call(read_store_figures)
        except Exception as error:  # a locked, lost or broken database: those metrics are left out
            log.debug("metrics without the store's figures: %s", error)
            store = None
        spool_limit = int(self.settings.dicom_spool_max_gb * 2**30)
        observed = Observed(watched.monitor.stats, watched.bot, watched.dicom, spool_limit, store, LEADER,
                            watched.clock())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceMetrics(observed))
        for collector in (ProcessCollector, PlatformCollector, GCCollector):  # memory, CPU, open files, Python
            collector(registry=registry)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})
