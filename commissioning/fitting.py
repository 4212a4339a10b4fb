"""A site profile from confirmed cases, and its out-of-fold verdicts on them.

A case is one confirmed input: a picture (one slice) or a series, with the label the hospital gives it. A
series label says that the study bled, not which slice did, so a bleeding series lends only its most
suspicious slices (by the shipped model) as positives, and a normal series lends every slice as a negative.
Everything a profile holds is chosen on the cases by cross-validation grouped by patient: the pull towards
the shipped head, the calibration on out-of-fold logits, and the thresholds that hold the sensitivity target
on out-of-fold probabilities. `cross_validate` fits that whole recipe again inside each fold, so the figures
it gives are for cases the recipe never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logit

from commissioning.folds import grouped_folds
from commissioning.head import PULLS, Head, balanced_weights, fit_head, fit_platt
from commissioning.figures import threshold_for_sensitivity
from inference.site_profile import SiteProfile
from inference.study import OperatingPoint, StudyCalibration, aggregate, study_verdict

TOP_FRACTION = 0.1  # of a bleeding series' slices taken as positives, at least one
MIN_PATIENTS_PER_CLASS = 5
MIN_SERIES_PER_CLASS = 3  # fewer: series are judged by the slice rule
_EPSILON = 1e-7


@dataclass(frozen=True)
class Case:
    group: str  # the patient, for grouping the folds
    label: int  # 1: haemorrhage confirmed
    features: np.ndarray  # (assessable slices, F) pooled features, lowest slice first
    shipped: np.ndarray  # the shipped model's calibrated probability of each of those slices

    @property
    def is_series(self) -> bool:
        return len(self.features) > 1


@dataclass(frozen=True)
class Recipe:
    """What every profile fitted for one site shares: the model it sits on and what it aims for."""

    prior: Head  # the shipped head
    model_sha256: str
    aggregation: str  # how a series' slice log-odds become one study score (the model card's)
    sensitivity: float  # the target the thresholds are chosen for


@dataclass(frozen=True)
class Verdicts:
    """One verdict per case."""

    probabilities: np.ndarray
    flagged: np.ndarray


class TooFewCases(ValueError):
    pass


def check_counts(cases: Sequence[Case]) -> None:
    """Raise TooFewCases naming how many more patients of which class are needed."""
    bleeding = {case.group for case in cases if case.label}
    normal = {case.group for case in cases if not case.label}
    missing = [
        f"{MIN_PATIENTS_PER_CLASS - len(found)} more patient{'s' * (MIN_PATIENTS_PER_CLASS - len(found) > 1)} "
        f"with {what} cases"
        for found, what in ((bleeding, "haemorrhage"), (normal, "no-haemorrhage"))
        if len(found) < MIN_PATIENTS_PER_CLASS
    ]
    if missing:
        raise TooFewCases(
            f"Too few cases: {len(bleeding)} patients with haemorrhage and {len(normal)} without; at least "
            f"{MIN_PATIENTS_PER_CLASS} of each are needed, so add {' and '.join(missing)}."
        )


def _training_slices(cases: Sequence[Case]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(features, labels, case index)` of the slices the head learns from."""
    features, labels, owners = [], [], []
    for index, case in enumerate(cases):
        if case.label and case.is_series:
            count = max(1, math.ceil(TOP_FRACTION * len(case.shipped)))
            rows = np.argsort(case.shipped)[::-1][:count]
        else:
            rows = np.arange(len(case.features))
        features.append(case.features[rows])
        labels.append(np.full(len(rows), case.label))
        owners.append(np.full(len(rows), index))
    return np.concatenate(features), np.concatenate(labels), np.concatenate(owners)


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    probabilities = np.clip(1 / (1 + np.exp(-logits)), _EPSILON, 1 - _EPSILON)
    losses = -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    return float(balanced_weights(labels) @ losses)


def choose_pull(cases: Sequence[Case], recipe: Recipe) -> float:
    """The pull towards the shipped head whose out-of-fold log loss on these cases is lowest."""
    features, labels, owners = _training_slices(cases)
    folds = grouped_folds([case.group for case in cases], [case.label for case in cases])[owners]
    losses, starts = {}, [None] * (folds.max() + 1)
    for pull in PULLS:  # strongest first, each fit starting where the stronger pull's fit ended
        held_out = np.empty(len(labels))
        for k in range(len(starts)):
            starts[k] = fit_head(features[folds != k], labels[folds != k], recipe.prior, pull, start=starts[k])
            held_out[folds == k] = starts[k].logits(features[folds == k])
        losses[pull] = _log_loss(held_out, labels)
    return min(losses, key=losses.get)


def fit_profile(cases: Sequence[Case], recipe: Recipe, pull: float) -> SiteProfile:
    """The profile these cases support for this pull: calibration and thresholds chosen on out-of-fold
    predictions."""
    features, labels, owners = _training_slices(cases)
    case_folds = grouped_folds([case.group for case in cases], [case.label for case in cases])
    slice_folds = case_folds[owners]
    heads = [fit_head(features[slice_folds != k], labels[slice_folds != k], recipe.prior, pull)
             for k in range(case_folds.max() + 1)]
    held_out = np.empty(len(labels))
    for k, fold_head in enumerate(heads):
        held_out[slice_folds == k] = fold_head.logits(features[slice_folds == k])
    slope, intercept = fit_platt(held_out, labels)
    head = fit_head(features, labels, recipe.prior, pull, start=heads[0])

    def calibrated(case_index: int) -> np.ndarray:
        raw = heads[case_folds[case_index]].logits(cases[case_index].features)
        return 1 / (1 + np.exp(-(slope * raw + intercept)))

    probabilities = [calibrated(index) for index in range(len(cases))]
    single = [index for index, case in enumerate(cases) if not case.is_series]
    if any(cases[index].label for index in single):
        slice_threshold = threshold_for_sensitivity(
            np.array([probabilities[index][0] for index in single]),
            np.array([cases[index].label for index in single]), recipe.sensitivity)
    else:  # series only: the slices the head learned from
        slice_probabilities = 1 / (1 + np.exp(-(slope * held_out + intercept)))
        slice_threshold = threshold_for_sensitivity(slice_probabilities, labels, recipe.sensitivity)
    return SiteProfile(
        model_sha256=recipe.model_sha256, weights=head.weights, bias=head.bias, slope=slope, intercept=intercept,
        slice_threshold=slice_threshold, study=_study_calibration(cases, probabilities, recipe),
        n_cases=len(cases), pull=pull,
    )


def _study_calibration(
    cases: Sequence[Case], probabilities: list[np.ndarray], recipe: Recipe
) -> StudyCalibration | None:
    series = [index for index, case in enumerate(cases) if case.is_series]
    labels = np.array([cases[index].label for index in series])
    if min(int(labels.sum()), int(len(labels) - labels.sum())) < MIN_SERIES_PER_CLASS:
        return None
    scores = np.array([
        aggregate(logit(np.clip(probabilities[index], _EPSILON, 1 - _EPSILON)), recipe.aggregation)
        for index in series
    ])
    slope, intercept = fit_platt(scores, labels)
    study_probabilities = 1 / (1 + np.exp(-(slope * scores + intercept)))
    threshold = threshold_for_sensitivity(study_probabilities, labels, recipe.sensitivity)
    return StudyCalibration(recipe.aggregation, slope, intercept, threshold)


def verdicts(cases: Sequence[Case], point: OperatingPoint,
             slice_probabilities: Callable[[Case], np.ndarray]) -> Verdicts:
    """Each case judged as the product judges it: one slice by the slice threshold, a series as a study."""
    outcomes = [study_verdict(list(slice_probabilities(case)), point) for case in cases]
    return Verdicts(
        np.array([outcome.probability for outcome in outcomes]),
        np.array([outcome.verdict == "hemorrhage" for outcome in outcomes]),
    )


Fitter = Callable[[Sequence[Case], set[str]], SiteProfile]
"""Fits a profile for one fold: given the fold's training cases and its held-out patients."""


def cross_validate(
    cases: Sequence[Case], recipe: Recipe, pull: float, current: Fitter | None = None
) -> dict[str, Verdicts]:
    """Out-of-fold verdicts of the candidate recipe with this pull ("candidate"), and of `current` ("current") on
    the same folds: the current profile, fitted again without the held-out patients where it had learned from
    them. The pull is chosen once on all the cases (one of a few values); everything else the recipe chooses is
    chosen again inside each fold."""
    folds = grouped_folds([case.group for case in cases], [case.label for case in cases])
    fitters: dict[str, Fitter] = {"candidate": lambda train, _: fit_profile(train, recipe, pull)}
    if current is not None:
        fitters["current"] = current
    found = {name: (np.empty(len(cases)), np.zeros(len(cases), dtype=bool)) for name in fitters}
    for fold in range(folds.max() + 1):
        train = [case for case, k in zip(cases, folds) if k != fold]
        test_rows = np.flatnonzero(folds == fold)
        test = [cases[row] for row in test_rows]
        held_out_groups = {case.group for case in test}
        for name, fit in fitters.items():
            profile = fit(train, held_out_groups)
            judged = verdicts(test, profile.operating_point, lambda case: profile.slice_probabilities(case.features))
            found[name][0][test_rows] = judged.probabilities
            found[name][1][test_rows] = judged.flagged
    return {name: Verdicts(*values) for name, values in found.items()}
