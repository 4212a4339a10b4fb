"""`python -m training --data ../shared/data/head-ct --out models/`: reproduce the shipped model."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from training.fit import Recipe
from training.pipeline import reproduce


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder with labels.csv and images/")
    parser.add_argument("--out", type=Path, required=True, help="where to write the ONNX model and its card")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help=f"epochs per model (default {defaults.epochs})"
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=defaults.warmup_epochs,
        help=f"epochs training only the late layers (default {defaults.warmup_epochs})",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    recipe = Recipe(epochs=args.epochs, warmup_epochs=min(args.warmup_epochs, args.epochs), seed=args.seed)
    card = reproduce(args.data, args.out, recipe, folds=args.folds)
    auc = card["cross_validation"]["oof_auc"]
    print(f"wrote {args.out / card['file']} (cross-validated AUC {auc:.3f}, threshold {card['threshold']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
