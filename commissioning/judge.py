"""The candidate profile against what is in use, on the same cases and the same grouped folds.

What is in use is the current site profile, or the shipped model when there is none. The shipped model learned
nothing from the site's cases, so its verdicts are taken as they are. The current profile did learn from its own
cases: in a fold that holds some of them out, it is fitted again without them, so neither side is judged on
cases it learned from. A candidate is adopted only when it is not worse: it ranks the cases as well (its AUC is
no more than `AUC_MARGIN` lower), and it misses no more bleeds than allowed (its sensitivity is at most
`SENSITIVITY_MARGIN` below the target, or below what is in use when that is lower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from commissioning.figures import Figures
from commissioning.fitting import (
    Case,
    Recipe,
    Verdicts,
    check_counts,
    choose_pull,
    cross_validate,
    fit_profile,
    verdicts,
)
from inference.site_profile import SiteProfile
from inference.study import OperatingPoint

SENSITIVITY_MARGIN = 0.05  # a sensitivity measured out of fold on a few dozen bleeds moves by this much
AUC_MARGIN = 0.01  # two AUCs on the same few hundred cases closer than this are the same ranking


@dataclass(frozen=True)
class Current:
    """The profile in use and the cases it was fitted on (indices into the cases being judged)."""

    profile: SiteProfile
    case_rows: frozenset[int]


@dataclass(frozen=True)
class Judgement:
    candidate: SiteProfile  # fitted on all the cases
    figures: dict[str, Figures]  # "shipped", "current" (when a profile is in use) and "candidate"
    adopt: bool
    reason: str
    out_of_fold: Verdicts  # the candidate's, one per case
    labels: list[int]


def judge(cases: Sequence[Case], recipe: Recipe, shipped: OperatingPoint, current: Current | None) -> Judgement:
    """Fit the candidate on `cases`, measure everything out of fold, and decide."""
    check_counts(cases)
    groups = [case.group for case in cases]
    labels = [case.label for case in cases]

    def refit_current(_: Sequence[Case], held_out: set[str]) -> SiteProfile:
        own = [cases[row] for row in sorted(current.case_rows)]
        if not any(case.group in held_out for case in own):
            return current.profile
        kept = [case for case in own if case.group not in held_out]
        return fit_profile(kept, recipe, current.profile.pull or choose_pull(kept, recipe))

    pull = choose_pull(cases, recipe)
    found = cross_validate(cases, recipe, pull, refit_current if current is not None else None)
    found["shipped"] = verdicts(cases, shipped, lambda case: case.shipped)
    figures = {name: Figures.of(v.probabilities, v.flagged, labels, groups) for name, v in found.items()}
    in_use = figures["current" if current is not None else "shipped"]
    adopt, reason = _decide(figures["candidate"], in_use, recipe.sensitivity,
                            "the current site profile" if current is not None else "the shipped model")
    return Judgement(fit_profile(cases, recipe, pull), _ordered(figures), adopt, reason, found["candidate"], labels)


def _decide(candidate: Figures, in_use: Figures, target: float, in_use_name: str) -> tuple[bool, str]:
    floor = min(target, in_use.sensitivity) - SENSITIVITY_MARGIN
    if candidate.auc < in_use.auc - AUC_MARGIN:
        return False, (f"the candidate ranks these cases worse than {in_use_name} "
                       f"(AUC {candidate.auc:.3f} against {in_use.auc:.3f})")
    if candidate.sensitivity < floor:
        return False, (f"the candidate would miss too many bleeds (sensitivity {candidate.sensitivity:.2f}, "
                       f"below {floor:.2f})")
    return True, (f"the candidate ranks these cases as well as {in_use_name} or better "
                  f"(AUC {candidate.auc:.3f} against {in_use.auc:.3f}) and keeps sensitivity at "
                  f"{candidate.sensitivity:.2f}")


def _ordered(figures: dict[str, Figures]) -> dict[str, Figures]:
    return {name: figures[name] for name in ("shipped", "current", "candidate") if name in figures}
