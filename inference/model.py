"""The haemorrhage model: one onnxruntime session per process, fed in batches, described by its model card."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from inference.scan import Window
from inference.study import OperatingPoint, StudyCalibration

log = logging.getLogger(__name__)


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


class HaemorrhageModel:
    """Calibrated per-slice probabilities, class-activation maps and type probabilities; `predict` is safe to call
    from threads."""

    def __init__(self, model_path: Path, threads: int = 2) -> None:
        self.card = ModelCard.beside(model_path)
        if file_sha256(model_path) != self.card.sha256:
            log.warning("model card %s does not match the model file's sha256", model_path.with_suffix(".json"))
        self._session = open_session(model_path, threads)
        names = {output.name for output in self._session.get_outputs()}
        self._outputs = [name for name in ("probability", "cam", "types") if name in names]

    def predict(self, batch: np.ndarray) -> Prediction:
        """The outputs for one `(N, 3, S, S)` float32 batch."""
        outputs = dict(zip(self._outputs, self._session.run(self._outputs, {"image": batch}), strict=True))
        absent = np.zeros((len(batch), 0), dtype=np.float32)
        return Prediction(
            probability=np.asarray(outputs["probability"], dtype=np.float32).reshape(-1),
            cam=np.asarray(outputs["cam"], dtype=np.float32),
            types=np.asarray(outputs.get("types", absent), dtype=np.float32),
        )
