"""Paired recipe comparisons: candidate recipes trained on the same patient folds and judged on the same held-out
patients, so the shipped recipe is chosen by patients the models never saw.

    python -m training.compare --ct-ich ../shared/data/ct-ich --head-ct ../shared/data/head-ct \
        --recipe shipped --recipe model-2.0.0 --fold 2 --out comparisons.jsonl

`--seed` trains each candidate again with other seeds on the same patients, which shows how much of a
difference between recipes one training run's draw can make.

Each line of the output is one recipe on one fold: slice AUC of the held-out scanner slices as pictures and
through the service's window, study AUC (highest slice, service window), and the head-ct pictures' AUC and
accuracy (at the threshold balancing sensitivity and specificity on all held-out pictures, as the card's). The
models are scored in PyTorch as the exported graph scores them; the full cross-validation of
the chosen recipe (`python -m training`) scores exported graphs through the service's readers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.augment import Augmentation
from training.crossval import patient_folds, serving_inputs
from training.data import TrainingSet, load_training_set
from training.evaluation import auc, balanced_threshold, study_scores
from training.fit import Recipe, train
from training.network import HaemorrhageNet, checkpoint_path

_ALL_BLOCKS_SMALL_AUGMENTATION = Recipe(
    epochs=8, negatives_per_epoch=400, weight_average=0.0, every_picture_slice=False,
    augmentation=Augmentation(max_rotation_degrees=12.0, max_shift=0.06, zoom=(0.9, 1.1), noise=0.02),
)
_MODEL_2_1_0 = Recipe(epochs=8, negatives_per_epoch=400, weight_average=0.0)
CANDIDATES: dict[str, Recipe] = {
    "shipped": Recipe(),
    "twelve-epochs-600-normals": dataclasses.replace(Recipe(), weight_average=0.0),
    "model-2.3.0": dataclasses.replace(Recipe(), picture_only_weight=1.0),
    "model-2.1.0": _MODEL_2_1_0,
    "all-blocks-wider-augmentation": dataclasses.replace(_MODEL_2_1_0, every_picture_slice=False),
    "model-2.0.0": dataclasses.replace(
        _ALL_BLOCKS_SMALL_AUGMENTATION, warmup_epochs=2, frozen_blocks_warmup=8, frozen_blocks=5, learning_rate=1e-3
    ),
    "all-blocks-small-augmentation": _ALL_BLOCKS_SMALL_AUGMENTATION,
    "all-blocks-small-augmentation-lr-1e-3": dataclasses.replace(_ALL_BLOCKS_SMALL_AUGMENTATION, learning_rate=1e-3),
    "all-blocks-milder-augmentation": dataclasses.replace(
        _ALL_BLOCKS_SMALL_AUGMENTATION,
        augmentation=dataclasses.replace(
            _ALL_BLOCKS_SMALL_AUGMENTATION.augmentation, gamma=(1.0, 1.0), contrast=(0.9, 1.1), brightness=0.04,
            noise=0.0,
        ),
    ),
}


def held_out_logits(net: HaemorrhageNet, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Haemorrhage logits of images (N, 3, S, S)."""
    with torch.no_grad():
        return np.concatenate([
            net(torch.from_numpy(np.ascontiguousarray(images[start : start + batch])))[:, 0].numpy()
            for start in range(0, len(images), batch)
        ])


def judge(data: TrainingSet, held: np.ndarray, net: HaemorrhageNet) -> dict[str, float]:
    """The comparison's figures on the held-out rows."""
    pictures = held_out_logits(net, np.repeat(data.pictures[held, None], 3, axis=1))
    windowed = held_out_logits(net, serving_inputs(data, held))
    labels, scanner = data.labels[held, 0], data.has_hu[held]
    # flagged as the card's single-slice threshold flags: balancing sensitivity and specificity on all pictures
    flagged = pictures >= balanced_threshold(pictures, labels)
    _, studies, bled = study_scores(
        windowed[scanner], np.ones(int(scanner.sum()), dtype=bool), data.groups[held][scanner],
        data.numbers[held][scanner], labels[scanner], "max",
    )
    return {
        "slice_auc_pictures": auc(pictures[scanner], labels[scanner]),
        "slice_auc_service_window": auc(windowed[scanner], labels[scanner]),
        "study_auc_highest_slice": auc(studies, bled),
        "head_ct_auc": auc(pictures[~scanner], labels[~scanner]),
        "head_ct_accuracy": float(np.mean(flagged[~scanner] == labels[~scanner])),
    }


def compare(data: TrainingSet, name: str, recipe: Recipe, fold: int, folds: int) -> dict[str, Any]:
    """Train `recipe` without fold `fold`'s patients and judge it on them."""
    fold_of = patient_folds(data, folds, Recipe().seed)  # the same patients for every candidate
    held, fit = np.flatnonzero(fold_of == fold), np.flatnonzero(fold_of != fold)
    started = time.monotonic()
    net = train(data.subset(fit), recipe, checkpoint_path(), name=f"{name} fold {fold + 1}/{folds}")
    return {
        "recipe": name, "fold": fold, "folds": folds, **judge(data, held, net),
        "training_minutes": round((time.monotonic() - started) / 60, 1), "settings": recipe.as_dict(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct-ich", type=Path, required=True, help="the CT-ICH folder")
    parser.add_argument("--head-ct", type=Path, help="the head-ct folder")
    parser.add_argument("--recipe", action="append", choices=sorted(CANDIDATES), required=True)
    parser.add_argument("--fold", type=int, action="append", required=True, help="held-out fold (0-based)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--seed", type=int, action="append",
        help="train with this seed instead of the recipe's (repeatable); the folds stay the same patients",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file the results are appended to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    data = load_training_set(args.ct_ich, args.head_ct)
    for fold in args.fold:
        for name in args.recipe:
            for seed in args.seed or [CANDIDATES[name].seed]:
                recipe = dataclasses.replace(CANDIDATES[name], seed=seed)
                result = compare(data, name, recipe, fold, args.folds)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(json.dumps({key: value for key, value in result.items() if key != "settings"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
