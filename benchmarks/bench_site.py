"""Site commissioning speed: `hemowatch site commission` on 20 patients end to end, and what the site head adds
to each slice.

    .venv/bin/python -m benchmarks.bench_site [--ct-ich ../shared/data/ct-ich] [--patients 20] [--runs 3]

Commissioning runs the real command in a fresh process on a CSV written to a temporary folder, against a fresh
database there: once with each patient's scan as a DICOM series (one row per patient, the series written from
the CT-ICH slices' Hounsfield units) and once with every slice as its exported picture (one row per slice). The
time is split where the command reports its progress: starting (imports, settings, the model's session),
reading the cases (decoding, gating and the model's features for every slice), and cross-validating, fitting,
judging and storing the profile. These patients were in the shipped model's training, so whether the profile is
adopted says nothing here; only the time counts.

The site head's cost is `SiteProfile.slice_probabilities` on the features of 1 and of 8 slices (a model batch),
median over many runs, against the target: under 0.1 ms per slice.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.settings import DEFAULT_MODEL, PROJECT_ROOT
from inference.model import ModelCard
from inference.site_profile import SiteProfile
from training.ct_ich import PIXEL_SPACING_MM, SLICE_THICKNESS_MM, brain_picture_path, by_patient, read_hu, read_slices
from training.series_writer import write_series

try:
    from benchmarks.bench_inference import machine, timings
except ModuleNotFoundError:  # run as `python benchmarks/bench_site.py`: this folder is first on the path
    from bench_inference import machine, timings

DEFAULT_CT_ICH = PROJECT_ROOT.parent / "shared" / "data" / "ct-ich"
TARGET_HEAD_MS = 0.1
STARTED = "reading cases: 1/"  # the command's line as it starts reading the first case
READ = "cross-validating by patient"  # its line once every case is read


def write_cases(ct_ich: Path, patients: int, folder: Path, way: str) -> tuple[Path, int]:
    """A commissioning CSV for the first `patients` patients, 9 in 20 of them bleeding (the collection's share):
    one row per series (`way` "series") or per picture ("pictures"). Returns the CSV and its row count."""
    ct_ich = ct_ich.resolve()  # the CSV's paths are read relative to its own folder
    scans = by_patient(read_slices(ct_ich))
    bleeding = [name for name, slices in scans.items() if any(item.haemorrhage for item in slices)]
    normal = [name for name in scans if name not in bleeding]
    count = round(patients * 9 / 20)
    chosen = sorted(bleeding[:count] + normal[: patients - count])
    rows = []
    for name in chosen:
        slices = scans[name]
        if way == "series":
            series = folder / name
            write_series([read_hu(ct_ich, item) for item in slices], series, spacing_mm=PIXEL_SPACING_MM,
                         thickness_mm=SLICE_THICKNESS_MM)
            rows.append((series, max(item.haemorrhage for item in slices), name))
        else:
            rows.extend((brain_picture_path(ct_ich, item), item.haemorrhage, name) for item in slices)
    path = folder / "cases.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "hemorrhage", "patient"])
        writer.writerows(rows)
    return path, len(rows)


def commission(cases: Path, model: Path, threads: int) -> dict[str, float | int | str]:
    """`hemowatch site commission` in a fresh process with a fresh database: seconds to start (imports, settings,
    the model's session), to read the cases, and to fit, judge and store; and the exit code."""
    environment = os.environ | {
        "HEMOWATCH_DB": str(cases.parent / f"site-{time.monotonic_ns()}.db"), "HEMOWATCH_MODEL": str(model),
        "INFERENCE_THREADS": str(threads), "PYTHONPATH": str(PROJECT_ROOT), "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-c", "import sys; from hemowatch.cli import main; sys.exit(main())",
               "site", "commission", str(cases)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                               cwd=cases.parent)
    reading_at, read_at, lines = None, None, []
    for line in process.stderr:
        lines.append(line)
        if STARTED in line and reading_at is None:
            reading_at = time.perf_counter()
        if READ in line and read_at is None:
            read_at = time.perf_counter()
    output = process.stdout.read()
    code = process.wait()
    ended = time.perf_counter()
    if reading_at is None or read_at is None:
        raise RuntimeError(f"the command stopped before fitting (exit {code}):\n{''.join(lines)}{output}")
    verdict = next((line for line in output.splitlines() if line.startswith(("Adopted", "Not adopted"))), "")
    return {"start_s": reading_at - started, "read_s": read_at - reading_at, "fit_s": ended - read_at,
            "total_s": ended - started, "exit": code, "verdict": verdict}


def commission_report(ct_ich: Path, patients: int, model: Path, threads: int, runs: int) -> None:
    for way in ("series", "pictures"):
        with tempfile.TemporaryDirectory(prefix="hemowatch-site-bench-") as folder:
            cases, rows = write_cases(ct_ich, patients, Path(folder), way)
            measured = [commission(cases, model, threads) for _ in range(runs)]
        start, read, fitted, total = ([run[key] for run in measured]
                                      for key in ("start_s", "read_s", "fit_s", "total_s"))
        print(
            f"commission {patients} patients as {way} ({rows} rows), median of {runs} fresh processes: "
            f"{statistics.median(total):.1f} s end to end = start {statistics.median(start):.1f} s + reading cases "
            f"{statistics.median(read):.1f} s + fitting, judging and storing {statistics.median(fitted):.1f} s   (runs: "
            + ", ".join(f"{value:.1f}" for value in total) + f"; exit {measured[-1]['exit']}: {measured[-1]['verdict']})"
        )


def head_report(model: Path) -> None:
    """The site head's cost per slice at batch 1 and 8, on a profile shaped like every profile (1280 weights)."""
    card = ModelCard.beside(model)
    assert card.head is not None, "the model card describes no features output"
    profile = SiteProfile(card.sha256, card.head.weights.astype(np.float64), card.head.bias, 1.0, 0.0, 0.5, None)
    features = np.random.default_rng(2026).random((8, len(card.head.weights)), dtype=np.float32)
    for batch in (1, 8):
        wall, _ = timings(lambda: profile.slice_probabilities(features[:batch]), repeat=20000, warmup=100)
        per_slice_ms = statistics.median(wall) * 1000 / batch
        print(
            f"site head, batch {batch}: {per_slice_ms * 1000:.1f} µs per slice (median of {len(wall)}, p95 "
            f"{np.percentile(wall, 95) * 1e6 / batch:.1f} µs)   target < {TARGET_HEAD_MS} ms: "
            f"{'met' if per_slice_ms < TARGET_HEAD_MS else 'NOT met'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--ct-ich", type=Path, default=DEFAULT_CT_ICH, help="the CT-ICH folder")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per way of commissioning")
    args = parser.parse_args()
    print(f"machine: {machine(args.threads)}")
    head_report(args.model)
    commission_report(args.ct_ich, args.patients, args.model, args.threads, args.runs)


if __name__ == "__main__":
    main()
