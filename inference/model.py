"""The haemorrhage model: one onnxruntime session per process, fed in batches, described by its model card."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCard:
    """What a result says about the model that produced it (from the JSON card beside the ONNX file)."""

    name: str
    version: str
    sha256: str
    threshold: float
    input_size: int

    @classmethod
    def beside(cls, model_path: Path) -> ModelCard:
        card_path = model_path.with_suffix(".json")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        return cls(
            name=str(card["name"]),
            version=str(card["version"]),
            sha256=str(card["sha256"]),
            threshold=float(card["threshold"]),
            input_size=int(card["input"]["size"]),
        )


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class HaemorrhageModel:
    """Calibrated per-slice probabilities and class-activation maps; `predict` is safe to call from threads."""

    def __init__(self, model_path: Path, threads: int = 2) -> None:
        self.card = ModelCard.beside(model_path)
        if file_sha256(model_path) != self.card.sha256:
            log.warning("model card %s does not match the model file's sha256", model_path.with_suffix(".json"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle workers sleep instead of spinning: the service shares a few cores with the bot and the monitor.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(probability [N], cam [N, h, w])` for one `(N, 3, S, S)` float32 batch."""
        probability, cam = self._session.run(["probability", "cam"], {"image": batch})
        return np.asarray(probability, dtype=np.float32).reshape(-1), np.asarray(cam, dtype=np.float32)
