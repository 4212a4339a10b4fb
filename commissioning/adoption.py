"""Commissioning and updating a site profile against the HemoWatch database: judge, then adopt or keep.

`commission` judges a fresh set of confirmed cases (a CSV); `update` judges every confirmed case kept so far
(commissioning cases and doctors' reads). Either adopts the candidate, with the cases it learned from, in one
transaction, or changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


from commissioning.fitting import Case, Recipe
from commissioning.judge import Current, Judgement, judge
from inference.site_profile import SiteProfile
from inference.study import OperatingPoint
from store import site_profiles
from store.database import Database, atomic


@dataclass(frozen=True)
class Outcome:
    judgement: Judgement
    profile_id: int | None  # the adopted profile, None when the current one stays


def active_site_profile(db: Database, model_sha256: str) -> SiteProfile | None:
    """The active profile, when there is one fitted for this model file."""
    stored = site_profiles.active_profile(db)
    if stored is None or stored.model_sha256 != model_sha256:
        return None
    return SiteProfile.from_json(stored.profile_json, id=stored.id, n_cases=stored.n_cases)


def _current(db: Database, recipe: Recipe, case_ids: Sequence[int]) -> Current | None:
    """The profile in use for this model, with which of `case_ids` it was fitted on."""
    stored = site_profiles.active_profile(db)
    if stored is None or stored.model_sha256 != recipe.model_sha256:
        return None
    profile = SiteProfile.from_json(stored.profile_json, id=stored.id, n_cases=stored.n_cases)
    own = set(stored.case_ids)
    return Current(profile, frozenset(row for row, case_id in enumerate(case_ids) if case_id in own))


def _figures_record(judgement: Judgement) -> dict:
    """The figures, the reason, and the candidate's out-of-fold probabilities with their labels (for plots)."""
    out_of_fold = {"probability": [round(float(p), 5) for p in judgement.out_of_fold.probabilities],
                   "label": judgement.labels}
    return {name: figures.to_dict() for name, figures in judgement.figures.items()} | {
        "reason": judgement.reason, "out_of_fold": out_of_fold}


def commission(
    db: Database, cases: list[Case], recipe: Recipe, shipped: OperatingPoint, *,
    model_version: str, by: str, now: float,
) -> Outcome:
    """Judge a fresh set of cases; when adopted, they are kept in the casebook with the profile."""
    current = _current(db, recipe, [])
    judgement = judge(cases, recipe, shipped, current)
    if not judgement.adopt:
        return Outcome(judgement, None)
    with atomic(db):
        case_ids = [
            site_profiles.add_case(db, source="commission", model_sha256=recipe.model_sha256, group=case.group,
                                   label=case.label, features=case.features, shipped=case.shipped, now=now)
            for case in cases
        ]
        profile_id = _adopt(db, judgement, case_ids, cases, recipe, model_version, by, now, "commissioned")
    return Outcome(judgement, profile_id)


def update(
    db: Database, recipe: Recipe, shipped: OperatingPoint, *, model_version: str, by: str, now: float,
) -> Outcome:
    """Judge every confirmed case kept for this model; adopt the candidate when it is not worse."""
    stored = site_profiles.labelled_cases(db, recipe.model_sha256)
    cases = [Case(case.group_key, case.label, case.features, case.shipped) for case in stored]
    case_ids = [case.id for case in stored]
    current = _current(db, recipe, case_ids)
    judgement = judge(cases, recipe, shipped, current)
    if not judgement.adopt:
        return Outcome(judgement, None)
    profile_id = _adopt(db, judgement, case_ids, cases, recipe, model_version, by, now, "updated")
    return Outcome(judgement, profile_id)


def _adopt(
    db: Database, judgement: Judgement, case_ids: list[int], cases: list[Case], recipe: Recipe,
    model_version: str, by: str, now: float, note: str,
) -> int:
    return site_profiles.adopt_profile(
        db, profile_json=judgement.candidate.to_json(), figures=_figures_record(judgement), case_ids=case_ids,
        model_sha256=recipe.model_sha256, model_version=model_version,
        n_patients=len({case.group for case in cases}), n_bleeding=sum(case.label for case in cases),
        sensitivity_target=recipe.sensitivity, by=by, now=now, note=note,
    )
