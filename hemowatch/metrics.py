"""The service's Prometheus metrics, made at each scrape from what the parts count where things happen.

The monitor counts vitals in its `IngestStats`, the bot its failed Bot API calls and scan analyses (`BotStats`),
the DICOM node its spool and analyses; the store answers for open alerts and the outbox. None of them knows
Prometheus: this collector reads them and names the metrics (hemowatch_*).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlite_utils
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bot.stats import TELEGRAM_ERROR_KINDS, BotStats
from core.durations import Durations
from dicomnode.node import DicomNode
from monitor.ward import IngestStats
from store.alerts import count_open_alerts
from store.outbox import outbox_backlog


@dataclass(frozen=True, slots=True)
class StoreFigures:
    open_alerts: int
    outbox_depth: int
    outbox_oldest_at: float | None  # when the oldest pending notice was queued


def read_store_figures(db: sqlite_utils.Database) -> StoreFigures:
    return StoreFigures(count_open_alerts(db), *outbox_backlog(db))


@dataclass(frozen=True, slots=True)
class Observed:
    """What one scrape reads: the parts' live counts, and the store's figures (None when it could not be read:
    those metrics are then left out rather than shown as zero)."""

    vitals: IngestStats
    bot: BotStats
    dicom: DicomNode | None
    spool_limit_bytes: int
    store: StoreFigures | None
    leader: bool
    now: float


class ServiceMetrics(Collector):
    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    def collect(self) -> Iterator[Metric]:
        seen = self._observed
        yield from _vitals(seen.vitals, seen.now)
        if seen.store is not None:
            yield from _store(seen.store, seen.now)
        errors = CounterMetricFamily("hemowatch_telegram_errors", "Failed Bot API calls: network (no answer), "
                                     "rate_limited (429), server (5xx), refused (other 4xx)", labels=["kind"])
        for kind in TELEGRAM_ERROR_KINDS:
            errors.add_metric([kind], seen.bot.telegram_errors[kind])
        yield errors
        scans = HistogramMetricFamily("hemowatch_scan_analysis_seconds", "Scan analyses and how long they took, "
                                      "by where the scan came from (telegram, dicom)", labels=["source"])
        _observe(scans, "telegram", seen.bot.scans)
        if seen.dicom is not None:
            _observe(scans, "dicom", seen.dicom.scans)
            yield _gauge("hemowatch_dicom_spool_bytes", "Bytes of received DICOM instances waiting in the spool",
                         seen.dicom.spool_bytes)
            yield _gauge("hemowatch_dicom_spool_limit_bytes", "The spool's cap (DICOM_SPOOL_MAX_GB)",
                         seen.spool_limit_bytes)
            yield _gauge("hemowatch_dicom_series_pending", "DICOM series received and not yet analysed",
                         seen.dicom.series_pending)
        yield scans
        yield _gauge("hemowatch_leader", "1 while this instance leads (one instance per database: always)",
                     int(seen.leader))


def _vitals(stats: IngestStats, now: float) -> Iterator[Metric]:
    yield _counter("hemowatch_samples_received", "Vitals messages received from the broker, those it delivered "
                   "again included", stats.received)
    yield _counter("hemowatch_samples_stored", "Vitals samples stored", stats.stored)
    yield _counter("hemowatch_samples_duplicate", "Vitals samples delivered again and skipped, already stored",
                   stats.duplicates)
    rejected = CounterMetricFamily("hemowatch_samples_rejected", "Vitals messages rejected, by reason",
                                   labels=["reason"])
    for reason, count in sorted(stats.rejected.items()):
        rejected.add_metric([reason], count)
    yield rejected
    waited = 0.0 if stats.oldest_unstored_at is None else max(0.0, now - stats.oldest_unstored_at)
    yield _gauge("hemowatch_ingest_lag_seconds", "How long the oldest vitals message received and not yet stored "
                 "has waited (0 when every one is stored)", waited)
    yield _gauge("hemowatch_store_failing", "1 while vitals cannot be stored (they wait at the broker)",
                 int(stats.store_failing_since is not None))
    yield _counter("hemowatch_store_outages", "Times storing vitals started to fail", stats.store_outages)


def _store(figures: StoreFigures, now: float) -> Iterator[Metric]:
    yield _gauge("hemowatch_open_alerts", "Alerts not yet resolved", figures.open_alerts)
    yield _gauge("hemowatch_outbox_depth", "Notices waiting to be delivered (held ones included)",
                 figures.outbox_depth)
    oldest_s = 0.0 if figures.outbox_oldest_at is None else max(0.0, now - figures.outbox_oldest_at)
    yield _gauge("hemowatch_outbox_oldest_age_seconds", "Age of the oldest notice waiting (0 when none waits)",
                 oldest_s)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _observe(family: HistogramMetricFamily, source: str, durations: Durations) -> None:
    buckets = [(floatToGoString(bound), count) for bound, count in durations.cumulative()]
    family.add_metric([source], buckets, durations.total_s)
