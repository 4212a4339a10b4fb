"""`python -m training --ct-ich ../shared/data/ct-ich --head-ct ../shared/data/head-ct --out models/`:
reproduce the shipped model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from training.fit import Recipe
from training.pipeline import reproduce


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--ct-ich", type=Path, help="the CT-ICH folder (labels.csv, brain/, bone/)")
    parser.add_argument("--head-ct", type=Path, help="the head-ct folder (labels.csv, images/)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the ONNX models and their card")
    parser.add_argument(
        "--work", type=Path, help="where to keep out-of-fold scores, each fold's weights and the final weights"
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help=f"epochs per model (default {defaults.epochs})"
    )
    parser.add_argument(
        "--negatives-per-epoch", type=int, default=defaults.negatives_per_epoch,
        help=f"normal slices drawn per epoch (default {defaults.negatives_per_epoch})",
    )
    parser.add_argument(
        "--comparisons", type=Path, help="JSON lines of `python -m training.compare` to report in the card"
    )
    parser.add_argument(
        "--reuse-weights", action="store_true",
        help="export and score again the weights an earlier run with the same settings kept in --work, "
        "instead of training them",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    args = parser.parse_args(argv)
    if args.ct_ich is None and args.head_ct is None:
        parser.error("give --ct-ich, --head-ct or both")
    if args.reuse_weights and args.work is None:
        parser.error("--reuse-weights needs --work")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    recipe = Recipe(
        epochs=args.epochs, warmup_epochs=min(defaults.warmup_epochs, args.epochs),
        negatives_per_epoch=args.negatives_per_epoch, seed=args.seed,
    )
    comparisons = None
    if args.comparisons is not None:
        comparisons = [json.loads(line) for line in args.comparisons.read_text().splitlines() if line.strip()]
    card = reproduce(args.ct_ich, args.head_ct, args.out, recipe, folds=args.folds, work_dir=args.work,
                     comparisons=comparisons, reuse=args.reuse_weights)
    studies = card["cross_validation"]["studies_through_dicom"]["pooled"]
    print(f"wrote {args.out / card['file']} (cross-validated study AUC {studies['auc']:.3f}, "
          f"study threshold {card['study']['threshold']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
