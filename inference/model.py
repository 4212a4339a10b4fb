"""The haemorrhage model: one onnxruntime session per process, fed in batches, described by its model card."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
from scipy.special import expit

from inference.scan import Window
from inference.study import OperatingPoint, StudyCalibration

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SliceHead:
    """The haemorrhage row of the model's final layer and the slice calibration, from the model card: what turns
    a slice's `features` into its calibrated `probability` without the graph."""

    weights: np.ndarray  # float32, (F,)
    bias: float
    slope: float  # Platt calibration of the raw logit
    intercept: float

    def logit(self, features: np.ndarray) -> np.ndarray:
        """The raw haemorrhage logit of each row of `features` (N, F)."""
        return features @ self.weights + np.float32(self.bias)

    def probability(self, features: np.ndarray) -> np.ndarray:
        """The calibrated probability of each row of `features` (N, F), as the graph's `probability`."""
        return expit(np.float32(self.slope) * self.logit(features) + np.float32(self.intercept))


def _slice_head(card: dict) -> SliceHead | None:
    head = card["outputs"].get("features", {}).get("head")
    if head is None:
        return None
    calibration = card["calibration"]
    return SliceHead(
        weights=np.asarray(head["weights"], dtype=np.float32),
        bias=float(head["bias"]),
        slope=float(calibration["slope"]),
        intercept=float(calibration["intercept"]),
    )


@dataclass(frozen=True)
class ModelCard:
    """What a result says about the model that produced it (from the JSON card beside the ONNX file)."""

    name: str
    version: str
    sha256: str
    threshold: float  # for a single slice
    input_size: int
    window: Window  # how its DICOM slices' Hounsfield units are shown to it
    study: StudyCalibration | None = None  # for a series of slices
    type_names: tuple[str, ...] = ()  # the model's `types` outputs, in order
    shown_types: tuple[str, ...] = ()  # the types it tells apart well enough to be named
    head: SliceHead | None = field(default=None, compare=False, repr=False)  # for the `features` output

    @classmethod
    def beside(cls, model_path: Path) -> ModelCard:
        card_path = model_path.with_suffix(".json")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        study = card.get("study")
        return cls(
            name=str(card["name"]),
            version=str(card["version"]),
            sha256=str(card["sha256"]),
            threshold=float(card["threshold"]),
            input_size=int(card["input"]["size"]),
            study=None if study is None else StudyCalibration(
                aggregation=str(study["aggregation"]),
                slope=float(study["calibration"]["slope"]),
                intercept=float(study["calibration"]["intercept"]),
                threshold=float(study["threshold"]),
            ),
            type_names=tuple(card["outputs"].get("types", {}).get("names", ())),
            shown_types=tuple(card.get("types", {}).get("shown", ())),
            window=Window(float(card["input"]["window"]["center"]), float(card["input"]["window"]["width"])),
            head=_slice_head(card),
        )

    @property
    def operating_point(self) -> OperatingPoint:
        return OperatingPoint(self.threshold, self.study)


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def open_session(model_path: Path, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session on `threads` threads whose idle workers sleep instead of spinning: the service
    shares a few cores with the bot and the monitor."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Prediction:
    """The model's outputs for one batch of N slices."""

    probability: np.ndarray  # (N,) calibrated
    cam: np.ndarray  # (N, h, w) class-activation map
    types: np.ndarray  # (N, T) probability of each type; T is 0 for a model without type outputs
    features: np.ndarray  # (N, F) pooled vector the final layer reads; F is 0 for a model without the output


class HaemorrhageModel:
    """Calibrated per-slice probabilities, class-activation maps, type probabilities and features; `predict` is
    safe to call from threads."""

    def __init__(self, model_path: Path, threads: int = 2) -> None:
        self.card = ModelCard.beside(model_path)
        if file_sha256(model_path) != self.card.sha256:
            log.warning("model card %s does not match the model file's sha256", model_path.with_suffix(".json"))
        self._session = open_session(model_path, threads)
        names = {output.name for output in self._session.get_outputs()}
        self._outputs = [name for name in ("probability", "cam", "types", "features") if name in names]

    def predict(self, batch: np.ndarray) -> Prediction:
        """The outputs for one `(N, 3, S, S)` float32 batch."""
        outputs = dict(zip(self._outputs, self._session.run(self._outputs, {"image": batch}), strict=True))
        absent = np.zeros((len(batch), 0), dtype=np.float32)
        return Prediction(
            probability=np.asarray(outputs["probability"], dtype=np.float32).reshape(-1),
            cam=np.asarray(outputs["cam"], dtype=np.float32),
            types=np.asarray(outputs.get("types", absent), dtype=np.float32),
            features=np.asarray(outputs.get("features", absent), dtype=np.float32),
        )
