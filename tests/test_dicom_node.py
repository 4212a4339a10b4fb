"""The DICOM node against real senders (pynetdicom's SCU and Debian's dcmtk `storescu`/`echoscu`) on a free port,
with the real spool, SQLite file and model: what is accepted, what is refused, and that a series is analysed
exactly once, also across a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stores import store_settings
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, generate_uid
from pynetdicom import AE, Association
from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage, MRImageStorage, Verification

from core.settings import DEFAULT_MODEL, Settings
from dicomnode.echo import NodeAddress, echo, parse_address
from dicomnode.guard import ACSE_TIMEOUT_S, MAX_PER_PEER
from dicomnode.node import DicomNode
from dicomnode.scp import CANNOT_UNDERSTAND, MISSING_ATTRIBUTES, OUT_OF_RESOURCES
from dicomnode.deidentify import KEPT
from hemowatch.builders import analyzer_from_settings
from inference.analyzer import Analyzer
from inference.model import ModelCard
from inference.worker import NEEDS_TOO_MUCH_MEMORY, ProcessAnalyzer
from store import alerts, open_database
from store.studies import STUDY_PATIENT_ID, recent_studies
from testsupport.broker import free_port
from testsupport.dicom import SCANNER, push
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(120)
FLAG_THRESHOLD = 0.3  # the GE series is flagged at this threshold


def node_settings(database: Path | str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "dicom_port": free_port(), "dicom_series_idle_s": 0.5, "dicom_threshold": FLAG_THRESHOLD,
        **store_settings(database, tmp_path),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    settings = Settings(_env_file=None)
    return analyzer_from_settings(settings, threshold=FLAG_THRESHOLD)


@pytest.fixture
async def node(database: Path | str, tmp_path: Path, analyzer: Analyzer) -> AsyncIterator[DicomNode]:
    async with DicomNode(node_settings(database, tmp_path), analyzer) as running:
        yield running


def ge_files(ge_series_dir: Path) -> list[Path]:
    return sorted(ge_series_dir.glob("*.dcm"))


async def analysed(node: DicomNode, database: Path | str, count: int = 1) -> list:
    """The studies once `count` are recorded and the node is idle. Called after a push has returned: the node
    heard of each instance (a callback on its loop) before the push got its answers, so none is missed."""
    await eventually(lambda: node.idle and len(recent_studies(open_database(database))) >= count, 60,
                     "the study to be analysed")
    return recent_studies(open_database(database))


async def test_the_ge_series_pushed_with_pynetdicom_is_analysed_once_alerted_and_unspooled(
    node: DicomNode, database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    statuses = await asyncio.to_thread(push, node.port, ge_files(ge_series_dir))
    assert statuses == [0] * 28
    (study,) = await analysed(node, database)
    assert study.verdict == "hemorrhage" and study.ae_title == SCANNER and study.threshold == FLAG_THRESHOLD
    assert study.model_version == ModelCard.beside(DEFAULT_MODEL).version and study.alert_id is not None
    assert study.last_received_at >= study.first_received_at and study.analysed_at >= study.last_received_at
    db = open_database(database)
    (alert,) = alerts.open_alerts(db, STUDY_PATIENT_ID)
    assert alert.values["probability"] == pytest.approx(study.probability)
    assert alert.values["ae_title"] == SCANNER and alert.values["since_last_slice_s"] >= 0.5
    assert not list((tmp_path / "dicom-spool").rglob("*.dcm"))


async def test_the_spool_holds_no_identifying_attribute(database: Path | str, tmp_path: Path, analyzer: Analyzer,
                                                        ge_series_dir: Path) -> None:
    settings = node_settings(database, tmp_path, dicom_series_idle_s=60)
    async with DicomNode(settings, analyzer) as node:
        assert await asyncio.to_thread(push, node.port, ge_files(ge_series_dir)[:2]) == [0, 0]
        spooled = sorted((tmp_path / "dicom-spool").rglob("*.dcm"))
        assert len(spooled) == 2
        dataset = dcmread(spooled[0])
        assert {element.keyword for element in dataset.iterall()} <= KEPT | {"AccessionNumber"}
        assert dataset.SOPInstanceUID not in str(spooled[0])


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed (apt-get install dcmtk)")
async def test_dcmtk_echoscu_and_storescu(node: DicomNode, database: Path | str, ge_series_dir: Path) -> None:
    echoed = await asyncio.to_thread(
        subprocess.run, ["echoscu", "-aet", SCANNER, "-aec", "HEMOWATCH", "127.0.0.1", str(node.port)],
        capture_output=True, text=True,
    )
    assert echoed.returncode == 0, echoed.stderr
    stored = await asyncio.to_thread(
        subprocess.run,
        ["storescu", "-aet", "DCMTKSCU", "-aec", "HEMOWATCH", "127.0.0.1", str(node.port),
         *map(str, ge_files(ge_series_dir))],
        capture_output=True, text=True,
    )
    assert stored.returncode == 0, stored.stderr
    (study,) = await analysed(node, database)
    assert study.ae_title == "DCMTKSCU" and study.verdict == "hemorrhage"


async def test_echo_from_the_cli_helper(node: DicomNode) -> None:
    assert parse_address(f"HEMOWATCH@127.0.0.1:{node.port}") == NodeAddress("HEMOWATCH", "127.0.0.1", node.port)
    assert await asyncio.to_thread(echo, SCANNER, NodeAddress("HEMOWATCH", "127.0.0.1", node.port)) is None
    with pytest.raises(ValueError, match="AE@HOST:PORT"):
        parse_address("127.0.0.1:104")


async def test_an_unknown_calling_ae_title_is_refused(database: Path | str, tmp_path: Path, analyzer: Analyzer) -> None:
    settings = node_settings(database, tmp_path, dicom_allowed_aes="CTSCANNER, PACS")
    async with DicomNode(settings, analyzer) as node:
        assert await asyncio.to_thread(echo, SCANNER, NodeAddress("HEMOWATCH", "127.0.0.1", node.port)) is None
        refused = await asyncio.to_thread(echo, "STRANGER", NodeAddress("HEMOWATCH", "127.0.0.1", node.port))
        assert refused is not None and "rejected" in refused


async def test_an_mr_object_is_refused_at_association(node: DicomNode) -> None:
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(MRImageStorage)
    ae.add_requested_context(CTImageStorage)
    assoc = await asyncio.to_thread(ae.associate, "127.0.0.1", node.port, None, "HEMOWATCH")
    try:
        accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
        assert accepted == {CTImageStorage}
        assert MRImageStorage in {context.abstract_syntax for context in assoc.rejected_contexts}
    finally:
        assoc.release()


async def test_a_corrupt_instance_gets_a_failure_status(node: DicomNode, tmp_path: Path,
                                                        ge_series_dir: Path) -> None:
    source = ge_files(ge_series_dir)[10]
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(source.read_bytes()[:200_000])
    no_pixels = tmp_path / "no-pixels.dcm"
    dataset = dcmread(source)
    del dataset.PixelData
    dataset.save_as(no_pixels)
    statuses = await asyncio.to_thread(push, node.port, [truncated, no_pixels])
    assert statuses[0] in (CANNOT_UNDERSTAND, MISSING_ATTRIBUTES)
    assert statuses[1] == MISSING_ATTRIBUTES
    assert not list((tmp_path / "dicom-spool").rglob("*.dcm"))


async def test_over_the_spool_cap_the_node_answers_out_of_resources(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path
) -> None:
    settings = node_settings(database, tmp_path, dicom_spool_max_gb=1.2 / 1024, dicom_series_idle_s=60)  # 1.2 MB
    async with DicomNode(settings, analyzer) as node:
        statuses = await asyncio.to_thread(push, node.port, ge_files(ge_series_dir)[:4])
    assert statuses[:2] == [0, 0] and statuses[2:] == [OUT_OF_RESOURCES] * 2
    assert len(list((tmp_path / "dicom-spool").rglob("*.dcm"))) == 2  # the accepted ones are kept


async def test_a_series_accepted_before_a_restart_is_analysed_after_it_exactly_once(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path
) -> None:
    spool = tmp_path / "dicom-spool"
    async with DicomNode(node_settings(database, tmp_path, dicom_series_idle_s=60), analyzer) as node:
        assert await asyncio.to_thread(push, node.port, ge_files(ge_series_dir)) == [0] * 28
    # stopped (as by a crash) before the series fell idle: it waits in the spool
    assert len(list(spool.rglob("*.dcm"))) == 28
    kept = tmp_path / "kept"
    shutil.copytree(spool, kept)
    async with DicomNode(node_settings(database, tmp_path), analyzer) as node:
        (study,) = await analysed(node, database)
    assert study.verdict == "hemorrhage" and not list(spool.rglob("*.dcm"))
    # killed after recording, before the spool was cleared: the next start clears it without a second alert
    shutil.rmtree(spool)
    shutil.copytree(kept, spool)
    async with DicomNode(node_settings(database, tmp_path), analyzer) as node:
        await eventually(lambda: node.idle and not list(spool.rglob("*.dcm")), 30, "the spool to be cleared")
    db = open_database(database)
    assert len(recent_studies(db)) == 1
    assert len(db.execute("select id from alerts").fetchall()) == 1
    assert db.execute("select count(*) from dicom_series").fetchone()[0] == 1
    # instances that arrived after the series was recorded, then a crash: judged again, alerted no more
    recorded_at = db.execute("select analysed_at from dicom_series").fetchone()[0]
    shutil.copytree(kept, spool, dirs_exist_ok=True)
    for path in spool.rglob("*.dcm"):
        os.utime(path, (recorded_at + 5, recorded_at + 5))
    async with DicomNode(node_settings(database, tmp_path), analyzer) as node:
        await eventually(lambda: node.idle and not list(spool.rglob("*.dcm")), 30, "the spool to be cleared")
    assert db.execute("select analysed_at from dicom_series").fetchone()[0] > recorded_at
    assert len(db.execute("select id from alerts").fetchall()) == 1


async def test_an_association_aborted_mid_series_keeps_what_was_accepted_and_the_resent_series_alerts_once(
    node: DicomNode, database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    def push_half_and_abort() -> list[int]:
        ae = AE(ae_title=SCANNER)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="HEMOWATCH")
        statuses = [assoc.send_c_store(path).Status for path in ge_files(ge_series_dir)[:14]]
        assoc.abort()
        return statuses

    assert await asyncio.to_thread(push_half_and_abort) == [0] * 14
    (study,) = await analysed(node, database)
    db = open_database(database)
    assert db.execute("select n_instances from dicom_series").fetchone()[0] == 14
    # the scanner sends the whole series again: judged again on all of it, still one alert for the study
    assert await asyncio.to_thread(push, node.port, ge_files(ge_series_dir)) == [0] * 28
    await eventually(lambda: node.idle and db.execute("select n_instances from dicom_series").fetchone()[0] == 28,
                     60, "the whole series to be judged")
    assert len(db.execute("select id from alerts").fetchall()) == 1
    assert len(recent_studies(db)) == 1


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
async def test_a_compressed_series_is_read_as_the_uncompressed_one(
    node: DicomNode, analyzer: Analyzer, database: Path | str, tmp_path: Path, ge_series_dir: Path, syntax: str
) -> None:
    folder = tmp_path / "compressed"
    folder.mkdir()
    for path in ge_files(ge_series_dir):
        dataset = dcmread(path)
        dataset.compress(syntax)
        dataset.save_as(folder / path.name)

    def push_compressed() -> list[int]:
        ae = AE(ae_title=SCANNER)
        ae.add_requested_context(CTImageStorage, [syntax])
        assoc = ae.associate("127.0.0.1", node.port, ae_title="HEMOWATCH")
        assert assoc.is_established and assoc.accepted_contexts
        try:
            return [assoc.send_c_store(path).Status for path in sorted(folder.glob("*.dcm"))]
        finally:
            assoc.release()

    assert await asyncio.to_thread(push_compressed) == [0] * 28
    (study,) = await analysed(node, database)
    (uncompressed,) = await asyncio.to_thread(analyzer.analyze_path, ge_series_dir)
    assert study.verdict == uncompressed.verdict == "hemorrhage"
    assert study.probability == pytest.approx(uncompressed.probability, abs=1e-3)


async def test_enhanced_ct_is_accepted_and_lossy_jpeg_is_not(node: DicomNode) -> None:
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(EnhancedCTImageStorage)
    ae.add_requested_context(CTImageStorage, [JPEGBaseline8Bit])
    assoc = await asyncio.to_thread(ae.associate, "127.0.0.1", node.port, None, "HEMOWATCH")
    try:
        assert {context.abstract_syntax for context in assoc.accepted_contexts} == {EnhancedCTImageStorage}
        assert {context.abstract_syntax for context in assoc.rejected_contexts} == {CTImageStorage}
    finally:
        assoc.release()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_with_tls_the_node_speaks_only_tls(database: Path | str, tmp_path: Path, analyzer: Analyzer) -> None:
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    settings = node_settings(database, tmp_path, dicom_tls_cert=cert, dicom_tls_key=key)
    async with DicomNode(settings, analyzer) as node:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))

        def echo_over(tls: tuple | None) -> bool:
            ae = AE(ae_title=SCANNER)
            ae.add_requested_context(Verification)
            ae.acse_timeout = ae.network_timeout = 5
            assoc = ae.associate("127.0.0.1", node.port, ae_title="HEMOWATCH", tls_args=tls)
            if not assoc.is_established:
                return False
            status = assoc.send_c_echo()
            assoc.release()
            return status.Status == 0

        assert await asyncio.to_thread(echo_over, (client, "localhost"))
        assert not await asyncio.to_thread(echo_over, None)


async def test_a_series_that_is_not_head_ct_is_skipped_with_its_reason_and_the_study_judged_on_its_head_series(
    node: DicomNode, database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    chest = tmp_path / "chest"
    chest.mkdir()
    series_uid = generate_uid()
    for path in ge_files(ge_series_dir):
        dataset = dcmread(path)
        dataset.SeriesInstanceUID, dataset.BodyPartExamined = series_uid, "CHEST"
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.save_as(chest / path.name)
    assert await asyncio.to_thread(push, node.port, sorted(chest.glob("*.dcm"))) == [0] * 28
    (study,) = await analysed(node, database)
    assert study.verdict == "skipped" and study.reason == "Body part is CHEST, not head" and study.alert_id is None
    assert await asyncio.to_thread(push, node.port, ge_files(ge_series_dir)) == [0] * 28
    db = open_database(database)
    await eventually(lambda: node.idle and db.execute("select count(*) from dicom_series").fetchone()[0] == 2, 60,
                     "the head series")
    (study,) = recent_studies(db)
    assert study.verdict == "hemorrhage" and study.reason is None and study.alert_id is not None
    verdicts = sorted(db.execute("select verdict, skipped_reason from dicom_series").fetchall())
    assert verdicts == [("hemorrhage", None), ("skipped", "Body part is CHEST, not head")]


async def test_listening_beyond_loopback_with_no_allow_list_is_warned_about(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, caplog: pytest.LogCaptureFixture
) -> None:
    async with DicomNode(node_settings(database, tmp_path, dicom_host="0.0.0.0"), analyzer):
        pass
    assert "accepts any calling AE title; set DICOM_ALLOWED_AES" in caplog.text
    caplog.clear()
    async with DicomNode(node_settings(database, tmp_path, dicom_host="0.0.0.0", dicom_allowed_aes="CT1"), analyzer):
        pass
    assert "DICOM_ALLOWED_AES" not in caplog.text


def associated_from(port: int, source: str) -> Association:
    """An association for C-ECHO over a connection from `source` (an address of the loopback range)."""
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    return ae.associate("127.0.0.1", port, ae_title="HEMOWATCH", bind_address=(source, 0))


def echo_from(port: int, source: str) -> bool:
    assoc = associated_from(port, source)
    if not assoc.is_established:
        return False
    try:
        return assoc.send_c_echo().Status == 0
    finally:
        assoc.release()


def is_closed_by_peer(connection: socket.socket, within_s: float) -> bool:
    connection.settimeout(within_s)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.skipif(shutil.which("echoscu") is None, reason="dcmtk is not installed (apt-get install dcmtk)")
async def test_idle_connections_and_silent_associations_do_not_lock_a_scanner_out(node: DicomNode) -> None:
    idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(12)]
    # associations accepted, then nothing: from another address of the loopback range
    silent = [await asyncio.to_thread(associated_from, node.port, "127.0.0.3") for _ in range(10)]
    try:
        assert all(assoc.is_established for assoc in silent)
        started = time.monotonic()
        echoed = await asyncio.to_thread(
            subprocess.run, ["echoscu", "-to", "10", "-aet", SCANNER, "-aec", "HEMOWATCH", "127.0.0.1",
                             str(node.port)], capture_output=True, text=True)
        assert echoed.returncode == 0, echoed.stderr
        assert time.monotonic() - started < 10
        # a connection that never asks for an association is let go after the ACSE timeout
        closed = await asyncio.gather(*(asyncio.to_thread(is_closed_by_peer, c, ACSE_TIMEOUT_S + 5) for c in idle))
        assert closed == [True] * 12
    finally:
        for connection in idle:
            connection.close()
        for assoc in silent:
            await asyncio.to_thread(assoc.release)


async def test_one_address_holds_at_most_its_share_of_connections(
    node: DicomNode, caplog: pytest.LogCaptureFixture
) -> None:
    held = [await asyncio.to_thread(associated_from, node.port, "127.0.0.2") for _ in range(MAX_PER_PEER)]
    more = [socket.create_connection(("127.0.0.1", node.port), source_address=("127.0.0.2", 0)) for _ in range(4)]
    try:
        assert all(assoc.is_established for assoc in held)
        refused = await asyncio.gather(*(asyncio.to_thread(is_closed_by_peer, c, 5) for c in more))
        assert refused == [True] * 4
        assert caplog.text.count(f"connections from 127.0.0.2 refused: it holds {MAX_PER_PEER}") == 1
        assert await asyncio.to_thread(echo_from, node.port, "127.0.0.1")  # a scanner elsewhere is not held up
        assert not await asyncio.to_thread(echo_from, node.port, "127.0.0.2")
    finally:
        for connection in more:
            connection.close()
        for assoc in held:
            await asyncio.to_thread(assoc.release)
    await eventually(lambda: echo_from(node.port, "127.0.0.2"), 10, "the address to be let in again")

async def test_a_called_ae_title_not_the_nodes_is_refused_and_logged(
    node: DicomNode, caplog: pytest.LogCaptureFixture
) -> None:
    refused = await asyncio.to_thread(echo, SCANNER, NodeAddress("WRONG", "127.0.0.1", node.port))
    assert refused is not None and refused.startswith("the association was rejected: Called AE title not recognised")
    assert f"association from {SCANNER} at 127.0.0.1 refused: it called AE title 'WRONG'" in caplog.text


async def test_an_instance_over_the_size_cap_aborts_its_association_and_is_not_spooled(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = ge_files(ge_series_dir)[0]
    dataset = dcmread(source)
    dataset.NumberOfFrames = 6  # 3 MB of pixels, over a cap of 2 MB
    dataset.PixelData = dataset.PixelData * 6
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    large = tmp_path / "large.dcm"
    dataset.save_as(large)

    def push_both() -> tuple[int, bool, bool]:
        ae = AE(ae_title=SCANNER)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="HEMOWATCH")
        first = assoc.send_c_store(source).Status
        answered = "Status" in assoc.send_c_store(large)
        assoc.release()
        return first, answered, assoc.is_aborted

    settings = node_settings(database, tmp_path, dicom_max_instance_mb=2, dicom_series_idle_s=60)
    async with DicomNode(settings, analyzer) as node:
        assert await asyncio.to_thread(push_both) == (0, False, True)
    assert "larger than DICOM_MAX_INSTANCE_MB (2 MB); association aborted" in caplog.text
    assert len(list((tmp_path / "dicom-spool").rglob("*.dcm"))) == 1


@pytest.mark.parametrize("address", ["X@nonexistent.invalid:104", "HEMOWATCH@127.0.0.1:{free}"],
                         ids=["unknown-host", "refused"])
async def test_a_failed_echo_from_the_cli_is_one_line(tmp_path: Path, address: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hemowatch.cli", "dicom", "echo", address.format(free=free_port()),
                         "--timeout", "5"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(address.split("{")[0])


async def test_an_instance_too_large_for_an_analysis_is_skipped_with_that_reason(
    database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    """In the service the analysis runs in a worker process with capped memory; a 200 MB instance (400 frames,
    within every limit of the reader) does not fit there, and the series says so."""
    dataset = dcmread(ge_files(ge_series_dir)[0])
    dataset.NumberOfFrames = 400
    dataset.PixelData = dataset.PixelData * 400
    large = tmp_path / "large.dcm"
    dataset.save_as(large)
    workers = await asyncio.to_thread(ProcessAnalyzer, DEFAULT_MODEL, workers=1, memory_limit_bytes=800 * 2**20)
    try:
        async with DicomNode(node_settings(database, tmp_path), workers) as node:
            assert await asyncio.to_thread(push, node.port, [large]) == [0]
            (study,) = await analysed(node, database)
    finally:
        workers.close()
    assert study.verdict == "skipped" and study.reason == NEEDS_TOO_MUCH_MEMORY
