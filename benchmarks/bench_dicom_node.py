"""How fast the DICOM node takes a series in, and how soon after its last slice the doctor on call is alerted.

1. Ingest: the GE series (28 slices) pushed again and again over one association with pynetdicom's SCU to the
   node alone, every instance written and flushed to the spool before its "success"; instances per second.
2. Alert latency: the whole service (`hemowatch.wiring.running`, the local Bot API server of the tests, a
   mosquitto broker this script starts, the shipped model) with DICOM_SERIES_IDLE_S=2; four scanners push a
   copy of the GE series each (new UIDs, own accession number) at once, round after round, and the time runs
   from the "success" of each study's last instance to the Bot API server receiving its alert's sendPhoto.
   The threshold is lowered to 0.3 so the GE series is flagged.

    .venv/bin/python -m benchmarks.bench_dicom_node [--series ../shared/data/dicom/ge-head-ct] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from core.roles import Role
from core.settings import Settings
from dicomnode.node import DicomNode
from hemowatch.builders import analyzer_from_settings
from hemowatch.wiring import running
from localbotapi import BotApiServer
from store import open_database, people, studies
from testsupport.broker import free_port
from testsupport.machine import machine
from testsupport.surroundings import surroundings

ROOT = Path(__file__).resolve().parents[1]
DOCTOR = 300
SCANNERS = 4  # studies pushed at once
IDLE_S = 2.0
THRESHOLD = 0.3


def copy_series(source: Path, target: Path, accession: str) -> list[Path]:
    """The series as another study: new study, series and instance UIDs, its own accession number."""
    target.mkdir(parents=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for path in sorted(source.glob("*.dcm")):
        dataset = dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.AccessionNumber = accession
        paths.append(target / path.name)
        dataset.save_as(paths[-1])
    return paths


def push(port: int, paths: list[Path], calling: str) -> float:
    """Send the files over one association; returns `perf_counter()` at the last instance's "success"."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEMOWATCH")
    assert assoc.is_established, "the node refused the association"
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            assert status and status.Status == 0, f"C-STORE failed: {status}"
        return time.perf_counter()
    finally:
        assoc.release()


async def ingest_rate(series: list[Path], rounds: int, workdir: Path) -> tuple[float, float]:
    """Instances and megabytes per second into the spool (the series stays idle: nothing is analysed)."""
    settings = Settings(_env_file=None, hemowatch_db=workdir / "ingest.db", dicom_port=free_port(),
                        dicom_series_idle_s=3600)
    async with DicomNode(settings, analyzer_from_settings(settings)) as node:
        await asyncio.to_thread(push, node.port, series[:2], "WARMUP")
        started = time.perf_counter()
        for _ in range(rounds):
            await asyncio.to_thread(push, node.port, series, "CTSCANNER")
        elapsed = time.perf_counter() - started
    size = sum(path.stat().st_size for path in series) * rounds
    return len(series) * rounds / elapsed, size / 2**20 / elapsed


async def alert_latencies(source: Path, rounds: int, scanners: int, workdir: Path) -> list[float]:
    async with surroundings(workdir, dicom_port=free_port(), dicom_series_idle_s=IDLE_S,
                            dicom_threshold=THRESHOLD) as around:
        api, settings = around.api, around.settings
        db = open_database(settings.hemowatch_db)
        invitation = people.create_invitation(db, Role.DOCTOR, None, people.SERVER, time.time(), 3600)
        people.redeem_invitation(db, invitation.code, DOCTOR, "Dr On Call", DOCTOR, time.time())
        studies.set_on_call(db, DOCTOR, True, time.time())
        db.close()
        copies = {
            f"BENCH-{number}-{scanner}": copy_series(source, workdir / f"{number}-{scanner}",
                                                     f"BENCH-{number}-{scanner}")
            for number in range(rounds) for scanner in range(scanners)
        }
        latencies = []
        async with running(settings) as service:
            await api.wait_for_message(DOCTOR, after=api.send_text(DOCTOR, "/help"), timeout=60)
            for number in range(rounds):
                accessions = [f"BENCH-{number}-{scanner}" for scanner in range(scanners)]
                finished = await asyncio.gather(*(
                    asyncio.to_thread(push, service.dicom.port, copies[accession], f"CT{index}")
                    for index, accession in enumerate(accessions)
                ))
                for accession, last_success in zip(accessions, finished):
                    sent = await _alert_sent(api, accession)
                    latencies.append(sent - last_success)
        return latencies


async def _alert_sent(api: BotApiServer, accession: str, timeout: float = 120) -> float:
    await api.wait_for_message(DOCTOR, lambda m: accession in (m.get("caption") or ""), timeout)
    return next(call.at for call in api.calls_to("sendPhoto")
                if call.status == 200 and accession in str(call.params.get("caption", "")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, default=ROOT.parent / "shared" / "data" / "dicom" / "ge-head-ct",
                        help="folder with the series' DICOM files")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of ingest, and of studies at once")
    parser.add_argument("--scanners", type=int, default=SCANNERS, help="studies pushed at once (default 4)")
    args = parser.parse_args()
    print(machine())
    series = sorted(args.series.glob("*.dcm"))
    with tempfile.TemporaryDirectory() as workdir:
        per_s, mb_s = asyncio.run(ingest_rate(series, args.rounds, Path(workdir)))
        print(f"C-STORE ingest, GE series ({len(series)} instances) x {args.rounds} over one association: "
              f"{per_s:.0f} instances/s ({mb_s:.1f} MB/s)")
        latencies = asyncio.run(alert_latencies(args.series, args.rounds, args.scanners, Path(workdir)))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"last instance -> alert sendPhoto, DICOM_SERIES_IDLE_S={IDLE_S:g}, {args.scanners} studies at once, "
          f"{len(latencies)} studies: p50 {statistics.median(latencies):.2f} s, p95 {cuts[94]:.2f} s, "
          f"max {max(latencies):.2f} s")


if __name__ == "__main__":
    main()
