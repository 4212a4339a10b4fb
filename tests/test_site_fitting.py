"""Site commissioning's statistics: grouped folds, the pulled head, thresholds for a sensitivity target, and the
rule that never adopts a worse profile. Cases here are made of numbers with a known signal, so each expected
outcome is known; the commissioning of real scans is in test_site_commission.py."""

from __future__ import annotations

import numpy as np
import pytest

from commissioning.figures import auc, threshold_for_sensitivity
from commissioning.fitting import Case, Recipe, TooFewCases, check_counts, choose_pull, fit_profile, verdicts
from commissioning.folds import grouped_folds
from commissioning.head import Head, fit_head
from commissioning.judge import Current, judge
from inference.study import OperatingPoint

FEATURES = 24
SHIPPED = np.r_[1.0, 1.0, np.zeros(FEATURES - 2)]  # a shipped head misled by a feature that is noise


def _cases(patients: int, seed: int, signal: float = 3.0, slices: int = 4) -> list[Case]:
    """Per patient, a series of `slices`: feature 0 carries the signal on one slice of a bleeding series, which the
    shipped head weighs as much as a feature that is noise."""
    rng = np.random.default_rng(seed)
    found = []
    for patient in range(patients):
        label = patient % 2
        features = rng.normal(size=(slices, FEATURES))
        if label:
            features[rng.integers(slices), 0] += signal
        shipped = 1 / (1 + np.exp(-features @ SHIPPED))
        found.append(Case(f"p{seed}-{patient}", label, features, shipped))
    return found


def _recipe() -> Recipe:
    return Recipe(Head(SHIPPED, 0.0), "sha", "max", 0.95)


def test_no_patient_is_on_both_sides_of_a_fold_and_each_fold_holds_both_classes() -> None:
    groups = [f"p{i // 3}" for i in range(60)]  # 20 patients, 3 cases each
    labels = [(i // 3) % 2 for i in range(60)]
    folds = grouped_folds(groups, labels)
    for patient in set(groups):
        assert len({fold for fold, group in zip(folds, groups) if group == patient}) == 1
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for fold in range(5):
        assert {label for label, k in zip(labels, folds) if k == fold} == {0, 1}


def test_the_auc_counts_ties_half_and_the_threshold_keeps_the_target_sensitivity() -> None:
    assert auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 0, 1, 1])) == 0.875
    positives = np.linspace(0.05, 1.0, 20)
    threshold = threshold_for_sensitivity(np.concatenate([positives, [0.5]]), np.r_[np.ones(20), 0], 0.9)
    assert threshold == pytest.approx(positives[2])  # 18 of 20 positives at or above it
    assert (positives >= threshold).sum() == 18


def test_the_head_stays_at_the_shipped_head_under_a_strong_pull_and_moves_under_a_weak_one() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 5))
    labels = (features[:, 1] > 0).astype(int)
    prior = Head(np.array([1.0, 0, 0, 0, 0]), 0.0)
    held = fit_head(features, labels, prior, pull=1e4)
    free = fit_head(features, labels, prior, pull=1e-3)
    assert np.abs(held.weights - prior.weights).max() < 0.01
    assert free.weights[1] > 3 and abs(free.weights[0]) < free.weights[1] / 3


def test_too_few_patients_of_a_class_says_how_many_more_are_needed() -> None:
    cases = _cases(7, seed=2)  # 3 bleeding, 4 not
    with pytest.raises(TooFewCases, match="add 2 more patients with haemorrhage cases and 1 more patient with no-"):
        check_counts(cases)


def test_a_fitted_profile_finds_the_signal_that_the_shipped_head_ignores() -> None:
    train, test = _cases(40, seed=3, signal=5.0), _cases(40, seed=4, signal=5.0)
    profile = fit_profile(train, _recipe(), choose_pull(train, _recipe()))
    judged = verdicts(test, profile.operating_point, lambda case: profile.slice_probabilities(case.features))
    labels = np.array([case.label for case in test])
    assert auc(judged.probabilities, labels) > 0.95
    assert judged.flagged[labels == 1].mean() >= 0.9
    assert profile.study is not None and profile.study.aggregation == "max"


def test_a_candidate_that_ranks_worse_than_the_current_profile_is_not_adopted() -> None:
    cases = _cases(12, seed=5, signal=1.5)
    many = _cases(200, seed=6, signal=1.5)
    oracle = fit_profile(many, _recipe(), choose_pull(many, _recipe()))
    shipped = OperatingPoint(0.5)
    kept = judge(cases, _recipe(), shipped, Current(oracle, frozenset()))
    assert not kept.adopt
    assert kept.reason.startswith("the candidate ranks these cases worse than the current site profile")
    assert kept.figures["candidate"].auc < kept.figures["current"].auc
    adopted = judge(_cases(40, seed=7), _recipe(), shipped, None)
    assert adopted.adopt, adopted.reason
    assert adopted.figures["candidate"].specificity > adopted.figures["shipped"].specificity + 0.2
