"""The engines built from settings: the engines themselves take plain arguments and never read `Settings`."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


from commissioning.adoption import active_site_profile
from core.settings import ScanSettings, Settings
from inference.analyzer import Analyzer
from inference.limits import Limits
from inference.scan import Window
from inference.site_profile import SiteProfile
from inference.worker import ProcessAnalyzer
from store import open_database
from store.database import Database


def _engine_options(settings: ScanSettings) -> dict[str, Any]:
    """Threads, input limits and window, as configured (no window: the model card's)."""
    window = None
    if settings.window_center is not None and settings.window_width is not None:
        window = Window(settings.window_center, settings.window_width)
    return {
        "threads": settings.inference_threads,
        "limits": Limits(max_upload_bytes=settings.max_upload_bytes, max_slices=settings.max_slices),
        "window": window,
    }


def analyzer_from_settings(
    settings: ScanSettings, model_path: Path | None = None, threshold: float | None = None
) -> Analyzer:
    """The scan analysis engine in this process, as the service is configured (`hemowatch classify`: one
    command, one process, nothing else running in it)."""
    return Analyzer(model_path or settings.hemowatch_model, threshold=threshold, **_engine_options(settings))


def scan_workers_from_settings(settings: Settings, threshold: float | None = None) -> ProcessAnalyzer:
    """The service's analysis engine: `scan_concurrency` worker processes, each capped at `scan_memory_limit_mb`,
    so no upload can take the memory the vitals monitor needs, and one that kills its worker costs only itself.

    The workers share the cores: each gets at most its share of them as threads, so studies analysed at once
    do not crowd the cores with more model and decoding threads than there are cores to run them."""
    options = _engine_options(settings)
    options["threads"] = worker_threads(settings.inference_threads, settings.scan_concurrency)
    return ProcessAnalyzer(
        settings.hemowatch_model, workers=settings.scan_concurrency, threshold=threshold,
        memory_limit_bytes=int(settings.scan_memory_limit_mb * 2**20), **options,
    )


def worker_threads(threads: int, workers: int, cores: int | None = None) -> int:
    """Threads for each of `workers` analysis processes: `threads`, but no more than its share of the `cores`
    this process may run on (at least one)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(threads, cores // workers))


def site_profile_lookup(model_sha256: str) -> Callable[[Database], SiteProfile | None]:
    """What the bot and the DICOM node call with their store to find the site profile in use for the model file
    `model_sha256`: looked up at each verdict, so a profile adopted or rolled back from the command line or by
    the nightly update counts from the next scan on."""
    return partial(active_site_profile, model_sha256=model_sha256)


def site_profile_from_settings(settings: ScanSettings, model_sha256: str) -> SiteProfile | None:
    """The site profile in use in HEMOWATCH_DB for this model file; None when there is none, or no database yet
    (which is not created just to look)."""
    if settings.database_url is None and not settings.hemowatch_db.is_file():
        return None
    db = open_database(settings.database)
    try:
        return active_site_profile(db, model_sha256)
    finally:
        db.close()
