"""Privacy of pushed studies: the patient's name, id and birth date, the institution and the physicians are never
stored, logged or sent; studies are known by a hash of their Study Instance UID; the accession number is the
one identifier kept, and DICOM_NOTIFY_FIELDS=none keeps not even that."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydicom import dcmread

from core.settings import Settings
from dicomnode.node import DicomNode
from dicomnode.spool import uid_hash
from hemowatch.builders import analyzer_from_settings
from inference.analyzer import Analyzer
from store import open_database
from store.studies import recent_studies
from testsupport.broker import free_port
from testsupport.dicom import push
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(120)
IDENTITY = {
    "PatientName": "DOE^JANE", "PatientID": "MRN-778899", "PatientBirthDate": "19580214",
    "InstitutionName": "St Elsewhere General", "ReferringPhysicianName": "HOUSE^GREGORY",
}
ACCESSION = "ACC20261126"


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return analyzer_from_settings(Settings(_env_file=None), threshold=0.3)


def identified_series(ge_series_dir: Path, folder: Path) -> list[Path]:
    """The GE series as a scanner would send it: with a name, an id, a birth date and so on."""
    folder.mkdir()
    paths = []
    for source in sorted(ge_series_dir.glob("*.dcm")):
        dataset = dcmread(source)
        for keyword, value in IDENTITY.items():
            setattr(dataset, keyword, value)
        dataset.AccessionNumber = ACCESSION
        dataset.StudyDate, dataset.StudyTime = "20261126", "140215"
        paths.append(folder / source.name)
        dataset.save_as(paths[-1])
    return paths


@pytest.mark.parametrize("notify_fields", ["accession", "none"])
async def test_nothing_identifying_is_stored_or_logged(
    tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path, caplog: pytest.LogCaptureFixture, notify_fields: str
) -> None:
    paths = identified_series(ge_series_dir, tmp_path / "series")
    settings = Settings(_env_file=None, hemowatch_db=tmp_path / "hemowatch.db", dicom_port=free_port(),
                        dicom_series_idle_s=0.3, dicom_notify_fields=notify_fields)
    caplog.set_level(logging.DEBUG)
    async with DicomNode(settings, analyzer) as node:
        seen_in_spool: list[bytes] = []

        def spy() -> None:
            seen_in_spool.extend(path.read_bytes() for path in (tmp_path / "dicom-spool").rglob("*.dcm"))

        assert await asyncio.to_thread(push, node.port, paths[:27]) == [0] * 27
        await asyncio.to_thread(spy)
        assert await asyncio.to_thread(push, node.port, paths[27:]) == [0]
        await asyncio.sleep(0.2)
        await eventually(lambda: node.idle and recent_studies(open_database(settings.hemowatch_db)), 60, "the study")
    (study,) = recent_studies(open_database(settings.hemowatch_db))
    assert study.study_hash == uid_hash(dcmread(paths[0]).StudyInstanceUID)
    assert study.accession == (ACCESSION if notify_fields == "accession" else None)
    assert study.study_time == "2026-11-26 14:02"
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("hemowatch.db*"))
    logged = caplog.text
    assert seen_in_spool
    for value in IDENTITY.values():
        assert value.encode() not in stored, f"{value} in the database"
        assert value not in logged, f"{value} in the log"
        assert not [data for data in seen_in_spool if value.encode() in data], f"{value} in the spool"
    assert dcmread(paths[0]).StudyInstanceUID.encode() not in stored
