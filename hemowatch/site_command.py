"""`hemowatch site`: commission the model on this hospital's confirmed cases, and look after the profile."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from datetime import UTC, datetime

from pathlib import Path

import numpy as np

from commissioning.adoption import Outcome, commission, update
from commissioning.cases import CasesError, read_cases, read_rows
from commissioning.figures import Figures
from commissioning.fitting import Recipe, TooFewCases
from commissioning.head import Head
from commissioning.live import live_agreement
from commissioning.plot import report_png
from core.settings import ScanSettings
from hemowatch.builders import analyzer_from_settings
from hemowatch.tables import print_table
from inference.model import ModelCard
from store import open_database, site_profiles
from store.database import Database

REFUSED = 3  # exit code: the candidate was judged worse and the current profile stays

_NAMES = {"shipped": "shipped model", "current": "current profile", "candidate": "candidate profile"}


def run_site(args: argparse.Namespace, settings: ScanSettings) -> int:
    card = ModelCard.beside(settings.hemowatch_model)
    if card.head is None:
        print(f"hemowatch site: the model card of {settings.hemowatch_model} describes no features output",
              file=sys.stderr)
        return 2
    db = open_database(settings.database)
    try:
        action = args.site_command
        if action == "commission":
            return _commission(args, settings, db, card)
        if action == "update":
            return _report_outcome(update(db, site_recipe(settings, card), card.operating_point,
                                          model_version=card.version, by=_who(), now=time.time()))
        if action == "report":
            return _report(db, card, args.plot)
        if action == "history":
            return _history(db)
        if action == "rollback":
            return _rollback(db)
        return _off(db)
    finally:
        db.close()


def _who() -> str:
    return f"{getpass.getuser()} (command line)"


def site_recipe(settings: ScanSettings, card: ModelCard) -> Recipe:
    """What every profile of this site is fitted for: the model's head and aggregation, the sensitivity target."""
    aggregation = card.study.aggregation if card.study is not None else "max"
    return Recipe(Head(card.head.weights.astype(float), card.head.bias), card.sha256, aggregation,
                  settings.site_sensitivity)


def _commission(args: argparse.Namespace, settings: ScanSettings, db: Database, card: ModelCard) -> int:
    try:
        rows = read_rows(args.csv)
        analyzer = analyzer_from_settings(settings)
        cases, left_out = read_cases(rows, analyzer, _show_progress)
    except CasesError as error:
        print(f"hemowatch site commission: {len(error.problems)} problem{'s' * (len(error.problems) > 1)} "
              f"in {args.csv}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if left_out:
        print(f"{len(left_out)} row{'s' * (len(left_out) > 1)} left out, as nothing in them can be assessed:",
              file=sys.stderr)
        for note in left_out:
            print(f"  {note}", file=sys.stderr)
    print(f"{len(cases)} cases ({sum(case.label for case in cases)} with haemorrhage) from "
          f"{len({case.group for case in cases})} patients; cross-validating by patient …", file=sys.stderr)
    try:
        outcome = commission(db, cases, site_recipe(settings, card), card.operating_point,
                             model_version=card.version, by=_who(), now=time.time())
    except TooFewCases as error:
        print(f"hemowatch site commission: {error}", file=sys.stderr)
        return 2
    return _report_outcome(outcome)


def _show_progress(position: int, total: int, row: object) -> None:
    end = "\n" if position == total or not sys.stderr.isatty() else "\r"
    if sys.stderr.isatty() or position == total or position % 25 == 1:
        print(f"reading cases: {position}/{total}", end=end, file=sys.stderr, flush=True)


def _report_outcome(outcome: Outcome) -> int:
    judgement = outcome.judgement
    print_figures(judgement.figures)
    if outcome.profile_id is None:
        print(f"Not adopted: {judgement.reason}. The profile in use stays.")
        return REFUSED
    print(f"Adopted site profile {outcome.profile_id}: {judgement.reason}.")
    return 0


def print_figures(figures: dict[str, Figures]) -> None:
    """The figures side by side, one column per model, all cross-validated on the same cases."""
    columns = ["", *(_NAMES[name] for name in figures)]

    def row(label: str, cell) -> dict[str, str]:
        return {"": label} | {_NAMES[name]: cell(value) for name, value in figures.items()}

    print_table(columns, [
        row("AUC (95% interval)", lambda f: f"{f.auc:.3f} ({f.auc_low:.3f}-{f.auc_high:.3f})"),
        row("sensitivity", lambda f: f"{f.sensitivity:.2f}"),
        row("specificity", lambda f: f"{f.specificity:.2f}"),
        row("alerts per 100 cases", lambda f: f"{f.alerts_per_100:.0f}"),
    ], sys.stdout)
    first = next(iter(figures.values()))
    print(f"Out of fold on {first.cases} cases ({first.positives} with haemorrhage), folds grouped by patient.")


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _report(db: Database, card: ModelCard, plot: Path | None) -> int:
    stored = site_profiles.active_profile(db)
    if stored is None:
        print(f"No site profile: verdicts come from the shipped model {card.name} {card.version}, which has not "
              "been validated at this site. Run `hemowatch site commission CASES.csv`.")
        return 0
    print(f"Site profile {stored.id}, adopted {_when(stored.created_at)} by {stored.created_by}, fitted on "
          f"{stored.n_cases} cases from {stored.n_patients} patients for model {stored.model_version}; "
          f"thresholds chosen for sensitivity {stored.sensitivity_target:.2f}.")
    if stored.model_sha256 != card.sha256:
        print("It was fitted for another model file and is not in use: commission the model again.")
    figures = {name: Figures.from_dict(value) for name, value in stored.figures.items() if name in _NAMES}
    print("At adoption:")
    print_figures(figures)
    print(live_agreement(db, stored).describe())
    if plot is not None:
        out_of_fold = stored.figures["out_of_fold"]
        png = report_png(np.array(out_of_fold["probability"]), np.array(out_of_fold["label"]),
                         f"Site profile {stored.id}: {stored.n_cases} cases, out of fold")
        try:
            plot.write_bytes(png)
        except OSError as error:
            print(f"hemowatch site report: cannot write {plot} ({error.strerror})", file=sys.stderr)
            return 1
        print(f"ROC and calibration written to {plot}")
    return 0


def _history(db: Database) -> int:
    changes = site_profiles.changes(db)
    if not changes:
        print("No site profile has been adopted.")
        return 0
    rows = []
    for change in changes:
        profile = site_profiles.get_profile(db, change.profile_id) if change.profile_id is not None else None
        auc = "" if profile is None else f"{profile.figures['candidate']['auc']:.3f}"
        rows.append({"when": _when(change.at), "what": change.action, "by": change.by,
                     "profile": "shipped model" if profile is None else str(profile.id),
                     "cases": "" if profile is None else str(profile.n_cases), "AUC": auc})
    print_table(["when", "what", "by", "profile", "cases", "AUC"], rows, sys.stdout)
    return 0


def _rollback(db: Database) -> int:
    restored = site_profiles.roll_back(db, _who(), time.time())
    if restored is False:
        print("Nothing to roll back to: no site profile has been adopted.")
        return 1
    print("Rolled back: verdicts now come from " +
          ("the shipped model." if restored is None else f"site profile {restored.id} ({restored.n_cases} cases)."))
    return 0


def _off(db: Database) -> int:
    if not site_profiles.switch_off(db, _who(), time.time()):
        print("No site profile is in use.")
        return 0
    print("Site profile switched off: verdicts now come from the shipped model (`hemowatch site rollback` "
          "brings the profile back).")
    return 0
