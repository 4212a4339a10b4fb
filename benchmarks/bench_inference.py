"""Inference speed: per-slice model latency at batch 1 and 32, a whole DICOM series end to end, and a thin-slice
series (238 slices, 0.625 mm, JPEG Lossless) end to end against single-threaded pydicom decoding of its files.

    .venv/bin/python -m benchmarks.bench_inference [--series ../shared/data/dicom/ge-head-ct] [--threads 2]

Targets on a 2-core machine: at most 4.5 ms per slice (median, batch 1); 0.4 s for the 28-slice GE series,
ZIP bytes in, verdict and heat-map PNG out; the thin-slice series through `Analyzer.analyze_path` in at most
1.5 times what pydicom takes to decode its files on one thread through libjpeg-turbo (the fastest decoder
measured), under 600 MB peak memory. The three thin-series measurements run in turn, each in a fresh process, and the ratio is
taken run by run, so a machine whose speed drifts still compares like with like.

The thin-slice series repeats the GE series' slices (in Hounsfield units, without tilt) at new positions and
is written to a temporary folder, JPEG Lossless (Process 14, selection value 1) by a small encoder here, since
pydicom encodes RLE, JPEG-LS and JPEG 2000 but not JPEG Lossless. Each measurement runs in a fresh Python
process, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import CTImageStorage, JPEGLosslessSV1, generate_uid

from core.settings import DEFAULT_MODEL, PROJECT_ROOT
from inference.analyzer import BATCH_SIZE, Analyzer
from inference.archive import read_zip
from inference.dicom import read_series, scan_series
from inference.gate import assess_slice
from inference.limits import Limits
from inference.lossless_jpeg import PLUGIN
from inference.model import HaemorrhageModel, open_session
from inference.overlay import OverlayCaption, render_overlay
from inference.preprocess import prepare_batch, prepare_slice

DEFAULT_SERIES = PROJECT_ROOT.parent / "shared" / "data" / "dicom" / "ge-head-ct"
THIN_SLICES = 238
THIN_SPACING_MM = 0.625
TARGET_SLICE_MS = 4.5
TARGET_GE_S = 0.4
TARGET_PEAK_MB = 600
TARGET_THIN_RATIO = 1.5  # the thin series end to end, against libjpeg-turbo decoding its files on one thread


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


def jpeg_lossless(pixels: np.ndarray) -> bytes:
    """One unsigned 16-bit frame as JPEG Lossless, Process 14, selection value 1 (predictor: the pixel to the
    left; the pixel above at the start of a row), with a Huffman table fitted to the frame."""
    rows, cols = pixels.shape
    values = pixels.astype(np.int64)
    predicted = np.empty_like(values)
    predicted[:, 1:] = values[:, :-1]
    predicted[1:, 0] = values[:-1, 0]
    predicted[0, 0] = 1 << 15
    diff = (values - predicted) & 0xFFFF
    diff = np.where(diff >= 1 << 15, diff - (1 << 16), diff).ravel()
    category = np.zeros(diff.shape, dtype=np.int64)
    nonzero = diff != 0
    category[nonzero] = np.floor(np.log2(np.abs(diff[nonzero]))).astype(np.int64) + 1
    category[diff == -(1 << 15)] = 16  # the one difference of category 16, sent without extra bits
    extra_length = np.where(category == 16, 0, category)
    extra = np.where(diff >= 0, diff, diff - 1) & ((1 << extra_length) - 1)
    # Huffman code lengths for categories 0-16 plus a reserved symbol, the rarest, which takes the all-ones code
    # JPEG forbids; every symbol gets a floor frequency, which keeps the longest code within JPEG's 16 bits.
    floor = max(len(diff), 1) * 2e-3
    frequency = np.append(np.bincount(category, minlength=17) + floor, floor / 2)
    lengths = np.zeros(18, dtype=np.int64)
    heap = [(float(f), symbol, [symbol]) for symbol, f in enumerate(frequency)]
    heapq.heapify(heap)
    while len(heap) > 1:
        f1, _, first = heapq.heappop(heap)
        f2, tie, second = heapq.heappop(heap)
        lengths[first + second] += 1
        heapq.heappush(heap, (f1 + f2, tie + 100, first + second))
    order = sorted(range(18), key=lambda symbol: (lengths[symbol], symbol == 17, symbol))
    assert order[-1] == 17 and lengths.max() <= 16
    codes = np.zeros(18, dtype=np.int64)
    code, previous = 0, lengths[order[0]]
    for symbol in order:
        code <<= int(lengths[symbol] - previous)
        previous = lengths[symbol]
        codes[symbol] = code
        code += 1
    bit_count = lengths[category] + extra_length
    words = (codes[category] << extra_length) | extra
    bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    bits = bits[np.arange(64)[None, :] >= (64 - bit_count)[:, None]]
    scan = np.packbits(np.concatenate([bits, np.ones((-len(bits)) % 8, dtype=np.uint8)]))
    scan = np.insert(scan, np.flatnonzero(scan == 0xFF) + 1, 0).tobytes()  # byte stuffing
    symbols = [symbol for symbol in order if symbol != 17]
    table = bytes([0]) + bytes(int((lengths[symbols] == n).sum()) for n in range(1, 17)) + bytes(symbols)
    frame = bytes([16]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    return (
        b"\xff\xd8" + segment(0xC3, frame) + segment(0xC4, table) + segment(0xDA, bytes([1, 1, 0, 1, 0, 0]))
        + scan + b"\xff\xd9"
    )  # fmt: skip


def write_thin_series(source: Path, folder: Path, slices: int = THIN_SLICES, spacing_mm: float = THIN_SPACING_MM) -> None:
    """`slices` axial CT files, JPEG Lossless, `spacing_mm` apart: the source series' slices in order, each
    repeated, stored as unsigned values with intercept -1024 (as most scanners do)."""
    (series,) = read_series([path.read_bytes() for path in sorted(source.glob("*.dcm"))], Limits(), strict=False)
    stored = [np.clip(item.hu.astype(np.int32) + 1024, 0, 4095).astype(np.uint16) for item in series.slices]
    encoded = [jpeg_lossless(pixels) for pixels in stored]
    series_uid = generate_uid()
    for number in range(slices):
        index = number * len(stored) // slices
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality = "CT"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, 3, number + 1
        ds.ImagePositionPatient = [-125.0, -125.0, number * spacing_mm]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [series.slices[index].spacing_mm or 0.5] * 2
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        ds.Rows, ds.Columns = stored[index].shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = encapsulate([encoded[index]])
        ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"{number + 1:04d}.dcm", enforce_file_format=True)


def peak_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM, which, unlike `ru_maxrss`, does not carry the
    parent's peak over through fork and exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_with_pydicom(folder: str, plugin: str = "") -> dict[str, float]:
    """Every file read and decoded by pydicom on one thread, by its default choice of decoding plugin (the
    yardstick) or by `plugin`."""
    start = time.perf_counter()
    for path in sorted(Path(folder).glob("*.dcm")):
        pixel_array(path, decoding_plugin=plugin)
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_mb()}


def analyze_folder(folder: str, model: str, threads: int) -> dict[str, float]:
    """The folder through `Analyzer.analyze_path`, timed from the call to the verdict and heat-map."""
    analyzer = Analyzer(Path(model), threads=threads)
    loaded_mb = peak_mb()
    start = time.perf_counter()
    (result,) = analyzer.analyze_path(Path(folder))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds, "peak_mb": peak_mb(), "loaded_mb": loaded_mb, "slices": result.n_slices,
        "assessable": result.n_assessable, "probability": result.probability or 0.0,
    }  # fmt: skip


def in_fresh_process(function: str, *args: object) -> dict[str, float]:
    """`function(*args)` of this module, run in a new interpreter; what it returns, as JSON."""
    module = __spec__.name if __spec__ and __spec__.name != "__main__" else "benchmarks.bench_inference"
    call = f"import json, sys; import {module} as bench; print(json.dumps(bench.{function}(*json.loads(sys.argv[1]))))"
    output = subprocess.run(
        [sys.executable, "-c", call, json.dumps(args)], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def series_stages_report(archive: bytes, model: HaemorrhageModel, threads: int, repeat: int) -> None:
    """Prints each stage of the series analysis timed on its own (in the analysis they overlap): reading the ZIP
    with every header parsed and checked, gating and preparing every slice on one thread, the model on the
    assessable slices in batches of the analysis's size, and the heat-map of the top slice."""
    (series,) = read_series(read_zip(archive, Limits()), Limits(), strict=False, threads=threads)
    greys = [item.grey(model.card.window) for item in series.slices]
    assessable = [grey for item, grey in zip(series.slices, greys) if assess_slice(item).assessable]
    batch, prepared = prepare_batch(assessable)
    prediction = model.predict(batch)
    top = int(np.argmax(prediction.probability))
    caption = OverlayCaption(True, float(prediction.probability[top]), 0.5, top + 1, len(series.slices))
    stages = {
        "read and parse": lambda: scan_series(read_zip(archive, Limits()), Limits(), strict=False, threads=threads),
        "gate and prepare, one thread": lambda: [
            prepare_slice(grey) for item, grey in zip(series.slices, greys) if assess_slice(item).assessable
        ],
        f"model, {len(assessable)} slices": lambda: [
            model.predict(batch[start : start + BATCH_SIZE]) for start in range(0, len(batch), BATCH_SIZE)
        ],
        "heat-map": lambda: render_overlay(assessable[top], prediction.cam[top], prepared[top].box, caption),
    }
    print("  stages on their own: " + ", ".join(
        f"{name} {statistics.median(timings(run, repeat)[0]) * 1000:.0f} ms" for name, run in stages.items()
    ))  # fmt: skip


def thin_series_report(source: Path, model: Path, threads: int, repeat: int) -> None:
    """Prints the thin-slice series end to end beside pydicom's single-threaded decoding, with the targets."""
    decoding, turbo, analysing = [], [], []
    with tempfile.TemporaryDirectory(prefix="hemowatch-thin-series-") as folder:
        write_thin_series(source, Path(folder))
        size = sum(path.stat().st_size for path in Path(folder).glob("*.dcm"))
        for _ in range(repeat):
            decoding.append(in_fresh_process("decode_with_pydicom", folder))
            turbo.append(in_fresh_process("decode_with_pydicom", folder, PLUGIN))
            analysing.append(in_fresh_process("analyze_folder", folder, str(model), threads))
    decode_s = statistics.median(run["seconds"] for run in decoding)
    turbo_s = statistics.median(run["seconds"] for run in turbo)
    end_to_end_s = statistics.median(run["seconds"] for run in analysing)
    ratio = statistics.median(run["seconds"] / fast["seconds"] for run, fast in zip(analysing, turbo))
    peak = max(run["peak_mb"] for run in analysing)
    loaded = max(run["loaded_mb"] for run in analysing)
    last = analysing[-1]
    print(
        f"thin-slice series ({THIN_SLICES} slices, {THIN_SPACING_MM} mm, JPEG Lossless, {size / 2**20:.0f} MB; "
        f"{last['slices']:.0f} slabs, {last['assessable']:.0f} assessable), median of {repeat} fresh processes:"
    )
    print(
        f"  pydicom decoding, one thread, its default plugins: {decode_s:6.2f} s   (runs: "
        + ", ".join(f"{run['seconds']:.2f}" for run in decoding) + ")"
    )  # fmt: skip
    print(
        f"  pydicom decoding through the {PLUGIN} plugin (libjpeg-turbo), one thread: {turbo_s:6.2f} s   (runs: "
        + ", ".join(f"{run['seconds']:.2f}" for run in turbo) + ")"
    )  # fmt: skip
    print(
        f"  end to end, analyze_path:     {end_to_end_s:6.2f} s   (runs: "
        + ", ".join(f"{run['seconds']:.2f}" for run in analysing)
        + f")   {ratio:.2f} times libjpeg-turbo's decoding (median of the runs' ratios), target <= "
        f"{TARGET_THIN_RATIO}: {'met' if ratio <= TARGET_THIN_RATIO else 'NOT met'}"
    )  # fmt: skip
    print(
        f"  peak memory of the analysing process: {peak:.0f} MB ({loaded:.0f} MB with the model loaded, before "
        f"the series); pydicom decoding alone {max(run['peak_mb'] for run in decoding):.0f} MB; "
        f"target < {TARGET_PEAK_MB} MB: {'met' if peak < TARGET_PEAK_MB else 'NOT met'}"
    )


def other_variants_report(model_path: Path, threads: int, image: np.ndarray) -> None:
    """Batch-1 latency of the card's other variants (the graph that did not ship), for comparison."""
    card = json.loads(model_path.with_suffix(".json").read_text())
    for name, variant in card.get("variants", {}).items():
        path = model_path.parent / variant["file"]
        if variant["file"] == model_path.name or not path.is_file():
            continue
        session = open_session(path, threads)
        measured = timings(lambda: session.run(None, {"image": image}), repeat=100)
        print(f"  {name} variant {path.name} (not shipped), batch 1: {summary(measured)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--series", type=Path, default=DEFAULT_SERIES, help="folder of one DICOM series")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of the whole series")
    parser.add_argument("--thin-repeat", type=int, default=3, help="fresh processes per thin-series measurement")
    args = parser.parse_args()

    print(f"machine: {machine(args.threads)}")
    archive = series_zip(args.series)
    (series,) = read_series([path.read_bytes() for path in sorted(args.series.glob("*.dcm"))], Limits(), strict=False)
    model = HaemorrhageModel(args.model, args.threads)
    batch, _ = prepare_batch([item.grey(model.card.window) for item in series.slices])
    batch32 = np.concatenate([batch, batch])[:32]
    print(f"model {args.model.name}, input {batch.shape[1:]}")
    single = timings(lambda: model.predict(batch[14:15]), repeat=100)
    print(
        f"per slice, batch 1:   {summary(single)}   target <= {TARGET_SLICE_MS} ms: "
        f"{'met' if statistics.median(single[0]) * 1000 <= TARGET_SLICE_MS else 'NOT met'}"
    )
    print(f"per slice, batch 32:  {summary(timings(lambda: model.predict(batch32), repeat=15), per=32)}")
    other_variants_report(args.model, args.threads, batch[14:15])

    analyzer = Analyzer(args.model, threads=args.threads)
    results = []
    measured = timings(lambda: results.append(analyzer.analyze_bytes(archive, "series.zip")), repeat=args.repeat)
    result = results[-1][0]
    print(
        f"series end to end ({len(archive) / 2**20:.1f} MB ZIP, {result.n_slices} slices, "
        f"{result.n_assessable} assessable): {summary(measured)}   target <= {TARGET_GE_S} s: "
        f"{'met' if statistics.median(measured[0]) <= TARGET_GE_S else 'NOT met'}"
    )
    print(
        f"  verdict {result.verdict}, probability {result.probability:.3f}, top slice {result.top_slice[0]}, "
        f"overlay PNG {len(result.overlay_png) / 1024:.0f} kB"
    )
    series_stages_report(archive, model, args.threads, args.repeat)
    thin_series_report(args.series, args.model, args.threads, args.thin_repeat)


if __name__ == "__main__":
    main()
