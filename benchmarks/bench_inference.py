"""Inference speed: per-slice model latency at batch 1 and 32, and a whole DICOM series end to end.

    .venv/bin/python -m benchmarks.bench_inference [--series ../shared/data/dicom/ge-head-ct] [--threads 2]

Targets on a 2-core machine: at most 10 ms per slice (median) and 1.0 s for the 28-slice GE series,
ZIP bytes in, verdict and heat-map PNG out.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime

from core.settings import DEFAULT_MODEL, PROJECT_ROOT
from inference.analyzer import Analyzer
from inference.dicom import read_series
from inference.limits import Limits
from inference.model import HaemorrhageModel
from inference.preprocess import prepare_batch
from inference.scan import Window

DEFAULT_SERIES = PROJECT_ROOT.parent / "shared" / "data" / "dicom" / "ge-head-ct"


def timings(run: Callable[[], object], repeat: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of `repeat` calls, after `warmup` untimed ones.

    CPU time (all threads together) shows the work done even when other processes share the cores.
    """
    for _ in range(warmup):
        run()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def summary(measured: tuple[list[float], list[float]], per: int = 1) -> str:
    wall, cpu = (np.asarray(values) * 1000 / per for values in measured)
    return (
        f"median {statistics.median(wall):7.1f} ms   p95 {np.percentile(wall, 95):7.1f} ms   "
        f"(CPU median {statistics.median(cpu):.1f} ms, n={len(wall)})"
    )


def machine(threads: int) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} logical cores, load average {load}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, {threads} inference threads"
    )


def series_zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.dcm")):
            archive.write(path, path.name)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--series", type=Path, default=DEFAULT_SERIES, help="folder of one DICOM series")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of the whole series")
    args = parser.parse_args()

    print(f"machine: {machine(args.threads)}")
    archive = series_zip(args.series)
    (series,) = read_series([path.read_bytes() for path in sorted(args.series.glob("*.dcm"))], Limits(), strict=False)
    batch, _ = prepare_batch([item.grey(Window()) for item in series.slices])
    model = HaemorrhageModel(args.model, args.threads)
    batch32 = np.concatenate([batch, batch])[:32]
    print(f"model {args.model.name}, input {batch.shape[1:]}")
    print(f"per slice, batch 1:   {summary(timings(lambda: model.predict(batch[14:15]), repeat=100))}")
    print(f"per slice, batch 32:  {summary(timings(lambda: model.predict(batch32), repeat=15), per=32)}")

    analyzer = Analyzer(args.model, threads=args.threads)
    results = []
    measured = timings(lambda: results.append(analyzer.analyze_bytes(archive, "series.zip")), repeat=args.repeat)
    result = results[-1][0]
    print(
        f"series end to end ({len(archive) / 2**20:.1f} MB ZIP, {result.n_slices} slices, "
        f"{result.n_assessable} assessable): {summary(measured)}"
    )
    print(
        f"  verdict {result.verdict}, probability {result.probability:.3f}, top slice {result.top_slice[0]}, "
        f"overlay PNG {len(result.overlay_png) / 1024:.0f} kB"
    )


if __name__ == "__main__":
    main()
