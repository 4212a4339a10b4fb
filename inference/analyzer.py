"""The Analyzer: a scan in (bytes or a path), one verdict per series out. The bot and the CLI know only this."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from inference.archive import is_zip, read_files, read_folder, read_zip
from inference.dicom import is_dicom, scan_series
from inference.errors import InputError
from inference.gate import Assessment, assess_slice
from inference.images import picture_format, read_picture, read_picture_series
from inference.limits import Limits
from inference.model import HaemorrhageModel
from inference.overlay import OverlayCaption, region_stands_out, render_overlay
from inference.preprocess import PreparedSlice, batch_of, prepare_slice
from inference.result import ModelInfo, SiteProfileInfo, StudyResult
from inference.scan import Series, Slice, Window
from inference.site_profile import SiteProfile
from inference.study import OperatingPoint, study_verdict

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
BATCH_SIZE = 8  # slices per model call: as fast per slice as 32 here, at about a third of onnxruntime's memory
SHOWN_TYPE_PROBABILITY = 0.5
SLAB_MM = 5.0  # a thin-slice series is judged on slabs this thick: the slices the model learnt on (CT-ICH's)
_LookedAt = dict[int, tuple[np.ndarray, tuple[int, int, int], np.ndarray]]


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Judging:
    """How one analysis judges its slices: with a site profile (None: the model card's calibration and
    thresholds), and whether the result keeps the slices' features."""

    profile: SiteProfile | None = None
    with_features: bool = False


SHIPPED = Judging()


class ScanAnalyzer(Protocol):
    """What the bot needs of an analysis engine: `Analyzer` in this process, or `inference.worker.ProcessAnalyzer`
    in worker processes."""

    @property
    def model_info(self) -> ModelInfo: ...

    def analyze_bytes(
        self, data: bytes, filename: str, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]: ...

    def analyze_path(
        self, path: Path, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]: ...


class Analyzer:
    """Reads a scan, gates its slices, runs the model once per batch and aggregates a verdict per series.

    Build one per process: it holds the single onnxruntime session. Synchronous and thread-safe, so the bot
    can run several analyses in worker threads at once. A DICOM series is decoded by `threads` workers while
    the model scores the slices already decoded.
    """

    def __init__(
        self,
        model_path: Path,
        threads: int = 2,
        limits: Limits = Limits(),
        window: Window | None = None,
        threshold: float | None = None,
    ) -> None:
        self._model = HaemorrhageModel(model_path, threads)
        self._threads = threads
        self._limits = limits
        card = self._model.card
        self._window = window or card.window
        self._info = ModelInfo(card.name, card.version, card.sha256, card.threshold)
        self._threshold = threshold

    def _operating_point(self, profile: SiteProfile | None) -> OperatingPoint:
        """The profile's operating point, else the model card's; `threshold` set: one threshold for single
        slices and studies alike."""
        point = profile.operating_point if profile is not None else self._model.card.operating_point
        if self._threshold is None:
            return point
        study = None if point.study is None else dataclasses.replace(point.study, threshold=self._threshold)
        return OperatingPoint(self._threshold, study)

    def _usable(self, profile: SiteProfile | None) -> SiteProfile | None:
        """The profile, unless it was fitted on another model file's features."""
        if profile is not None and profile.model_sha256 != self._info.sha256:
            log.warning("site profile %s was fitted for another model file; using the model card instead", profile.id)
            return None
        return profile

    def _suspected_type(self, verdict: str, type_probabilities: np.ndarray) -> str | None:
        """The most likely haemorrhage type on the top slice of a flagged study, among the types the model card
        says the model tells apart, when it is more likely than not."""
        card = self._model.card
        if verdict != "hemorrhage":
            return None
        candidates = [
            (float(type_probabilities[index]), name)
            for index, name in enumerate(card.type_names)
            if name in card.shown_types and index < len(type_probabilities)
        ]
        probability, name = max(candidates, default=(0.0, None))
        return name if probability >= SHOWN_TYPE_PROBABILITY else None

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    def analyze_path(
        self, path: Path, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]:
        """A picture, DICOM file, ZIP or folder of DICOM files on disk."""
        started = time.perf_counter()
        if path.is_dir():
            series = self._dicom_series(read_folder(path, self._limits), strict=False)
            return self._analyze_all(series, started, progress or _silent, judging)
        if not path.is_file():
            raise InputError("No such file or folder.")
        self._check_size(path.stat().st_size)
        with path.open("rb") as file:
            zipped = is_zip(file.read(4))
        if zipped:  # read member by member from disk, never the whole archive into memory
            return self._analyze_all(self._zip_series(path), started, progress or _silent, judging)
        return self.analyze_bytes(path.read_bytes(), path.name, progress, judging)

    def analyze_pictures(
        self, paths: Sequence[Path], progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]:
        """Pictures of one scan's slices, the lowest first, judged as one series (as a DICOM series is: a study
        verdict once two or more slices are assessable)."""
        started = time.perf_counter()
        named = zip((path.name for path in paths), read_files(paths, self._limits))
        series = read_picture_series(named, len(paths), self._limits)
        return self._analyze_all([series], started, progress or _silent, judging)

    def analyze_bytes(
        self, data: bytes | bytearray, filename: str, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]:
        """An uploaded file, recognised by its content; a `.dcm` name that is not DICOM gets a DICOM message."""
        started = time.perf_counter()
        self._check_size(len(data))
        return self._analyze_all(self._read(data, filename), started, progress or _silent, judging)

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise InputError("The file is empty.")
        if size > self._limits.max_upload_bytes:
            raise InputError(
                f"The file is {size / 2**20:.0f} MB; at most {self._limits.max_upload_bytes / 2**20:.0f} MB "
                "can be analysed."
            )

    def _zip_series(self, source: bytes | bytearray | Path) -> list[Series]:
        return self._dicom_series(read_zip(source, self._limits), strict=False)

    def _dicom_series(self, files: Iterable[bytes], strict: bool) -> list[Series]:
        """The DICOM series among the files, a thin-slice one in `SLAB_MM` slabs."""
        return scan_series(files, self._limits, strict=strict, threads=self._threads, slab_mm=SLAB_MM)

    def _read(self, data: bytes | bytearray, filename: str) -> list[Series]:
        if is_zip(data):
            return self._zip_series(data)
        if picture_format(data):
            return [read_picture(data, self._limits)]
        if is_dicom(data) or filename.lower().endswith((".dcm", ".dicom")):
            return self._dicom_series([data], strict=True)
        raise InputError("HemoWatch reads PNG, JPEG, DICOM, or a ZIP of DICOM files; this file is none of these.")

    def _analyze_all(
        self, series: list[Series], started: float, progress: Progress, judging: Judging
    ) -> list[StudyResult]:
        progress(f"Read {sum(item.size for item in series)} slices")
        read_ms = (time.perf_counter() - started) * 1000
        profile = self._usable(judging.profile)
        return [self._analyze(item, read_ms, progress, profile, judging.with_features) for item in series]

    def _analyze(
        self, series: Series, read_ms: float, progress: Progress, profile: SiteProfile | None, with_features: bool
    ) -> StudyResult:
        started = time.perf_counter()
        assessments, scores, looked_at = self._score(series, progress)
        assessable = [index for index, assessment in enumerate(assessments) if assessment.assessable]
        features = np.stack([scores[index][1] for index in assessable]) if assessable else np.zeros((0, 0))
        shipped = np.array([scores[index][0] for index in assessable], dtype=np.float32)
        probabilities: list[float | None] = [None] * len(assessments)
        judged = profile.slice_probabilities(features) if profile is not None and assessable else shipped
        for index, probability in zip(assessable, judged):
            probabilities[index] = float(probability)
        outcome = study_verdict(probabilities, self._operating_point(profile))
        overlay, suspected_type, shows_region = None, None, None
        if outcome.top_slice is not None:
            top = outcome.top_slice[0]
            cam, box, kinds = looked_at[top]
            shows_region = region_stands_out(cam)
            suspected_type = self._suspected_type(outcome.verdict, kinds)
            caption = OverlayCaption(
                flagged=outcome.verdict == "hemorrhage",
                probability=outcome.probability,
                threshold=outcome.threshold,
                slice_number=top + 1,
                slice_count=len(series.slices),
                suspected_type=suspected_type,
            )
            overlay = render_overlay(series.slices[top].grey(self._window), cam, box, caption)
        reasons = Counter(assessment.reason for assessment in assessments if assessment.reason)
        result = StudyResult(
            verdict=outcome.verdict,
            probability=outcome.probability,
            threshold=outcome.threshold,
            n_slices=len(series.slices),
            n_assessable=len(assessable),
            top_slice=None if outcome.top_slice is None else (outcome.top_slice[0] + 1, outcome.top_slice[1]),
            reason=None if assessable else _unassessable_reason(len(series.slices), reasons),
            series_label=series.label,
            model=self._info,
            elapsed_ms=read_ms + (time.perf_counter() - started) * 1000,
            warnings=list(series.warnings),
            overlay_png=overlay,
            heatmap_shows_region=shows_region,
            suspected_type=suspected_type,
            site_profile=None if profile is None or profile.id is None else SiteProfileInfo(profile.id, profile.n_cases),
            slice_features=features.astype(np.float32) if with_features else None,
            slice_probabilities=shipped if with_features else None,
        )
        log.debug("analysed %s: %s (%d of %d slices assessable)", series.label, result.verdict,
                 result.n_assessable, result.n_slices)
        return result

    def _score(
        self, series: Series, progress: Progress
    ) -> tuple[list[Assessment], list[tuple[float, np.ndarray] | None], _LookedAt]:
        """Gate and prepare each slice as it is decoded (in the decoding threads) and run the model on every full
        batch of assessable slices while the next slices decode: `(assessments, scores, looked_at)`, one entry per
        slice; a score is the shipped probability and the pooled features, None when not assessed."""
        assessments: list[Assessment] = []
        scores: list[tuple[float, np.ndarray] | None] = []
        looked_at: _LookedAt = {}  # slice index -> (class-activation map, box it covers, type probabilities)
        waiting: list[tuple[int, PreparedSlice]] = []

        def gated(item: Slice) -> tuple[Assessment, PreparedSlice | None]:
            assessment = assess_slice(item, series.is_ct)
            return assessment, prepare_slice(item.grey(self._window)) if assessment.assessable else None

        def run_model() -> None:
            prediction = self._model.predict(batch_of([item for _, item in waiting]))
            for (index, item), probability, features, cam, kinds in zip(
                waiting, prediction.probability, prediction.features, prediction.cam, prediction.types
            ):
                scores[index] = (float(probability), features)
                looked_at[index] = (cam, item.box, kinds)
            waiting.clear()

        for index, (_, (assessment, prepared)) in enumerate(series.stream(gated)):
            assessments.append(assessment)
            scores.append(None)
            if prepared is not None:
                waiting.append((index, prepared))
            if len(waiting) == BATCH_SIZE:
                run_model()
                progress(f"Analysed {len(looked_at)} slices, read {index + 1}/{series.size}")
        if waiting:
            run_model()
        if len(assessments) > 1:
            progress(f"{len(looked_at)} of {len(assessments)} slices show enough brain to assess")
        progress(f"Analysed {len(looked_at)}/{len(looked_at)} slices")
        return assessments, scores, looked_at


def _unassessable_reason(n_slices: int, reasons: Counter[str | None]) -> str:
    common = str(reasons.most_common(1)[0][0]) if reasons else "No slice could be assessed."
    if n_slices == 1:
        return common
    return f"None of the {n_slices} slices can be assessed: {common[0].lower()}{common[1:]}"
