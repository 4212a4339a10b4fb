"""Site commissioning simulated on patients a model never saw: what `hemowatch site commission` does with 5, 10
and 20 of a site's patients, judged on the site's other patients.

    python -m training.site_simulation --ct-ich ../shared/data/ct-ich --head-ct ../shared/data/head-ct \
        --model models/hemowatch-ich.onnx --work ~/site-simulation --out site-simulation.json [--write-card]

The shipped recipe is trained once per fold of a two-fold patient split (the folds of `training.crossval`), so
each fold model has 30 CT-ICH patients and 80 head-ct pictures it never saw. Those are its sites: the CT-ICH
patients sent as pictures (one case per slice, grouped by patient) and as DICOM series (one case per patient,
labelled by whether the patient bled), and the head-ct pictures (one case each). Each fold model is exported
with the shipped card's calibration and operating point, as the product would run it, and the cases are read
by the product's own reader (`commissioning.cases.read_cases`) from files on disk. For each `n`, random draws
of `n` patients commission a profile through the product's judge; the fold's remaining patients of that site
are then judged by the fold model as shipped, by the candidate profile and by whatever the judge left in use.

Each fold's weights, exported graph and cases are kept in `--work`, so a second run trains and reads nothing
(delete the `cases-*.npz` files there when the way the product reads or gates a scan has changed).
With `--write-card` the summary becomes the `site_commissioning` entry of the model's card (run it again after
retraining: the fold models take the card's calibration and operating point).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from commissioning.cases import Row, read_cases
from commissioning.figures import auc
from commissioning.fitting import MIN_PATIENTS_PER_CLASS, Case, Recipe, TooFewCases, choose_pull, fit_profile, verdicts
from commissioning.head import Head
from commissioning.judge import judge
from inference.analyzer import Analyzer
from inference.model import ModelCard, file_sha256
from inference.study import OperatingPoint
from training import fit
from training.card import features_output, write_card
from training.crossval import fold_network, patient_folds
from training.ct_ich import PIXEL_SPACING_MM, SLICE_THICKNESS_MM, CtIchSlice, brain_picture_path, read_hu
from training.data import TrainingSet, load_training_set
from training.evaluation import PlattScaling
from training.export import export_onnx
from training.network import checkpoint_path
from training.series_writer import write_series

log = logging.getLogger(__name__)

FOLDS = 2
SIZES = (5, 10, 20)
DRAWS = 20
SEED = 2026
SENSITIVITY = 0.95  # SITE_SENSITIVITY's default
SITES = ("ct-ich pictures", "ct-ich series", "head-ct pictures")
ELSEWHERE = {"ct-ich pictures": "head-ct pictures", "head-ct pictures": "ct-ich pictures"}
"""The other site a picture site's profile is also judged on: one site's profile at another."""
ELSEWHERE_MODELS = ("shipped_elsewhere", "candidate_elsewhere")
MODELS = ("shipped", "candidate", "in_use", *ELSEWHERE_MODELS)
CARD_KEYS = ("name", "version", "threshold", "input", "calibration", "study", "types")


@dataclass(frozen=True)
class FoldModel:
    """A fold's exported graph with its card (the shipped card's calibration and operating point)."""

    path: Path
    card: ModelCard

    @property
    def recipe(self) -> Recipe:
        head = self.card.head
        assert head is not None and self.card.study is not None
        return Recipe(Head(head.weights.astype(float), head.bias), self.card.sha256, self.card.study.aggregation,
                      SENSITIVITY)


def export_fold_model(net: Any, shipped_card: dict[str, Any], folder: Path, name: str) -> FoldModel:
    """The fold network as the product runs it: calibrated with the shipped card's slice calibration, with a card
    that keeps the shipped operating point and records this graph's own head."""
    path = folder / "model.onnx"
    if not path.exists():
        calibration = shipped_card["calibration"]
        export_onnx(net, PlattScaling(calibration["slope"], calibration["intercept"]), path)
    card = {key: shipped_card[key] for key in CARD_KEYS}
    card["version"] = f"{shipped_card['version']} ({name})"
    card |= {"file": path.name, "sha256": file_sha256(path),
             "outputs": shipped_card["outputs"] | {"features": features_output(path)}}
    write_card(card, path.with_suffix(".json"))
    return FoldModel(path, ModelCard.beside(path))


def _save_cases(path: Path, cases: Sequence[Case]) -> None:
    np.savez_compressed(
        path, features=np.concatenate([case.features for case in cases]),
        shipped=np.concatenate([case.shipped for case in cases]),
        lengths=np.array([len(case.shipped) for case in cases]), labels=np.array([case.label for case in cases]),
        groups=np.array([case.group for case in cases]),
    )


def _load_cases(path: Path) -> list[Case]:
    stored = np.load(path)
    ends = np.cumsum(stored["lengths"])
    return [
        Case(str(group), int(label), stored["features"][end - length : end], stored["shipped"][end - length : end])
        for group, label, length, end in zip(stored["groups"], stored["labels"], stored["lengths"], ends, strict=True)
    ]


def site_rows(data: TrainingSet, held: np.ndarray, ct_ich: Path, head_ct: Path | None, scratch: Path,
              ) -> dict[str, list[Row]]:
    """The CSV rows a hospital would write for the held-out patients of one fold, per site."""
    rows: dict[str, list[Row]] = {site: [] for site in SITES}
    for group in np.unique(data.groups[held]):
        source, name = group.split("/")
        members = np.flatnonzero(data.groups == group)
        members = members[np.argsort(data.numbers[members])]
        labels = data.labels[members, 0].astype(int)
        if source == "head-ct":
            assert head_ct is not None
            rows["head-ct pictures"].append(Row(0, head_ct / "images" / f"{name}.png", int(labels[0]), group))
            continue
        slices = [CtIchSlice(name, int(number), 0, ()) for number in data.numbers[members]]
        rows["ct-ich pictures"].extend(
            Row(0, brain_picture_path(ct_ich, item), int(label), group) for item, label in zip(slices, labels)
        )
        folder = scratch / name
        write_series([read_hu(ct_ich, item) for item in slices], folder, spacing_mm=PIXEL_SPACING_MM,
                     thickness_mm=SLICE_THICKNESS_MM)
        rows["ct-ich series"].append(Row(0, folder, int(labels.max()), group))
    return rows


def site_cases(model: FoldModel, data: TrainingSet, held: np.ndarray, ct_ich: Path, head_ct: Path | None,
               folder: Path) -> dict[str, list[Case]]:
    """Each site's cases as the product reads them, kept in `folder` once read."""
    sites = [site for site in SITES if head_ct is not None or not site.startswith("head-ct")]
    kept = {site: folder / f"cases-{site.replace(' ', '-')}.npz" for site in sites}
    if all(path.exists() for path in kept.values()):
        return {site: _load_cases(path) for site, path in kept.items()}
    analyzer = Analyzer(model.path, threads=2)
    found = {}
    with tempfile.TemporaryDirectory(prefix="hemowatch-site-series-") as scratch:
        for site, rows in site_rows(data, held, ct_ich, head_ct, Path(scratch)).items():
            if not rows:
                continue
            started = time.monotonic()
            found[site], left_out = read_cases(rows, analyzer)
            log.info("%s: %d cases read, %d rows left out (nothing assessable), %.0f s", site, len(found[site]),
                     len(left_out), time.monotonic() - started)
            _save_cases(kept[site], found[site])
    return found


def bleeding_count(n: int, share: float) -> int:
    """Bleeding patients among `n` drawn: the site's share, but at least the product's minimum of each class
    where `n` allows it, and never fewer than two of either."""
    floor = min(MIN_PATIENTS_PER_CLASS, n // 2)
    return int(np.clip(round(n * share), floor, n - floor))


def _figures(cases: Sequence[Case], point: OperatingPoint, probabilities: Any) -> dict[str, float]:
    """AUC (a slice per picture case, a patient per series case), sensitivity, specificity and alerts per 100 of
    the verdicts on `cases`."""
    found = verdicts(cases, point, probabilities)
    labels = np.array([case.label for case in cases], dtype=bool)
    return {
        "auc": auc(found.probabilities, labels),
        "sensitivity": float(found.flagged[labels].mean()),
        "specificity": float(1 - found.flagged[~labels].mean()),
        "alerts_per_100": float(found.flagged.mean() * 100),
    }


def commission_draw(
    cases: Sequence[Case], model: FoldModel, n: int, rng: np.random.Generator, elsewhere: Sequence[Case] = (),
) -> dict[str, Any]:
    """Commission on `n` patients drawn from `cases`; judge the rest as shipped, by the candidate and as left
    in use, and the cases of another site (`elsewhere`) as shipped and by the candidate."""
    bleeding = sorted({case.group for case in cases if case.label})
    normal = sorted({case.group for case in cases} - set(bleeding))
    count = bleeding_count(n, len(bleeding) / (len(bleeding) + len(normal)))
    chosen = {*rng.choice(bleeding, count, replace=False), *rng.choice(normal, n - count, replace=False)}
    commissioning = [case for case in cases if case.group in chosen]
    rest = [case for case in cases if case.group not in chosen]
    recipe, shipped = model.recipe, model.card.operating_point
    try:
        judgement = judge(commissioning, recipe, shipped, None)
        outcome, candidate = ("adopted" if judgement.adopt else "not adopted"), judgement.candidate
        printed = judgement.figures["candidate"].to_dict()
    except TooFewCases:  # the product refuses; the profile it would have fitted, for the record
        candidate = fit_profile(commissioning, recipe, choose_pull(commissioning, recipe))
        outcome, printed = "refused: too few cases", None
    test = {
        "shipped": _figures(rest, shipped, lambda case: case.shipped),
        "candidate": _figures(rest, candidate.operating_point,
                              lambda case: candidate.slice_probabilities(case.features)),
    }
    test["in_use"] = test["candidate" if outcome == "adopted" else "shipped"]
    if elsewhere:
        test["shipped_elsewhere"] = _figures(elsewhere, shipped, lambda case: case.shipped)
        test["candidate_elsewhere"] = _figures(elsewhere, candidate.operating_point,
                                               lambda case: candidate.slice_probabilities(case.features))
    return {
        "n": n, "patients": sorted(str(group) for group in chosen), "bleeding_patients": count,
        "normal_patients": n - count, "commissioning_cases": len(commissioning),
        "outcome": outcome, "printed_candidate": printed, "test_patients": len({case.group for case in rest}),
        "test_cases": len(rest), "test": test,
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    low, median, high = np.percentile(values, [10, 50, 90])
    return {"median": round(float(median), 3), "p10": round(float(low), 3), "p90": round(float(high), 3)}


FIGURES = ("auc", "sensitivity", "specificity", "alerts_per_100")


def _spreads(figures: Sequence[dict[str, float | None]]) -> dict[str, dict[str, float]]:
    return {name: _spread([np.nan if found[name] is None else found[name] for found in figures]) for name in FIGURES}


def summarise(draws: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per site and `n`: how the draws ended, the median and 10th-90th percentiles of the test figures, and for
    the draws that adopted, the candidate's test figures beside those the command printed for it."""
    rows = []
    for site in SITES:
        for n in SIZES:
            chosen = [draw for draw in draws if draw["site"] == site and draw["n"] == n]
            if not chosen:
                continue
            outcomes = {name: sum(draw["outcome"] == name for draw in chosen)
                        for name in ("adopted", "not adopted", "refused: too few cases")}
            adopted = [draw for draw in chosen if draw["outcome"] == "adopted"]
            row = {
                "site": site, "n": n, "draws": len(chosen), "outcomes": outcomes,
                "test_patients": _spread([draw["test_patients"] for draw in chosen]),
                "test": {model: _spreads([draw["test"][model] for draw in chosen])
                         for model in MODELS if model in chosen[0]["test"]},
            }
            if adopted:
                row["when_adopted"] = {
                    "shipped": _spreads([draw["test"]["shipped"] for draw in adopted]),
                    "candidate": _spreads([draw["test"]["candidate"] for draw in adopted]),
                    "printed": _spreads([draw["printed_candidate"] for draw in adopted]),
                }
            rows.append(row)
    return rows


def _cell(spread: dict[str, float], digits: int = 2) -> str:
    return f"{spread['median']:.{digits}f} ({spread['p10']:.{digits}f}-{spread['p90']:.{digits}f})"


_DIGITS = {"auc": 3, "sensitivity": 2, "specificity": 2, "alerts_per_100": 0}


def _pair(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], figure: str) -> str:
    return f"{_cell(before[figure], _DIGITS[figure])} → {_cell(after[figure], _DIGITS[figure])}"


def table(summary: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table: the shipped model against what commissioning left in use."""
    lines = [
        "| site | n | adopted / not / refused | test patients | AUC shipped → in use | sensitivity shipped → in use "
        "| specificity shipped → in use | alerts per 100 shipped → in use |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary:
        outcomes = row["outcomes"]
        lines.append(
            f"| {row['site']} | {row['n']} | {outcomes['adopted']} / {outcomes['not adopted']} / "
            f"{outcomes['refused: too few cases']} | {row['test_patients']['median']:.0f} | "
            + " | ".join(_pair(row["test"]["shipped"], row["test"]["in_use"], figure) for figure in FIGURES) + " |"
        )
    return "\n".join(lines)


def adopted_table(summary: Sequence[dict[str, Any]]) -> str:
    """The draws that adopted: what the command printed for the candidate (out of fold on the `n` patients), and
    the shipped model against the candidate on the site's other patients."""
    lines = [
        "| site | n | adopted | printed AUC / sensitivity / specificity | test AUC shipped → candidate "
        "| test sensitivity shipped → candidate | test specificity shipped → candidate |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary:
        if "when_adopted" not in row:
            continue
        adopted = row["when_adopted"]
        printed = " / ".join(f"{adopted['printed'][figure]['median']:.{_DIGITS[figure]}f}" for figure in FIGURES[:3])
        lines.append(
            f"| {row['site']} | {row['n']} | {row['outcomes']['adopted']} | {printed} | "
            + " | ".join(_pair(adopted["shipped"], adopted["candidate"], figure) for figure in FIGURES[:3]) + " |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores; {platform.system()}; Python {platform.python_version()}"


def _card_row(row: dict[str, Any]) -> dict[str, Any]:
    """One summary row for the card, each figure as "median (10th-90th percentile)"."""

    def cells(spreads: dict[str, dict[str, float]]) -> dict[str, str]:
        return {figure: _cell(spreads[figure], _DIGITS[figure]) for figure in FIGURES}

    found = {"site": row["site"], "n": row["n"], "draws": row["draws"], "outcomes": row["outcomes"],
             "test_patients": row["test_patients"]["median"]}
    found |= {model: cells(row["test"][model]) for model in ("shipped", "in_use", *ELSEWHERE_MODELS)
              if model in row["test"]}
    if "when_adopted" in row:
        found["when_adopted"] = {name: cells(spreads) for name, spreads in row["when_adopted"].items()}
    return found


def card_section(result: dict[str, Any]) -> dict[str, Any]:
    """The model card's `site_commissioning` entry from a simulation's result."""
    return {
        "what": "hemowatch site commission fits a site profile (a head on the features output, its calibration and "
        "thresholds for SITE_SENSITIVITY) on a hospital's own confirmed cases, and adopts it only when, out of "
        "fold on those cases, it ranks them as well as what is in use and keeps sensitivity",
        "simulation": {
            "method": result["method"], "command": result["command"], "machine": result["machine"],
            "minutes": result["minutes"], "folds_trained_in_those_minutes": result["folds_trained"],
            "sensitivity_target": result["sensitivity_target"],
            "figures": "median (10th-90th percentile) over the draws of both folds, on each draw's test patients: "
            "shipped (the fold model with this card's operating point), in_use (the candidate where adopted, "
            "else shipped), *_elsewhere (on the other picture site's cases), when_adopted (the draws that "
            "adopted: printed is what the command reported out of fold on the n patients)",
            "summary": [_card_row(row) for row in result["summary"]],
        },
        "limits": [
            "a profile fitted on one site's cases says nothing about another site's (see the *_elsewhere "
            "figures): commission at each site, on its own scanners' cases, and again for each new model file",
            "these figures come from a simulation on held-out patients of the collections the model was trained "
            "on, not from a second hospital; the fold models learned from half the patients the shipped model "
            "did, and saw the other half of each collection",
            "with 10 to 25 test patients per draw every figure moves a lot from draw to draw, and the figures the "
            "command prints on 10 or 20 patients are optimistic where those few cases separate perfectly",
            "fewer than 5 patients of each class are refused",
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.site_simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct-ich", type=Path, required=True, help="the CT-ICH folder")
    parser.add_argument("--head-ct", type=Path, help="the head-ct folder (a picture-only site)")
    parser.add_argument("--work", type=Path, required=True, help="where fold weights, graphs and cases are kept")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of every draw and the summary")
    parser.add_argument("--model", type=Path, required=True,
                        help="the shipped model, whose card's calibration and operating point the fold models take")
    parser.add_argument("--write-card", action="store_true",
                        help="write the summary into that card as its `site_commissioning` entry")
    parser.add_argument("--draws", type=int, default=DRAWS, help=f"draws per fold, site and size (default {DRAWS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    card_path = args.model.with_suffix(".json")
    shipped_card = json.loads(card_path.read_text())
    data = load_training_set(args.ct_ich, args.head_ct)
    recipe = fit.Recipe()
    fold_of = patient_folds(data, FOLDS, recipe.seed)
    draws, trained = [], 0
    for fold in range(FOLDS):
        name = f"fold {fold + 1}/{FOLDS}"
        folder = args.work / f"fold-{fold + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        kept = args.work / f"fold-{fold + 1}.pt"
        held = np.flatnonzero(fold_of == fold)
        trained += not kept.exists()
        net = fold_network(data, np.flatnonzero(fold_of != fold), recipe, checkpoint_path(), name, kept, kept.exists())
        model = export_fold_model(net, shipped_card, folder, name)
        sites = site_cases(model, data, held, args.ct_ich, args.head_ct, folder)
        for site, cases in sites.items():
            elsewhere = sites.get(ELSEWHERE.get(site, ""), [])
            for n in SIZES:
                for draw in range(args.draws):
                    rng = np.random.default_rng([SEED, fold, n, draw])
                    draws.append({"site": site, "fold": fold, "draw": draw}
                                 | commission_draw(cases, model, n, rng, elsewhere))
                log.info("%s, %s, n=%d: %d draws", name, site, n, args.draws)
    summary = summarise(draws)
    command = "python -m training.site_simulation " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "method": __doc__.split("\n\n", 2)[2].split("\n\nEach fold")[0].replace("\n", " "),
        "command": command, "machine": machine(), "minutes": round((time.monotonic() - started) / 60, 1),
        "folds_trained": trained,
        "folds": FOLDS, "draws_per_fold": args.draws, "sensitivity_target": SENSITIVITY,
        "summary": summary, "draws": draws,
    }
    args.out.write_text(json.dumps(result, indent=1))
    if args.write_card:
        write_card(shipped_card | {"site_commissioning": card_section(result)}, card_path)
    print(table(summary))
    print()
    print(adopted_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
