"""The engines built from settings: the engines themselves take plain arguments and never read `Settings`."""

from __future__ import annotations

from pathlib import Path

from core.settings import ScanSettings
from inference.analyzer import Analyzer
from inference.limits import Limits
from inference.scan import Window


def analyzer_from_settings(
    settings: ScanSettings, model_path: Path | None = None, threshold: float | None = None
) -> Analyzer:
    """The scan analysis engine as the service is configured (model, threads, input limits, window)."""
    return Analyzer(
        model_path or settings.hemowatch_model,
        threads=settings.inference_threads,
        limits=Limits(max_upload_bytes=settings.max_upload_bytes, max_slices=settings.max_slices),
        window=Window(settings.window_center, settings.window_width),
        threshold=threshold,
    )
